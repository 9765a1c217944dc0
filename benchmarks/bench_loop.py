"""Loop overhead: our full train step vs a bare forward / backward / optimizer step on the same batch.

The full step is ``Trainer.train_epoch`` over a few batches: the in-memory data fast path (index slice of a
per-epoch permutation, batched augmentation, float conversion and normalisation, channels_last), the loss
bookkeeping, the non-finite check, the optimizer step, the EMA update (``recipe.ema=true``), the per-update
schedule step and the progress bar (tqdm, active only on a terminal). AMP follows ``amp=auto``: off on CPU,
bf16 on a GPU with native bf16. The bare step is the same model and optimizer on one batch already in memory,
in the loop's precision: ``with autocast: loss = CE(model(x), y); loss.backward(); opt.step();
opt.zero_grad()``. Target: full / bare <= 1.10.

Models at their datasets' sizes: resnet20_cifar (CIFAR-10, 32 px, pad-crop-flip), micronet_m0 and
dicenet_100 (ImageNet, 224 px, 1000 classes; flip on in-memory 224 px arrays: the ImageNet decode path is
measured in bench_data). Images are synthetic uint8 (a dataset reader registered here); batches are small
on the CPU so its run stays short, GPU-sized on a GPU.
"""

from __future__ import annotations

import tempfile

import torch

from benchmarks.harness import Context, Row, compare, spread
from effconv.config import compose
from effconv.data import ImageArrays, register_dataset

GROUP = "loop overhead"
MODELS = {  # model -> (data group, image size, classes, train preset, batch on CPU, batch on a GPU)
    "resnet20_cifar": ("cifar10", 32, 10, "pad_crop_flip", 32, 512),
    "micronet_m0": ("imagenet", 224, 1000, "flip", 8, 256),
    "dicenet_100": ("imagenet", 224, 1000, "flip", 4, 128),
}
STEPS = 3  # train steps per timed call


def batch_for(model: str, ctx: Context) -> int:
    *_, cpu, gpu = MODELS[model]
    return ctx.batch(cpu, gpu)


@register_dataset("bench_synthetic")
def read_synthetic(data_cfg, split: str) -> ImageArrays:
    """Random uint8 images of the configured size; the split name ends with how many (``train-256``)."""
    gen = torch.Generator().manual_seed(0 if split.startswith("train") else 1)
    n = int(split.rsplit("-", 1)[1])
    images = torch.randint(0, 256, (n, 3, data_cfg.img_size, data_cfg.img_size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, data_cfg.num_classes, (n,), generator=gen)
    return ImageArrays(images, labels, [str(i) for i in range(data_cfg.num_classes)])


def synthetic_run(model: str, data: str, preset: str, size: int, classes: int, batch: int, device: str, out) -> list:
    """The overrides of a run of ``model`` on ``bench_synthetic`` images: 4 batches to train on, one to evaluate."""
    return [
        f"model={model}",
        f"data={data}",
        "data.name=bench_synthetic",
        f"data.train_split=train-{4 * batch}",
        f"data.eval_split=eval-{batch}",
        f"data.img_size={size}",
        f"data.eval_size={size}",
        f"data.num_classes={classes}",
        f"data.train_transform={preset}",
        "data.eval_transform=none",
        f"recipe.batch_size={batch}",
        "recipe.epochs=1000",
        "recipe.warmup_epochs=0",
        "recipe.ema=true",
        f"device={device}",
        f"output_root={out}",
        "checkpoint_interval_s=0",
    ]


def trainer_for(model: str, ctx: Context, out: str, *extra: str):
    """A built Trainer on synthetic in-memory data of ``model``'s dataset size (nothing trained yet)."""
    from effconv.engine.loop import Trainer

    data, size, classes, preset, *_ = MODELS[model]
    batch = batch_for(model, ctx)
    return Trainer(compose([*synthetic_run(model, data, preset, size, classes, batch, ctx.device.type, out), *extra]))


def loop_steps(trainer, steps: int = STEPS):
    """``steps`` full train steps through the loop's own epoch code."""
    trainer.batches_per_epoch = steps
    state = {"epoch": 0}

    def fn():
        trainer.state.start_epoch(state["epoch"])
        trainer.train_epoch(state["epoch"])
        state["epoch"] += 1

    return fn


def bare_steps(trainer, steps: int = STEPS):
    """The same model and optimizer, one in-memory batch, nothing else; in the loop's precision (its autocast),
    so that the ratio compares like with like."""
    x, y = next(iter(trainer.loaders.train.batches(0)))
    model, opt, criterion, rt = trainer.model, trainer.optimizer, trainer.criterion, trainer.rt

    def fn():
        for _ in range(steps):
            with rt.autocast():
                loss = criterion(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    return fn


def data_steps(trainer, steps: int = STEPS):
    """The loop's data path alone: ``steps`` batches drawn, augmented, normalised."""

    def fn():
        for b, _ in enumerate(trainer.loaders.train.batches(0)):
            if b + 1 == steps:
                break

    return fn


def ema_steps(trainer, steps: int = STEPS):
    def fn():
        for _ in range(steps):
            trainer.ema.update(trainer.model, step=1000)

    return fn


def _cause(ms: dict[str, float], noise: float) -> str:
    rest = ms["loop"] - ms["bare"] - ms["data"] - ms["ema"]
    verdict = (
        "within the machine's noise"
        if abs(rest) <= noise * ms["bare"]
        else "more than the machine's noise: loop code not accounted for above"
    )
    return (
        f"per step: data path {ms['data']:.1f} ms (index_select, augmentation, uint8 -> float, normalise), "
        f"EMA update {ms['ema']:.1f} ms (timm ModelEmaV3 walks both state_dicts every update), unattributed "
        f"{rest:.1f} ms, {verdict} (the bare step's samples spread {noise:.0%}, IQR/median)"
    )


def run(ctx: Context) -> list[Row]:
    ctx = Context(ctx.device, ctx.quick, out=ctx.out)
    ctx.rounds = 3 if ctx.quick else 7  # the ratio is close to 1: more rounds against the machine's noise
    rows = []
    with tempfile.TemporaryDirectory(prefix="effconv-bench-") as out:
        for model, (data, size, _, preset, *_) in MODELS.items():
            batch = batch_for(model, ctx)
            trainer = trainer_for(model, ctx, out)
            trainer.model.train()
            times = compare(
                {
                    "loop": loop_steps(trainer),
                    "bare": bare_steps(trainer),
                    "data": data_steps(trainer),
                    "ema": ema_steps(trainer),
                },
                ctx,
                warmup=1,
            )
            noise = spread(ctx.last_samples["bare"])
            ratio = times["loop"] / times["bare"]
            extra = {k: v / STEPS * 1e3 for k, v in times.items()}
            rows.append(
                Row(
                    GROUP,
                    f"{model} train step, {data} {size} px, batch {batch}",
                    times["loop"] / STEPS * 1e3,
                    "ms/step",
                    reference="bare forward/backward/SGD step on the same in-memory batch",
                    ratio=ratio,
                    ratio_meaning="loop time / bare time",
                    target="<= 1.10",
                    met=ratio <= 1.10,
                    note=f"data: in-memory {preset}, EMA on, amp={trainer.cfg.amp} "
                    f"({'off' if trainer.rt.amp_dtype is None else trainer.rt.amp_dtype}), "
                    f"channels_last={trainer.cfg.channels_last}; bare {extra['bare']:.1f} ms/step",
                    extra=extra,
                    cause=_cause(extra, noise) if ratio > 1.10 else "",
                )
            )
    return rows
