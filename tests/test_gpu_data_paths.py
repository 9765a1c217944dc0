"""Data paths that only a GPU exercises, checked on the CPU (issue 17, findings 5-7)."""

from __future__ import annotations

import importlib
import multiprocessing
import pickle
import sys
from pathlib import Path

import pytest
import torch

from effconv.data import read_split, transforms
from effconv.data import streaming as streaming_module
from effconv.data.streaming import StreamingLoader, nvjpeg_size
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


class FakeNvjpeg:
    """torchvision.io.decode_jpeg(device=...) as nvJPEG behaves: one call for a list, refusing (for the whole
    call) any image it cannot take: CMYK or not a JPEG, and the images in ``refuse``. Decodes with libjpeg on
    the CPU, as torchvision's CPU decoder does, so the batches can be compared with the CPU path."""

    def __init__(self, refuse=()):
        self.calls, self.refuse = [], {bytes(r.numpy()) for r in refuse}

    def __call__(self, data, mode=None, device=None):
        from torchvision.io import ImageReadMode, decode_image

        items = data if isinstance(data, list) else [data]
        self.calls.append(len(items))
        for d in items:
            if nvjpeg_size(d) is None or bytes(d.numpy()) in self.refuse:
                raise RuntimeError("nvjpeg: unsupported image")
        out = [decode_image(d, mode=ImageReadMode.RGB) for d in items]
        return out if isinstance(data, list) else out[0]


def decoding(monkeypatch, cfg, dataset, fake: FakeNvjpeg):
    """The GPU-decode path on the CPU (nvJPEG faked), and where the CPU decoder ran: in a worker's sample
    function or in the main process's batch decoding."""
    monkeypatch.setattr("torchvision.io.decode_jpeg", fake)
    cpu_decodes = []
    real = streaming_module.decode_rgb

    def spy(data, path):
        cpu_decodes.append((sys._getframe(1).f_code.co_name, Path(path).name))
        return real(data, path)

    monkeypatch.setattr(streaming_module, "decode_rgb", spy)
    loader = streaming(cfg, dataset)
    loader.gpu_decode = True  # no CUDA here: the path runs on the CPU, with the fake decoder
    return loader, cpu_decodes


def test_gpu_decode_sends_only_what_nvjpeg_takes_in_one_call(imagenet, monkeypatch):
    """A batch with a CMYK JPEG and a PNG named .JPEG: nvJPEG gets the other images in one call per batch, the
    two odd ones are finished by their worker, the main process decodes nothing on the CPU and draws no random
    numbers, and the batches equal the CPU decoder's (issue 17, finding 7)."""
    cfg, dataset = imagenet
    expected = list(streaming(cfg, dataset).batches(epoch=0))
    fake = FakeNvjpeg()
    loader, cpu_decodes = decoding(monkeypatch, cfg, dataset, fake)
    generators = []
    decode_batch = loader._decode_on_device

    def counted(*args):
        real_generator = torch.Generator
        monkeypatch.setattr(torch, "Generator", lambda *a: generators.append(1) or real_generator(*a))
        try:
            return decode_batch(*args)
        finally:
            monkeypatch.setattr(torch, "Generator", real_generator)

    loader._decode_on_device = counted
    got = list(loader.batches(epoch=0))
    odd = sorted(name for _, name in cpu_decodes)
    assert len(odd) == 2 and {where for where, _ in cpu_decodes} == {"__getitem__"}  # in the worker only
    assert sum(fake.calls) == 12 - 2 and len(fake.calls) == 3  # one call per batch, the odd ones left out
    assert generators == []
    assert len(got) == len(expected) == 3
    for (x1, y1), (x2, y2) in zip(expected, got):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_gpu_decode_falls_back_per_image(imagenet, monkeypatch):
    """nvJPEG refusing one JPEG its header did not give away: that image alone goes to the CPU decoder."""
    cfg, dataset = imagenet
    first = dataset.encoded(int(streaming(cfg, dataset).order.indices(0)[0]))[0]
    loader, cpu_decodes = decoding(monkeypatch, cfg, dataset, FakeNvjpeg(refuse=[first]))
    expected = next(iter(streaming(cfg, dataset).batches(epoch=0)))
    x, y = next(iter(loader.batches(epoch=0)))
    assert [where for where, _ in cpu_decodes].count("_nvjpeg") == 1
    assert torch.equal(x, expected[0]) and torch.equal(y, expected[1])
