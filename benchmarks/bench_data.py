"""Input pipelines: images/s of our loaders against torchvision's per-sample pipelines, in one process.

1. CIFAR (DESIGN §5, performance-notes §6.7): 50,000 32x32 uint8 images in memory. Ours: ``InMemoryLoader``
   with ``pad_crop_flip`` (one gather per batch) and normalisation on the batch, no workers. Reference: a
   torchvision-CIFAR-style dataset returning ``PIL.Image`` with RandomCrop(32, padding=4) +
   RandomHorizontalFlip + ToTensor + Normalize through a DataLoader with 2 workers. Batch 256. Target >= 10x.
2. ImageNet streaming (performance-notes §5, §6.4): a folder of generated JPEGs at ImageNet's typical
   500x375 (noise-rich content, so the files are larger than natural photos and decoding is pessimistic).
   Ours: ``StreamingLoader`` (decode_jpeg + transforms.v2 RandomResizedCrop 224 + flip on uint8 in the
   workers, normalisation after collation). Reference: ``ImageFolder`` + PIL RandomResizedCrop(224) + flip +
   ToTensor + Normalize. Both with 2 workers, batch 64.

A sample pulls consecutive batches from a running loader for at least ``min_time_s`` (1.5 s here, so the few
batches the workers prefetch while another candidate is timed weigh little); candidates alternate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import Context, Row, compare

CIFAR_N, CIFAR_BATCH = 50_000, 256
JPEG_N, JPEG_BATCH, JPEG_SIZE = 512, 64, (375, 500)
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PilCifar(torch.utils.data.Dataset):
    """What torchvision's CIFAR10 does per sample: a PIL image from the HWC array, then the transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def endless(make_iterator):
    """One batch per call from an iterator that restarts (a new epoch) when exhausted."""
    state = {"it": make_iterator(0), "epoch": 0}

    def next_batch():
        try:
            return next(state["it"])
        except StopIteration:
            state["epoch"] += 1
            state["it"] = make_iterator(state["epoch"])
            return next(state["it"])

    return next_batch


def cifar_rows(ctx: Context) -> list[Row]:
    from torchvision import transforms as T

    from effconv.data.memory import InMemoryLoader
    from effconv.data.transforms import batch_transform
    from tests.data_helpers import data_cfg

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(CIFAR_N, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=CIFAR_N)
    cfg = data_cfg("cifar10")
    ours = InMemoryLoader(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        CIFAR_BATCH,
        batch_transform("pad_crop_flip", cfg, True),
        MEAN,
        STD,
        ctx.device,
        seed=0,
        train=True,
    )
    reference = torch.utils.data.DataLoader(
        PilCifar(
            np.ascontiguousarray(images.transpose(0, 2, 3, 1)),
            labels,
            T.Compose(
                [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)]
            ),
        ),
        batch_size=CIFAR_BATCH,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        drop_last=True,
    )
    times = compare({"ours": endless(ours.batches), "reference": endless(lambda epoch: iter(reference))}, ctx)

    ours_rate, ref_rate = CIFAR_BATCH / times["ours"], CIFAR_BATCH / times["reference"]
    ratio = ours_rate / ref_rate
    return [
        Row(
            "data / CIFAR-10 training pipeline (pad 4 + crop + flip + normalise)",
            "batched in-memory (ours)",
            ours_rate,
            "img/s",
            reference="torchvision per-sample PIL, DataLoader 2 workers",
            ratio=ratio,
            ratio_meaning="faster",
            target=">= 10x",
            met=ratio >= 10,
            note=f"batch {CIFAR_BATCH}, no workers",
        ),
        Row(
            "data / CIFAR-10 training pipeline (pad 4 + crop + flip + normalise)",
            "torchvision per-sample, 2 workers",
            ref_rate,
            "img/s",
            note=f"batch {CIFAR_BATCH}",
        ),
    ]


def write_jpegs(root: Path, n: int, classes: int = 8) -> None:
    from tests.data_formats import class_images, save_image

    rng = np.random.default_rng(0)
    for i in range(n):
        label = i % classes
        folder = root / "train" / f"n{label:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        image = class_images(np.array([label]), *JPEG_SIZE, classes, rng, 16)[0]
        save_image(image, folder / f"n{label:08d}_{i}.JPEG")


def imagenet_rows(ctx: Context) -> list[Row]:
    from torchvision import datasets
    from torchvision import transforms as T

    from effconv.data import read_split
    from effconv.data.streaming import StreamingLoader
    from tests.data_helpers import data_cfg

    n = JPEG_N // 4 if ctx.quick else JPEG_N
    with tempfile.TemporaryDirectory() as tmp:
        write_jpegs(Path(tmp), n)
        cfg = data_cfg("imagenet", tmp, num_classes=8, num_workers=2)
        ours = StreamingLoader(
            read_split(cfg, "train"),
            JPEG_BATCH,
            cfg,
            train=True,
            mean=cfg.mean,
            std=cfg.std,
            device=ctx.device,
            seed=0,
        )
        folder = datasets.ImageFolder(
            str(Path(tmp) / "train"),
            T.Compose(
                [
                    T.RandomResizedCrop(224),
                    T.RandomHorizontalFlip(),
                    T.ToTensor(),
                    T.Normalize(cfg.mean, cfg.std),
                ]
            ),
        )
        reference = torch.utils.data.DataLoader(
            folder,
            batch_size=JPEG_BATCH,
            shuffle=True,
            num_workers=2,
            persistent_workers=True,
            drop_last=True,
        )
        times = compare(
            {"ours": endless(ours.batches), "reference": endless(lambda epoch: iter(reference))},
            ctx,
            warmup=1,
        )

    ours_rate, ref_rate = JPEG_BATCH / times["ours"], JPEG_BATCH / times["reference"]
    group = "data / ImageNet streaming (JPEG 500x375 -> RandomResizedCrop 224 + flip, 2 workers)"
    return [
        Row(
            group,
            "StreamingLoader: decode_jpeg + v2 on uint8 (ours)",
            ours_rate,
            "img/s",
            reference="ImageFolder + PIL + ToTensor/Normalize",
            ratio=ours_rate / ref_rate,
            ratio_meaning="faster",
            note=f"{n} generated JPEGs, batch {JPEG_BATCH}; performance-notes §6.4: 1.8-2.0x per core",
        ),
        Row(group, "ImageFolder + PIL per-sample", ref_rate, "img/s", note=f"batch {JPEG_BATCH}"),
    ]


def run(ctx: Context) -> list[Row]:
    ctx = Context(ctx.device, ctx.quick)
    ctx.min_time_s, ctx.rounds = (0.3, 2) if ctx.quick else (1.5, 3)
    return cifar_rows(ctx) + imagenet_rows(ctx)
