"""Augmentation presets as whole-batch operations on uint8 tensors (DESIGN §5, performance-notes §6.7).

A batch transform is ``fn(images_uint8 (N, C, H, W), generator) -> images_uint8``; the generator is a CPU
``torch.Generator`` seeded per batch by the loader, so the augmentation of a batch depends only on
(seed, epoch, batch index, rank). Random draws are made on the CPU (a few numbers per image) and applied on
the images' device with one gather, so no per-sample Python or PIL is involved.

Presets are named in ``data.train_transform`` / ``data.eval_transform``; ``@register_preset`` adds one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from effconv.errors import unknown_choice

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
PRESETS: dict[str, Callable[..., BatchTransform]] = {}


def register_preset(name: str):
    def wrap(factory):
        PRESETS[name] = factory
        return factory

    return wrap


def batch_transform(name: str, data_cfg, train: bool) -> BatchTransform:
    if name not in PRESETS:
        raise unknown_choice("transform preset", name, PRESETS, "; set data.train_transform / data.eval_transform")
    return PRESETS[name](data_cfg, train)


def crop_flip(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, size: tuple[int, int],
              padding: int = 0) -> torch.Tensor:
    """Per-image crops of ``size`` at (top, left) of the zero-padded images, mirrored where ``flip``; one gather."""
    n, c, _, _ = images.shape
    h, w = size
    if padding:
        images = F.pad(images, (padding,) * 4)
    device = images.device
    rows = top.to(device)[:, None] + torch.arange(h, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    cols = torch.where(flip.to(device)[:, None], w - 1 - cols, cols) + left.to(device)[:, None]
    batch = torch.arange(n, device=device)[:, None, None, None]
    chan = torch.arange(c, device=device)[None, :, None, None]
    return images[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


@register_preset("none")
def _identity(data_cfg, train):
    return lambda images, generator: images


@register_preset("flip")
def _flip(data_cfg, train):
    def fn(images, generator):
        flip = torch.rand(len(images), generator=generator) < data_cfg.hflip
        return torch.where(flip.to(images.device)[:, None, None, None], images.flip(3), images)

    return fn


@register_preset("pad_crop_flip")
def _pad_crop_flip(data_cfg, train):
    """Zero-pad by ``crop_padding``, take a random crop of the original size, flip with ``hflip`` (CIFAR)."""
    pad = data_cfg.crop_padding

    def fn(images, generator):
        n, _, h, w = images.shape
        top = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        left = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < data_cfg.hflip
        return crop_flip(images, top, left, flip, (h, w), padding=pad)

    return fn
