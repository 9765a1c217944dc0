"""Augmentation presets: documented shapes, determinism under the batch generator, torchvision semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from effconv.data.memory import InMemoryLoader
from effconv.data.transforms import (
    batch_transform,
    crop_flip,
    random_resized_crop_params,
    resized_crops,
    sample_transform,
)
from tests.data_formats import class_images
from tests.data_helpers import data_cfg


def images(n=6, h=64, w=64, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "dataset, preset, train, size_in, size_out",
    [
        ("cifar10", "pad_crop_flip", True, 32, 32),
        ("svhn", "none", True, 32, 32),
        ("stl10", "pad_crop_flip", True, 96, 96),
        ("tiny_imagenet", "random_resized_crop_flip", True, 64, 56),
        ("tiny_imagenet", "center_crop", False, 64, 56),
        ("imagenet32", "flip", True, 32, 32),
    ],
)
def test_batch_presets_give_documented_shapes_and_are_deterministic(dataset, preset, train, size_in, size_out):
    fn = batch_transform(preset, data_cfg(dataset), train)
    x = images(8, size_in, size_in)
    out = fn(x, gen(1))
    assert out.dtype == torch.uint8 and tuple(out.shape) == (8, 3, size_out, size_out)
    assert torch.equal(out, fn(x, gen(1)))
    if preset not in ("none", "center_crop"):
        assert not torch.equal(out, fn(x, gen(2)))


def test_imagenet_eval_resizes_then_crops_like_torchvision():
    cfg = data_cfg("imagenet", img_size=64, eval_size=64, eval_resize=None)  # default resize: 64 / 0.875 = 73
    x = images(3, 90, 120)
    out = batch_transform("imagenet_eval", cfg, False)(x, gen())
    reference = torch.stack([TF.center_crop(TF.resize(img, [73], antialias=True), [64, 64]) for img in x])
    assert out.shape == (3, 3, 64, 64)
    assert (out.int() - reference.int()).abs().max() <= 1  # float vs uint8 resampling rounding


def test_random_resized_crop_params_follow_torchvision_rules():
    from torchvision.transforms import RandomResizedCrop

    top, left, h, w = random_resized_crop_params(64, 48, 4000, (0.08, 1.0), (3 / 4, 4 / 3), gen())
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 48).all()
    area = (h * w).double() / (64 * 48)
    ratio = (w.double() / h.double()).log()
    assert area.min() >= 0.07 and area.max() <= 1.0
    assert ratio.min() >= math.log(3 / 4) - 0.1 and ratio.max() <= math.log(4 / 3) + 0.1
    torch.manual_seed(0)  # torchvision draws from the global generator
    theirs = torch.tensor(
        [RandomResizedCrop.get_params(torch.empty(1, 64, 48), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)],
        dtype=torch.float64,
    )
    their_area = theirs[:, 2] * theirs[:, 3] / (64 * 48)
    assert abs(area.mean() - their_area.mean()) < 0.02 and abs(area.std() - their_area.std()) < 0.02
    assert abs(top.double().mean() - theirs[:, 0].mean()) < 1.0
    same = random_resized_crop_params(64, 48, 4000, (0.08, 1.0), (3 / 4, 4 / 3), gen())
    assert all(torch.equal(a, b) for a, b in zip((top, left, h, w), same))
    # nothing fits (a 2:1 crop of the full area of a square): torchvision's central fallback
    top, left, h, w = random_resized_crop_params(40, 40, 3, (1.0, 1.0), (2.0, 3.0), gen())
    assert w.tolist() == [40] * 3 and h.tolist() == [20] * 3 and top.tolist() == [10] * 3 and left.tolist() == [0] * 3


def test_batched_resized_crop_matches_torchvision_per_image():
    x = torch.from_numpy(class_images(np.arange(32) % 10, 64, 64, 10, np.random.default_rng(0), 16))
    top, left, h, w = random_resized_crop_params(64, 64, 32, (0.08, 1.0), (3 / 4, 4 / 3), gen(3))
    ours = resized_crops(x, top, left, h, w, 56)
    reference = torch.stack(
        [
            TF.resized_crop(x[i], int(top[i]), int(left[i]), int(h[i]), int(w[i]), [56, 56], antialias=True)
            for i in range(32)
        ]
    )
    diff = (ours.int() - reference.int()).abs().float()
    upscaled = (h <= 56) & (w <= 56)
    assert upscaled.any() and (~upscaled).any()
    # upscaling: the same bilinear samples; only the outermost output ring differs (roi_align blends up to
    # half a pixel from outside the box where crop-then-resize repeats the edge)
    assert diff[upscaled][:, :, 1:-1, 1:-1].max() <= 1
    assert diff[~upscaled].mean() < 2  # downscaling: roi_align's box average vs torchvision's antialias filter
    full = resized_crops(
        x,
        torch.zeros(32, dtype=torch.long),
        torch.zeros(32, dtype=torch.long),
        torch.full((32,), 64),
        torch.full((32,), 64),
        64,
    )
    assert torch.equal(full, x)


def test_batched_and_per_image_presets_draw_the_same_crops():
    cfg = data_cfg("tiny_imagenet")
    x = images(1, 64, 64)
    batch = batch_transform("random_resized_crop_flip", cfg, True)(x, gen(5))[0]
    single = sample_transform("random_resized_crop_flip", cfg, True)(x[0], gen(5))
    assert single.shape == batch.shape == (3, 56, 56)
    assert (batch.int() - single.int()).abs().float().mean() < 3


@pytest.mark.parametrize("preset, train", [("imagenet_train", True), ("imagenet_eval", False)])
def test_per_image_presets_give_fixed_sizes_from_any_image(preset, train):
    cfg = data_cfg("imagenet", img_size=48, eval_size=40)
    fn = sample_transform(preset, cfg, train)
    for h, w in ((50, 90), (120, 60), (48, 48)):
        out = fn(images(1, h, w)[0], gen())
        assert out.dtype == torch.uint8 and tuple(out.shape) == (3, *(2 * [48 if train else 40]))


def test_in_memory_loader_resumes_mid_epoch_and_shards_by_rank():
    x = images(50, 32, 32)
    y = torch.arange(50)
    cfg = data_cfg("cifar10")
    fn = batch_transform("pad_crop_flip", cfg, True)

    def loader(rank=0, world=1):
        return InMemoryLoader(
            x,
            y,
            8,
            fn,
            cfg.mean,
            cfg.std,
            torch.device("cpu"),
            seed=3,
            train=True,
            rank=rank,
            world_size=world,
        )

    full = list(loader().batches(epoch=2))
    resumed = list(loader().batches(epoch=2, start=3))
    assert len(full) == 6 and len(resumed) == 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[3:], resumed))
    assert not torch.equal(full[0][1], next(loader().batches(epoch=3))[1])
    ranks = [torch.cat([b[1] for b in loader(r, 2).batches(epoch=2)]) for r in (0, 1)]
    assert len(set(ranks[0].tolist()) & set(ranks[1].tolist())) == 0 and len(ranks[0]) == len(ranks[1]) == 24


def test_crop_flip_gather_equals_pad_crop_flip_per_image():
    x = images(12, 32, 32)
    g = gen(4)
    top, left = torch.randint(0, 9, (12,), generator=g), torch.randint(0, 9, (12,), generator=g)
    flip = torch.rand(12, generator=g) < 0.5
    ours = crop_flip(x, top, left, flip, (32, 32), padding=4)
    for i in range(12):
        expected = TF.crop(TF.pad(x[i], [4]), int(top[i]), int(left[i]), 32, 32)
        assert torch.equal(ours[i], TF.horizontal_flip(expected) if flip[i] else expected)
