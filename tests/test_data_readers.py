"""Readers against format-exact copies: counts, shapes, dtypes, labels in order, the orientation marker."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from effconv.data import ImageArrays, read_split
from tests.data_formats import MARKER_RGB, write
from tests.data_helpers import data_cfg

SMALL = {  # format -> (writer arguments, config changes)
    "cifar10": ({"per_class": 5}, {}),
    "cifar100": ({"per_class": 2}, {}),
    "svhn": ({"per_class": 4}, {}),
    "stl10": ({"per_class": 2}, {}),
    "tiny_imagenet": ({"per_class": 3, "classes": 12}, {"num_classes": 12}),
    "imagenet32": ({"per_class": 2}, {}),
    "imagenet": ({"per_class": 3, "classes": 12}, {"num_classes": 12}),
}


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    base = tmp_path_factory.mktemp("formats")
    return {name: write(name, base / name, **kwargs) for name, (kwargs, _) in SMALL.items()}


def cfg_for(written, **changes):
    return data_cfg(written.name, written.root, **{**SMALL[written.name][1], **changes})


def assert_marker(images: torch.Tensor, m: int, tolerance: int = 0):
    """Red block in the top-right corner of every image: not transposed, flipped or channel-swapped."""
    corner = images[:, :, :m, -m:].float().mean((2, 3))
    expected = torch.tensor(MARKER_RGB, dtype=torch.float32).expand_as(corner)
    assert (corner - expected).abs().max() <= tolerance, corner[:3]
    other = images[:, :, -m:, :m].float().mean((2, 3))  # bottom-left, where a transpose would put it
    assert not torch.allclose(other, expected, atol=tolerance + 10)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "stl10", "tiny_imagenet", "imagenet32"])
def test_in_memory_reader_matches_what_was_written(copies, name):
    written = copies[name]
    cfg = cfg_for(written)
    for split, expected in written.labels.items():
        if split == "extra":
            continue
        data = read_split(cfg, split)
        assert isinstance(data, ImageArrays)
        assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
        assert tuple(data.images.shape) == (len(expected), 3, written.size, written.size)
        assert data.labels.tolist() == expected.tolist()  # every label, in the published order
        assert int(data.labels.min()) >= 0 and int(data.labels.max()) < written.num_classes
        jpeg = name == "tiny_imagenet"
        images = data.images
        if jpeg:  # the greyscale file has no red marker
            images = images[(images[:, 0] != images[:, 1]).flatten(1).any(1)]
            assert len(images) >= len(expected) - 1
        assert_marker(images, written.marker - (4 if jpeg else 0), tolerance=12 if jpeg else 0)


def test_cifar_first_labels_and_class_names(copies):
    data = read_split(cfg_for(copies["cifar10"]), "train")
    assert data.labels[:5].tolist() == copies["cifar10"].labels["train"][:5].tolist()
    assert data.classes == [f"class{i}" for i in range(10)]
    assert read_split(cfg_for(copies["cifar100"]), "test").classes[:2] == ["fine0", "fine1"]


def test_svhn_digit_zero_and_use_extra(copies):
    written = copies["svhn"]
    import scipy.io

    on_disk = scipy.io.loadmat(written.root / "train_32x32.mat")["y"].ravel()
    assert set(on_disk.tolist()) == set(range(1, 11))  # the file says 10 for the digit 0
    train = read_split(cfg_for(written), "train")
    assert set(train.labels.tolist()) == set(range(10))
    both = read_split(cfg_for(written, use_extra=True), "train")
    assert both.labels.tolist() == np.concatenate([written.labels["train"], written.labels["extra"]]).tolist()


def test_imagenet32_npz_variant_equals_pickles(tmp_path):
    pickles = write("imagenet32", tmp_path / "p", per_class=1, seed=3)
    npz = write("imagenet32", tmp_path / "n", per_class=1, seed=3, npz=True)
    for split in ("train", "val"):
        a, b = read_split(cfg_for(pickles), split), read_split(cfg_for(npz), split)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert len(a.labels) == 1000 and a.labels.tolist() == npz.labels["val"].tolist()


def check_imagenet(dataset, written, split):
    assert len(dataset) == len(written.labels[split])
    assert dataset.labels.tolist() == written.labels[split].tolist()
    image, label = dataset[0]
    assert image.dtype == torch.uint8 and image.shape[0] == 3 and label == written.labels[split][0]
    assert_marker(image[None], written.marker - 4, tolerance=12)


def test_imagenet_class_folders_and_quirky_files(copies):
    written = copies["imagenet"]
    cfg = cfg_for(written)
    train = read_split(cfg, "train")
    check_imagenet(train, written, "train")
    check_imagenet(read_split(cfg, "val"), written, "val")
    for quirk in ("greyscale", "cmyk", "png"):  # decoded as RGB like the rest
        path = str(written.special[quirk].relative_to(written.root)).encode()
        image, _ = train[int(np.flatnonzero(train.files == path)[0])]
        assert image.shape[0] == 3 and image.dtype == torch.uint8


@pytest.mark.parametrize("source", ["devkit", "devkit_tar", "kaggle_csv"])
def test_imagenet_flat_val_labels_from_ground_truth(tmp_path, source):
    written = write(
        "imagenet",
        tmp_path,
        per_class=1,
        eval_per_class=2,
        classes=12,
        flat_val=True,
        devkit_tar=source == "devkit_tar",
    )
    if source == "kaggle_csv":
        shutil.rmtree(tmp_path / "ILSVRC2012_devkit_t12")
        wnids = sorted(os.listdir(tmp_path / "train"))
        rows = [f"ILSVRC2012_val_{i + 1:08d},{wnids[y]} 1 2 30 40 " for i, y in enumerate(written.labels["val"])]
        (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows[::-1]) + "\n")
    val = read_split(cfg_for(written), "val")
    # devkit IDs are not sorted-wnid indices: labels must still equal the sorted-wnid labels written
    check_imagenet(val, written, "val")


def test_prepare_sorts_flat_val_into_class_folders(tmp_path):
    from effconv.data.prepare import main

    written = write("imagenet", tmp_path, per_class=1, eval_per_class=2, classes=12, flat_val=True)
    flat = read_split(cfg_for(written), "val")
    assert main(["imagenet-val", str(tmp_path / "val"), str(tmp_path / "ILSVRC2012_devkit_t12")]) == 0
    shutil.rmtree(tmp_path / "ILSVRC2012_devkit_t12")  # class folders need no ground truth
    sorted_val = read_split(cfg_for(written), "val")
    assert sorted(sorted_val.labels.tolist()) == sorted(flat.labels.tolist())
    for i in range(len(sorted_val)):  # every file landed in the folder of its class
        wnid = sorted_val.files[i].decode().split("/")[1]
        assert sorted_val.classes[sorted_val.labels[i]] == wnid


def test_decoded_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    written = write("cifar10", tmp_path / "c", per_class=2)
    cfg = cfg_for(written, cache_dir=str(tmp_path / "cache"))
    first = read_split(cfg, "train")
    cached = list((tmp_path / "cache").glob("cifar10-train-*.pt"))
    assert len(cached) == 1

    import effconv.data.cifar as cifar

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache matches")

    monkeypatch.setattr(cifar, "load_pickle", no_decoding)
    assert torch.equal(read_split(cfg, "train").images, first.images)
    monkeypatch.undo()
    batch = written.root / "cifar-10-batches-py" / "data_batch_2"
    os.utime(batch, ns=(batch.stat().st_atime_ns, batch.stat().st_mtime_ns + 10**9))  # the source changed
    assert torch.equal(read_split(cfg, "train").labels, first.labels)
    now = list((tmp_path / "cache").glob("cifar10-train-*.pt"))
    assert len(now) == 1 and now != cached  # rebuilt, the stale file removed


def test_cache_defaults_to_the_data_root(copies):
    assert list((copies["stl10"].root / ".effconv_cache").glob("stl10-train-*.pt"))
