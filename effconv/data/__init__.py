"""Datasets: readers of the published on-disk formats, augmentation presets and loaders.

``build(data_cfg, ...)`` returns a train and an eval loader. Every loader follows one protocol, which is all
the training loop knows about data::

    len(loader)                     batches per epoch on this process
    loader.num_samples              images per epoch on this process
    loader.batches(epoch, start=0)  iterator of (images float32 normalised on the device, labels int64),
                                    resumable at batch ``start``; the order and the augmentation are functions
                                    of (seed, epoch, batch index, rank) only, so a resumed epoch is identical

A reader (``@register_dataset(name)``) takes the data config and a split name and returns either
``ImageArrays`` (small datasets: decoded once into uint8 tensors, augmented as whole batches on the device,
DESIGN §5) or a ``torch.utils.data.Dataset`` of (uint8 CHW tensor, label) for streaming datasets. Every module
of this package is imported here, so adding a reader file is enough.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from effconv.errors import UserError, unknown_choice


@dataclass
class ImageArrays:
    """A decoded split: uint8 images (N, C, H, W), int64 labels (N,), class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")


READERS: dict[str, Callable] = {}


def register_dataset(name: str):
    def wrap(fn):
        READERS[name] = fn
        return fn

    return wrap


def read_split(data_cfg, split: str):
    if data_cfg.name not in READERS:
        raise unknown_choice("dataset", data_cfg.name, READERS, "; see effconv/conf/data/")
    return READERS[data_cfg.name](data_cfg, split)


def check_labels(labels: torch.Tensor, num_classes: int, where: str) -> None:
    """Labels must lie in [0, num_classes): a mismatch means a wrong num_classes or a wrong file."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise UserError(
            f"{where}: labels span {int(labels.min())}..{int(labels.max())} but "
            f"data.num_classes={num_classes}; set data.num_classes to the number of classes in the files"
        )


def check_output_size(transform, sample: torch.Tensor, data_cfg, train: bool) -> None:
    """The preset must give the size the model is built (and profiled) for: img_size, or eval_size."""
    expected = data_cfg.img_size if train else (data_cfg.eval_size or data_cfg.img_size)
    shape = tuple(transform(sample, torch.Generator().manual_seed(0)).shape[-2:])
    if shape != (expected, expected):
        key = "train_transform" if train else "eval_transform"
        preset = getattr(data_cfg, key)
        raise UserError(
            f"data.{key}={preset} turns the {sample.shape[-2]}x{sample.shape[-1]} images of "
            f"{data_cfg.name} into {shape[0]}x{shape[1]}, but data.{'img_size' if train else 'eval_size'}"
            f"={expected}; set that size or pick a resizing preset (random_resized_crop_flip, center_crop)"
        )


@dataclass
class Loaders:
    train: object | None  # None when built with with_train=False
    eval: object
    classes: list[str]


def build(
    data_cfg,
    batch_size: int,
    eval_batch_size: int,
    device: torch.device,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    memory_format=torch.contiguous_format,
    with_train: bool = True,
) -> Loaders:
    """Train and eval loaders for ``data_cfg``: in-memory or streaming, by what the reader returns.

    ``with_train=False`` (evaluation) reads the evaluation split only; ``Loaders.train`` is then None."""
    from effconv.data.memory import InMemoryLoader
    from effconv.data.transforms import batch_transform

    common = {
        "device": device,
        "seed": seed,
        "rank": rank,
        "world_size": world_size,
        "memory_format": memory_format,
        "mean": data_cfg.mean,
        "std": data_cfg.std,
    }
    loaders = [] if with_train else [None]
    splits = ((data_cfg.train_split, True), (data_cfg.eval_split, False))
    for split, train in splits if with_train else splits[1:]:
        data = read_split(data_cfg, split)
        if isinstance(data, ImageArrays):
            check_labels(data.labels, data_cfg.num_classes, f"{data_cfg.name} {split}")
            preset = data_cfg.train_transform if train else data_cfg.eval_transform
            transform = batch_transform(preset, data_cfg, train)
            check_output_size(transform, data.images[:2], data_cfg, train)
            loader = InMemoryLoader(
                data.images,
                data.labels,
                batch_size if train else eval_batch_size,
                transform=transform,
                train=train,
                **common,
            )
            classes = data.classes
        else:
            from effconv.data.streaming import StreamingLoader

            loader = StreamingLoader(data, batch_size if train else eval_batch_size, data_cfg, train=train, **common)
            classes = list(getattr(data, "classes", []))
        loaders.append(loader)
    return Loaders(loaders[0], loaders[1], classes)


for _module in pkgutil.iter_modules(__path__):
    if _module.name != "prepare":  # a command-line tool, imported on use
        importlib.import_module(f"{__name__}.{_module.name}")
