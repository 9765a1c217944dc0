"""Data paths that only a GPU exercises, checked on the CPU (issue 17, findings 5-7)."""

from __future__ import annotations

import importlib
import multiprocessing
import pickle

import pytest
import torch

from effconv.data import read_split, transforms
from effconv.data.streaming import StreamingLoader
from tests.data_formats import write
from tests.data_helpers import data_cfg

tv_roi_align = importlib.import_module("torchvision.ops.roi_align")  # the module (torchvision.ops.roi_align is
# also the name of the function)


@pytest.fixture
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def test_random_resized_crop_keeps_the_roi_align_kernel_under_deterministic(deterministic, monkeypatch):
    """With deterministic algorithms on, torchvision.ops.roi_align runs its pure-Python formulation on a GPU
    (lazily compiled, large intermediates). Seen here by making the batch look like a CUDA tensor to that
    check: the preset must not reach the fallback, and give what the kernel gives."""
    fallback = []
    real = tv_roi_align._roi_align
    monkeypatch.setattr(tv_roi_align, "_roi_align", lambda *a, **k: fallback.append(1) or real(*a, **k))
    cfg = data_cfg("digits", img_size=12, hflip=0.5)
    preset = transforms.batch_transform("random_resized_crop_flip", cfg, train=True)
    images = torch.randint(0, 256, (6, 3, 20, 24), dtype=torch.uint8)
    expected = preset(images, torch.Generator().manual_seed(3))
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda t: True))
    out = preset(images, torch.Generator().manual_seed(3))
    monkeypatch.undo()
    assert fallback == [] and torch.equal(out, expected) and out.shape == (6, 3, 12, 12)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    written = write("imagenet", tmp_path_factory.mktemp("gpu_paths"), per_class=4, eval_per_class=2, classes=3)
    cfg = data_cfg("imagenet", written.root, num_classes=3, img_size=24, eval_size=16, num_workers=0)
    return cfg, read_split(cfg, "train")


def streaming(cfg, dataset, batch_size=4, **changes):
    cfg = cfg.copy()
    for key, value in changes.items():
        cfg[key] = value
    return StreamingLoader(dataset, batch_size, cfg, True, cfg.mean, cfg.std, torch.device("cpu"), seed=5)


@pytest.mark.parametrize("preset", sorted(transforms.SAMPLE_PRESETS))
def test_per_image_transforms_pickle(preset):
    cfg = data_cfg("imagenet", img_size=24, eval_size=16)
    transform = transforms.sample_transform(preset, cfg, train=True)
    image = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
    copy = pickle.loads(pickle.dumps(transform))
    same_draws = [torch.Generator().manual_seed(1) for _ in range(2)]
    assert torch.equal(copy(image, same_draws[0]), transform(image, same_draws[1]))


@pytest.fixture
def forkserver_default():
    """Python 3.14's default start method on Linux, for this test's process."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("forkserver", force=True)
    yield
    multiprocessing.set_start_method(previous, force=True)


def test_streaming_workers_start_under_forkserver(imagenet, forkserver_default):
    """Workers started by forkserver give the in-process batches (everything they receive pickles)."""
    cfg, dataset = imagenet
    in_process = list(streaming(cfg, dataset).batches(epoch=1))
    loader = streaming(cfg, dataset, num_workers=1)
    try:
        with_workers = list(loader.batches(epoch=1))
    finally:
        loader.close()
    assert len(with_workers) == len(in_process) == 3
    for (x1, y1), (x2, y2) in zip(in_process, with_workers):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
