"""Data paths that only a GPU exercises, checked on the CPU (issue 17, findings 5-7)."""

from __future__ import annotations

import importlib

import pytest
import torch

from effconv.data import transforms
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
