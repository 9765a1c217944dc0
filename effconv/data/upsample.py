"""Presets that upsample small images to the model's input size, for transfer learning from ImageNet.

The MixConv paper fine-tunes ImageNet models on CIFAR-10/100 (Fig. 9, Table 3) "using similar settings as
[Kornblith et al. 2019]", which feed the networks at their ImageNet resolution: the 32x32 images are
upsampled to ``data.img_size`` (224). Augmentation runs at the stored size first (pad-crop-flip, as the
``pad_crop_flip`` preset), then the whole batch is resized bilinearly on its device and rounded back to
uint8, as an image library's resize would, so the loader protocol (uint8 in, uint8 out) holds.

    data=cifar10 data.img_size=224 data.train_transform=pad_crop_flip_upsample data.eval_transform=upsample
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from effconv.data.transforms import PRESETS, register_preset


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a uint8 (N, C, H, W) batch to size x size, rounded back to uint8."""
    if images.shape[-2:] == (size, size):
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


@register_preset("pad_crop_flip_upsample")
def _pad_crop_flip_upsample(data_cfg, train):
    """``pad_crop_flip`` at the stored size (``crop_padding``, ``hflip``), then resize to ``img_size``."""
    crop = PRESETS["pad_crop_flip"](data_cfg, train)
    size = data_cfg.img_size
    return lambda images, generator: resize_batch(crop(images, generator), size)


@register_preset("upsample")
def _upsample(data_cfg, train):
    """Resize to ``eval_size`` (default ``img_size``) for evaluation, or ``img_size`` when training."""
    size = data_cfg.img_size if train else (data_cfg.eval_size or data_cfg.img_size)
    return lambda images, generator: resize_batch(images, size)
