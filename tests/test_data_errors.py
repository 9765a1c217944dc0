"""Every dataset problem a user can cause gives one line: what is wrong, what was expected, where to look."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from effconv.data import build, read_split
from effconv.data.files import DataWarning
from effconv.errors import UserError
from tests.data_formats import write
from tests.data_helpers import data_cfg

# format -> (published top-level item under data.root, a split file to remove, writer args, config changes)
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", "cifar-10-batches-py/data_batch_3", {"per_class": 1}, {}),
    "cifar100": ("cifar-100-python", "cifar-100-python/test", {"per_class": 1}, {}),
    "svhn": (None, "test_32x32.mat", {"per_class": 1}, {}),
    "stl10": ("stl10_binary", "stl10_binary/test_y.bin", {"per_class": 1}, {}),
    "tiny_imagenet": (
        "tiny-imagenet-200",
        "tiny-imagenet-200/val/val_annotations.txt",
        {"per_class": 2, "classes": 4},
        {"num_classes": 4},
    ),
    "imagenet32": (
        "Imagenet32_train",
        "Imagenet32_train/train_data_batch_7",
        {"per_class": 1, "classes": 20},
        {"num_classes": 20},
    ),
    "imagenet": ("train", "val", {"per_class": 2, "classes": 4}, {"num_classes": 4}),
}
ENV = {
    "cifar10": "EFFCONV_CIFAR10_ROOT",
    "cifar100": "EFFCONV_CIFAR100_ROOT",
    "svhn": "EFFCONV_SVHN_ROOT",
    "stl10": "EFFCONV_STL10_ROOT",
    "tiny_imagenet": "EFFCONV_TINY_IMAGENET_ROOT",
    "imagenet32": "EFFCONV_IMAGENET32_ROOT",
    "imagenet": "EFFCONV_IMAGENET_ROOT",
}


def cfg(name, root, **changes):
    return data_cfg(name, root, **{**LAYOUT[name][3], **changes})


def error_of(fn, *args) -> str:
    with pytest.raises(UserError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def build_all(data):
    loaders = build(data, 4, 4, torch.device("cpu"), seed=0)
    for loader in (loaders.train, loaders.eval):
        for _ in loader.batches(0):
            pass


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    base = tmp_path_factory.mktemp("error_formats")
    return {name: write(name, base / name, **layout[2]) for name, layout in LAYOUT.items()}


@pytest.mark.parametrize("name", list(LAYOUT))
def test_missing_root_names_the_key_the_env_var_and_the_docs(tmp_path, name):
    message = error_of(read_split, cfg(name, tmp_path / "nowhere"), "train")
    assert "does not exist" in message and ENV[name] in message and "docs/datasets.md" in message


@pytest.mark.parametrize("name", list(LAYOUT))
def test_wrong_tree_says_what_was_expected(tmp_path, name):
    (tmp_path / "something_else").mkdir()
    message = error_of(read_split, cfg(name, tmp_path), "train")
    expected = {
        "svhn": "missing split file",
        "imagenet": "missing split folder",
        "imagenet32": "holds neither Imagenet32_train/ nor Imagenet32_train_npz/",
    }
    assert expected.get(name, f"holds no {LAYOUT[name][0]}/") in message
    assert "expected data.root" in message and f"docs/datasets.md#{name}" in message


@pytest.mark.parametrize("name", ["cifar10", "stl10", "tiny_imagenet"])
def test_root_pointing_at_the_item_itself_suggests_the_parent(copies, name):
    written = copies[name]
    message = error_of(read_split, cfg(name, written.root / LAYOUT[name][0]), "train")
    assert f"use data.root={written.root}" in message


def test_item_one_level_down_is_found(copies):
    message = error_of(read_split, cfg("cifar10", copies["cifar10"].root.parent), "train")
    assert f"use data.root={copies['cifar10'].root}" in message


@pytest.mark.parametrize("name", list(LAYOUT))
def test_missing_split_file_is_named(tmp_path, copies, name):
    root = tmp_path / name
    shutil.copytree(copies[name].root, root, ignore=shutil.ignore_patterns(".effconv_cache"))
    removed = root / LAYOUT[name][1]
    shutil.rmtree(removed) if removed.is_dir() else removed.unlink()
    split = {
        "cifar100": "test",
        "svhn": "test",
        "stl10": "test",
        "tiny_imagenet": "val",
        "imagenet": "val",
    }.get(name, "train")
    message = error_of(read_split, cfg(name, root), split)
    assert "missing" in message and removed.name in message


@pytest.mark.parametrize(
    "name, target",
    [
        ("cifar10", "cifar-10-batches-py/data_batch_2"),
        ("cifar100", "cifar-100-python/train"),
        ("svhn", "train_32x32.mat"),
        ("stl10", "stl10_binary/train_X.bin"),
        ("imagenet32", "Imagenet32_train/train_data_batch_10"),
    ],
)
def test_truncated_array_file_is_named(tmp_path, copies, name, target):
    root = tmp_path / name
    shutil.copytree(copies[name].root, root, ignore=shutil.ignore_patterns(".effconv_cache"))
    path = root / target
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2 + 7])
    message = error_of(read_split, cfg(name, root), "train")
    assert str(path) in message and ("truncated" in message or "corrupt" in message)


def test_truncated_npz_is_named(tmp_path):
    written = write("imagenet32", tmp_path, per_class=1, classes=20, npz=True)
    path = tmp_path / "Imagenet32_val_npz" / "val_data.npz"
    path.write_bytes(path.read_bytes()[:300])
    assert str(path) in error_of(read_split, cfg("imagenet32", written.root), "val")


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_corrupt_jpeg_in_memory_dataset_named_or_skipped(tmp_path):
    written = write("tiny_imagenet", tmp_path, per_class=2, classes=4)
    bad = next((tmp_path / "tiny-imagenet-200" / "val" / "images").iterdir())
    truncate(bad)
    message = error_of(read_split, cfg("tiny_imagenet", written.root), "val")
    assert str(bad) in message and "data.skip_corrupt=true" in message
    with pytest.warns(DataWarning, match="skipped 1 corrupt"):
        val = read_split(cfg("tiny_imagenet", written.root, skip_corrupt=True), "val")
    assert len(val.labels) == len(written.labels["val"]) - 1


def test_corrupt_jpeg_in_streaming_dataset_named_or_skipped(tmp_path):
    written = write("imagenet", tmp_path, per_class=2, classes=4)
    bad = sorted((tmp_path / "train").glob("*/*_0.JPEG"))[0]
    truncate(bad)
    data = cfg("imagenet", written.root, img_size=32, eval_size=32, num_workers=0)
    message = error_of(build_all, data)
    assert str(bad) in message and "data.skip_corrupt=true" in message
    data.skip_corrupt = True
    loaders = build(data, 8, 4, torch.device("cpu"), seed=0)
    with pytest.warns(DataWarning, match=f"skipping {bad}"):
        seen = sum(len(y) for _, y in loaders.train.batches(0))
    assert seen == 7 and loaders.train.skipped == {str(bad)}


def test_labels_beyond_num_classes(copies):
    message = error_of(build, cfg("cifar10", copies["cifar10"].root, num_classes=5), 4, 4, torch.device("cpu"), 0)
    assert "labels span 0..9 but data.num_classes=5" in message


def test_imagenet_class_count_must_match_num_classes(copies):
    message = error_of(read_split, cfg("imagenet", copies["imagenet"].root, num_classes=1000), "train")
    assert "found 4 classes but data.num_classes=1000" in message and "data.num_classes=4" in message


def test_flat_val_without_ground_truth_points_to_prepare(tmp_path):
    written = write("imagenet", tmp_path, per_class=1, classes=4, flat_val=True)
    shutil.rmtree(tmp_path / "ILSVRC2012_devkit_t12")
    message = error_of(read_split, cfg("imagenet", written.root), "val")
    assert "flat" in message and "python -m effconv.data.prepare imagenet-val" in message


def test_unknown_and_unlabelled_splits(copies):
    assert "has splits ['test', 'train'], not 'valid'" in error_of(
        read_split, cfg("cifar10", copies["cifar10"].root), "valid"
    )
    assert "test split has no labels" in error_of(
        read_split, cfg("tiny_imagenet", copies["tiny_imagenet"].root), "test"
    )


def test_checksum_mismatch_only_warns(copies):
    with pytest.warns(DataWarning, match="not the official c99cafc152244af753f735de768cd75f"):
        data = read_split(cfg("cifar10", copies["cifar10"].root, verify_checksums=True), "train")
    assert len(data.labels) == 10


def test_preset_size_mismatch_and_unbatchable_streaming_preset(copies):
    message = error_of(build, cfg("svhn", copies["svhn"].root, img_size=56), 4, 4, torch.device("cpu"), 0)
    assert "data.train_transform=none turns the 32x32 images of svhn into 32x32, but data.img_size=56" in message
    data = cfg("imagenet", copies["imagenet"].root, train_transform="pad_crop_flip", num_workers=0)
    assert "cannot batch them" in error_of(build, data, 4, 4, torch.device("cpu"), 0)


def test_prepare_reports_a_wrong_ground_truth(tmp_path, capsys):
    from effconv.data.prepare import main

    written = write("imagenet", tmp_path, per_class=1, classes=4, flat_val=True)
    assert main(["imagenet-val", str(written.root / "val"), str(tmp_path / "missing.tar.gz")]) == 2
    assert capsys.readouterr().err.startswith("error: ") and os.listdir(written.root / "val")
