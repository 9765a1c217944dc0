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

Timing: ``harness.compare`` repeats a call inside one sample, but loaders with worker processes keep
decoding ahead after their sample ends and would steal the cores from the next candidate's sample. So each
sample here starts a fresh pass, lets the first batch arrive untimed (worker start-up), times the next
``batches`` batches, and stops the workers before the next candidate runs; candidates alternate for
``rounds`` rounds and the median counts (performance-notes §6.0).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import Context, Row, sync

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


def steady_rate(start: Callable[[], tuple[Iterator, Callable[[], None]]], batches: int, device) -> float:
    """img/s over ``batches`` batches after the first; ``start()`` gives (iterator, stop)."""
    iterator, stop = start()
    try:
        next(iterator)
        sync(device)
        images, begin = 0, time.perf_counter()
        for _ in range(batches):
            images += len(next(iterator)[1])
        sync(device)
        return images / (time.perf_counter() - begin)
    finally:
        stop()


def alternate(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, measure in candidates.items():
            rates[name].append(measure())
    return {name: statistics.median(values) for name, values in rates.items()}


def torch_loader(dataset, batch_size: int):
    """A fresh 2-worker DataLoader pass; stopping it shuts its workers down."""

    def start():
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=2, drop_last=True
        )
        iterator = iter(loader)
        return iterator, iterator._shutdown_workers

    return start


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
    reference = PilCifar(
        np.ascontiguousarray(images.transpose(0, 2, 3, 1)),
        labels,
        T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)]),
    )
    batches = 10 if ctx.quick else 40
    rates = alternate(
        {
            "ours": lambda: steady_rate(lambda: (ours.batches(0), lambda: None), batches, ctx.device),
            "reference": lambda: steady_rate(torch_loader(reference, CIFAR_BATCH), batches, ctx.device),
        },
        ctx.rounds,
    )
    ratio = rates["ours"] / rates["reference"]
    group = "data / CIFAR-10 training pipeline (pad 4 + crop + flip + normalise)"
    return [
        Row(
            group,
            "batched in-memory (ours)",
            rates["ours"],
            "img/s",
            reference="torchvision per-sample PIL, DataLoader 2 workers",
            ratio=ratio,
            ratio_meaning="faster",
            target=">= 10x",
            met=ratio >= 10,
            note=f"batch {CIFAR_BATCH}, no workers, one thread, {ctx.device.type}",
            cause=""
            if ratio >= 10
            else "the reference's 2 worker processes get both cores, ours one thread (a thread team spin-waits "
            "on shared cores); on this VM the reference measured 5.3-9.9k img/s and ours 60-106k img/s in "
            "separate runs of one day (19.99x at best), so the ratio follows the host's load",
        ),
        Row(
            group,
            "torchvision per-sample, 2 workers",
            rates["reference"],
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

    n = JPEG_N // 2 if ctx.quick else JPEG_N
    batches = n // JPEG_BATCH - 2
    with tempfile.TemporaryDirectory() as tmp:
        write_jpegs(Path(tmp), n)
        cfg = data_cfg("imagenet", tmp, num_classes=8, num_workers=2)
        dataset = read_split(cfg, "train")

        def ours():
            loader = StreamingLoader(
                dataset, JPEG_BATCH, cfg, train=True, mean=cfg.mean, std=cfg.std, device=ctx.device, seed=0
            )
            return loader.batches(0), loader.close

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
        rates = alternate(
            {
                "ours": lambda: steady_rate(ours, batches, ctx.device),
                "reference": lambda: steady_rate(torch_loader(folder, JPEG_BATCH), batches, ctx.device),
            },
            ctx.rounds,
        )
    ratio = rates["ours"] / rates["reference"]
    group = "data / ImageNet streaming (JPEG 500x375 -> RandomResizedCrop 224 + flip, 2 workers)"
    return [
        Row(
            group,
            "StreamingLoader: decode_jpeg + v2 on uint8 (ours)",
            rates["ours"],
            "img/s",
            reference="ImageFolder + PIL + ToTensor/Normalize",
            ratio=ratio,
            ratio_meaning="faster",
            note=f"{n} generated JPEGs, batch {JPEG_BATCH}; performance-notes §6.4: 1.8-2.0x per core",
        ),
        Row(group, "ImageFolder + PIL per-sample", rates["reference"], "img/s", note=f"batch {JPEG_BATCH}"),
    ]


# the smallest and the largest model of each pipeline's dataset: (name, size, classes, CPU batch, GPU batch)
CONSUMERS = {
    "cifar": [("resnet20_cifar", 32, 10, 32, 512), ("shakeshake26_2x96d_cifar", 32, 10, 8, 256)],
    "imagenet": [("micronet_m0", 224, 1000, 8, 256), ("mixnet_l", 224, 1000, 2, 128)],
}


def model_rates(names, ctx: Context) -> dict[str, float]:
    """Training img/s of bare steps (forward, backward, SGD; channels_last; amp=auto's precision) of each
    model, one compare."""
    import timm

    import effconv  # noqa: F401  (registers the models)
    from benchmarks.harness import compare, train_step
    from effconv.engine.runtime import resolve_amp
    from effconv.engine.workarounds import avoid_cpu_channels_last_crash

    steps, batches = {}, {}
    amp = resolve_amp("auto", ctx.device)
    for name, size, classes, cpu_batch, gpu_batch in names:
        batch = ctx.batch(cpu_batch, gpu_batch, quick=max(2, cpu_batch // 4))
        model = timm.create_model(name, num_classes=classes).to(ctx.device, memory_format=torch.channels_last)
        avoid_cpu_channels_last_crash(model, ctx.device, True)
        x = torch.randn(batch, 3, size, size, device=ctx.device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, classes, (batch,), device=ctx.device)
        steps[name] = train_step(model.train(), x, y, torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9), amp)
        batches[name] = batch
    return {name: batches[name] / t for name, t in compare(steps, ctx, warmup=1).items()}


def bottleneck_rows(pipeline: str, supply: float, ctx: Context) -> list[Row]:
    rows = []
    for name, rate in model_rates(CONSUMERS[pipeline], ctx).items():
        ratio = supply / rate
        rows.append(
            Row(
                "data / pipeline vs model consumption",
                f"{pipeline} pipeline vs {name} training",
                rate,
                "img/s (model)",
                reference=f"our {pipeline} pipeline: {supply:.0f} img/s",
                ratio=ratio,
                ratio_meaning="pipeline img/s / model img/s (> 1: the model is the bottleneck)",
                note=("model-bound" if ratio > 1 else "**data-bound**")
                + f" by {max(ratio, 1 / ratio):.1f}x; the two rates were measured one after the other on the "
                "same cores, so in a run they also share them",
            )
        )
    return rows


def run(ctx: Context) -> list[Row]:
    ctx = Context(ctx.device, ctx.quick, out=ctx.out)
    ctx.rounds = 2 if ctx.quick else 3
    cifar, imagenet = cifar_rows(ctx), imagenet_rows(ctx)
    return (
        cifar
        + imagenet
        + bottleneck_rows("cifar", cifar[0].value, ctx)
        + bottleneck_rows("imagenet", imagenet[0].value, ctx)
    )
