"""Augmentation presets as whole-batch operations on uint8 tensors (DESIGN §5, performance-notes §6.7).

A batch transform is ``fn(images_uint8 (N, C, H, W), generator) -> images_uint8``; the generator is a CPU
``torch.Generator`` seeded per batch by the loader, so the augmentation of a batch depends only on
(seed, epoch, batch index, rank). Random draws are made on the CPU (a few numbers per image) and applied on
the images' device in one batched operation (a gather, ``roi_align`` or ``interpolate``), so no per-sample
Python or PIL is involved. The draws reach a GPU through pinned memory without blocking (``to_device``): a
plain ``.to(device)`` from pageable memory makes the host wait for the GPU's queue, every batch.

Streaming datasets (ImageNet) hold images of different sizes, so their presets work per image:
``fn(image_uint8 (C, H, W), generator) -> image_uint8 (C, S, S)`` with torchvision's ``transforms.v2``
functionals, one generator per image. The resizing presets exist in both forms under the same names and draw
their random numbers with the same function, ``random_resized_crop_params``.

Presets are named in ``data.train_transform`` / ``data.eval_transform``; ``@register_preset`` adds a batch
preset and ``@register_sample_preset`` a per-image one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from effconv.errors import UserError, unknown_choice

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
PRESETS: dict[str, Callable[..., BatchTransform]] = {}
SAMPLE_PRESETS: dict[str, Callable[..., BatchTransform]] = {}
IMAGENET_CROP_FRACTION = 0.875  # resize 256 -> crop 224 (torchvision / timm crop_pct)


def register_preset(name: str):
    def wrap(factory):
        PRESETS[name] = factory
        return factory

    return wrap


def register_sample_preset(name: str):
    def wrap(factory):
        SAMPLE_PRESETS[name] = factory
        return factory

    return wrap


def batch_transform(name: str, data_cfg, train: bool) -> BatchTransform:
    if name not in PRESETS:
        raise unknown_choice("transform preset", name, PRESETS, "; set data.train_transform / data.eval_transform")
    return PRESETS[name](data_cfg, train)


def sample_transform(name: str, data_cfg, train: bool) -> BatchTransform:
    """The per-image form of a preset, for streaming datasets whose images differ in size."""
    if name not in SAMPLE_PRESETS:
        if name in PRESETS:
            raise UserError(
                f"{data_cfg.name} images differ in size, so data.{'train' if train else 'eval'}_transform="
                f"{name} cannot batch them; use one of {', '.join(sorted(SAMPLE_PRESETS))}"
            )
        raise unknown_choice(
            "transform preset", name, SAMPLE_PRESETS, "; set data.train_transform / data.eval_transform"
        )
    return SAMPLE_PRESETS[name](data_cfg, train)


def output_size(data_cfg, train: bool) -> int:
    """The square side a resizing preset gives: img_size in training, else eval_size (or img_size)."""
    return data_cfg.img_size if train else (data_cfg.eval_size or data_cfg.img_size)


def random_resized_crop_params(height: int, width: int, n: int, scale, ratio, generator: torch.Generator):
    """(top, left, h, w) int64 tensors of ``n`` crops drawn as torchvision's ``RandomResizedCrop.get_params``:
    up to 10 tries of an area fraction uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, the
    first crop that fits wins, else the central crop with the ratio clamped. Vectorised over the ``n`` images.
    """
    if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
        raise UserError(
            f"data.crop_scale={list(scale)} must satisfy 0 < min <= max <= 1 and data.crop_ratio="
            f"{list(ratio)} 0 < min <= max"
        )
    tries = 10
    area = height * width
    target = area * torch.empty(n, tries, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n, tries, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(found, w, fallback_w).long()
    h = torch.where(found, h, fallback_h).long()
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (height - h + 1)).long(), (height - h) // 2)
    left = torch.where(found, (u[:, 1] * (width - w + 1)).long(), (width - w) // 2)
    return top, left, h, w


def to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor (random draws) on ``device``, copied without making the host wait: pinned and
    non-blocking on CUDA (the caching host allocator keeps the pinned block until the copy is done)."""
    if values.device == device:
        return values
    if device.type == "cuda":
        values = values.pin_memory()
    return values.to(device, non_blocking=True)


def resized_crops(images: torch.Tensor, top, left, h, w, size: int) -> torch.Tensor:
    """Crop box (top, left, h, w) of every image and resize it to ``size`` x ``size``, as one ``roi_align``.

    With ``aligned=True`` a box covers pixels [left, left + w) exactly and the output samples sit where
    bilinear resizing (align_corners=False) puts them, so enlarging a crop gives torchvision's
    ``resized_crop`` except in the outermost output ring, which blends up to half a pixel from beyond the box
    where crop-then-resize repeats the edge. When the box is larger than the output, roi_align averages
    ceil(box / size)^2 samples per output pixel, a box-filter antialias close to torchvision's.

    The operator is called directly, not through ``torchvision.ops.roi_align``: with ``deterministic=true`` on
    a GPU that wrapper switches to its pure-Python formulation (lazily compiled, large intermediates) because
    the kernel's *backward* is not deterministic; augmentation needs only the forward, which is (one thread
    per output value).
    """
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    boxes = to_device(torch.stack([torch.arange(len(images)), left, top, left + w, top + h], 1).float(), images.device)
    # (input, boxes, spatial_scale, output height, output width, sampling_ratio, aligned)
    out = torch.ops.torchvision.roi_align(images.float(), boxes, 1.0, size, size, -1, True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def flip_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``images`` with the ones marked in ``flip`` mirrored left-right (a new tensor). Only the chosen images
    are flipped: 1.4-2.5x faster than ``torch.where`` over a flipped copy of all (benchmarks/bench_loop.py)."""
    chosen = to_device(flip.nonzero().flatten(), images.device)
    out = images.clone()
    if len(chosen):
        out[chosen] = images[chosen].flip(3)
    return out


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision's centre crop."""
    if size > height or size > width:
        raise UserError(
            f"cannot centre-crop {size}x{size} from {height}x{width} images; lower data.eval_size "
            "or raise data.eval_resize"
        )
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def shorter_side_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(H, W) after resizing the shorter side to ``shorter``, as torchvision's ``Resize(int)``."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def crop_flip(
    images: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    flip: torch.Tensor,
    size: tuple[int, int],
    padding: int = 0,
) -> torch.Tensor:
    """Per-image crops of ``size`` at (top, left) of the zero-padded images, mirrored where ``flip``.

    One ``torch.gather`` over each image's flattened pixels: 5x faster on the CPU than advanced indexing
    with four broadcast index tensors (which computes a full index per element).
    """
    n, c, _, _ = images.shape
    h, w = size
    images = images.contiguous()  # gathering 3-byte NHWC pixels is 2-3x slower than NCHW planes on the CPU
    if padding:
        images = F.pad(images, (padding,) * 4)
    height, width = images.shape[-2:]
    device = images.device
    rows = to_device(top, device)[:, None] + torch.arange(h, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    cols = torch.where(to_device(flip, device)[:, None], w - 1 - cols, cols) + to_device(left, device)[:, None]
    flat = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, height * width).gather(2, flat).view(n, c, h, w)


@register_preset("none")
def _identity(data_cfg, train):
    return lambda images, generator: images


@register_preset("flip")
def _flip(data_cfg, train):
    def fn(images, generator):
        return flip_where(images, torch.rand(len(images), generator=generator) < data_cfg.hflip)

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


@register_preset("random_resized_crop_flip")
@register_preset("imagenet_train")
def _random_resized_crop_flip(data_cfg, train):
    """RandomResizedCrop(img_size, scale=crop_scale, ratio=crop_ratio) + flip (Tiny-ImageNet, ImageNet)."""
    size, scale, ratio = data_cfg.img_size, list(data_cfg.crop_scale), list(data_cfg.crop_ratio)

    def fn(images, generator):
        n, _, height, width = images.shape
        top, left, h, w = random_resized_crop_params(height, width, n, scale, ratio, generator)
        flip = torch.rand(n, generator=generator) < data_cfg.hflip
        return flip_where(resized_crops(images, top, left, h, w, size), flip)

    return fn


def _eval_resize(data_cfg, train: bool, imagenet_default: bool) -> int | None:
    """The shorter side before the centre crop: eval_resize, or for imagenet_eval size / 0.875 when unset."""
    if data_cfg.eval_resize:
        return data_cfg.eval_resize
    return round(output_size(data_cfg, train) / IMAGENET_CROP_FRACTION) if imagenet_default else None


def _center_crop_batch(data_cfg, train, imagenet_default: bool = False):
    size, shorter = output_size(data_cfg, train), _eval_resize(data_cfg, train, imagenet_default)

    def fn(images, generator):
        _, _, height, width = images.shape
        if shorter and shorter != min(height, width):
            height, width = shorter_side_size(height, width, shorter)
            images = (
                F.interpolate(
                    images.float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False
                )
                .round_()
                .clamp_(0, 255)
                .to(torch.uint8)
            )
        if (height, width) == (size, size):
            return images
        top, left = center_crop_box(height, width, size)
        return images[:, :, top : top + size, left : left + size]

    return fn


@register_preset("center_crop")
def _center_crop(data_cfg, train):
    """Resize the shorter side to eval_resize (if set), then the central eval_size crop (Tiny: 64->56)."""
    return _center_crop_batch(data_cfg, train)


@register_preset("imagenet_eval")
def _imagenet_eval(data_cfg, train):
    """Resize the shorter side to eval_resize (default size / 0.875, i.e. 256 for 224), centre crop."""
    return _center_crop_batch(data_cfg, train, imagenet_default=True)


# ------------------------------------------------------------------------------------ per-image (streaming)
# Classes, not closures: DataLoader workers started by spawn or forkserver (Linux's default from Python 3.14)
# receive the transform pickled, and a closure cannot be pickled. Each splits into ``plan`` (the random draws,
# from the image's size only) and ``apply``: with data.gpu_decode the workers draw the plan from the JPEG
# header and the main process applies it to the image nvJPEG decoded (effconv/data/streaming.py).
class SampleRandomResizedCropFlip:
    """RandomResizedCrop(size, scale, ratio) + horizontal flip with probability ``hflip``, one image."""

    def __init__(self, size: int, scale, ratio, hflip: float):
        self.size, self.scale, self.ratio, self.hflip = size, list(scale), list(ratio), float(hflip)

    def plan(self, height: int, width: int, generator: torch.Generator) -> tuple[tuple[int, ...], bool]:
        box = tuple(int(v) for v in random_resized_crop_params(height, width, 1, self.scale, self.ratio, generator))
        return box, float(torch.rand(1, generator=generator)) < self.hflip

    def apply(self, image: torch.Tensor, box) -> torch.Tensor:
        """The crop box resized to size x size (the flip is the caller's: it can flip a whole batch at once)."""
        from torchvision.transforms.v2 import functional as TF

        return TF.resized_crop(image, *box, [self.size, self.size], antialias=True)

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        box, flip = self.plan(*image.shape[-2:], generator)
        out = self.apply(image, box)
        return out.flip(-1) if flip else out


class SampleCenterCrop:
    """Resize the shorter side to ``shorter`` (if set), then the central ``size`` x ``size`` crop, one image."""

    def __init__(self, size: int, shorter: int | None):
        self.size, self.shorter = size, shorter

    def plan(self, height: int, width: int, generator: torch.Generator) -> tuple[None, bool]:
        return None, False

    def apply(self, image: torch.Tensor, box=None) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        if self.shorter:
            image = TF.resize(image, [self.shorter], antialias=True)
        top, left = center_crop_box(*image.shape[-2:], self.size)
        return image[:, top : top + self.size, left : left + self.size]

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(image)


@register_sample_preset("random_resized_crop_flip")
@register_sample_preset("imagenet_train")
def _sample_random_resized_crop_flip(data_cfg, train):
    return SampleRandomResizedCropFlip(data_cfg.img_size, data_cfg.crop_scale, data_cfg.crop_ratio, data_cfg.hflip)


@register_sample_preset("center_crop")
def _sample_center_crop_preset(data_cfg, train):
    return SampleCenterCrop(output_size(data_cfg, train), _eval_resize(data_cfg, train, imagenet_default=False))


@register_sample_preset("imagenet_eval")
def _sample_imagenet_eval(data_cfg, train):
    return SampleCenterCrop(output_size(data_cfg, train), _eval_resize(data_cfg, train, imagenet_default=True))
