"""Channel shuffles against a plain copy, and channels_last against NCHW for every model family.

* Channel shuffle (performance-notes §3, §6.3): ``channel_shuffle`` (PyTorch's native op) and MicroNet's
  consecutive shuffles composed into one permutation (``channel_shuffles``) against ``x.clone()`` of the same
  tensor, forward + backward, NCHW and channels_last. Target <= 1.2x a copy. The usual view/transpose idiom is
  timed beside them for reference. DiCENet's shuffles do not appear here: its group-3 shuffle is folded into
  the DimFuse weights (bench_dice) and its concat + shuffle is one interleave.
* channels_last vs NCHW: one bare training step (forward, backward, SGD) of one model per family at its
  dataset's size, small batches; ratio = NCHW time / channels_last time (> 1: channels_last faster). The
  loop's ``channels_last`` default is chosen from these rows (docs/benchmarks.md, "defaults").
"""

from __future__ import annotations

import timm
import torch

import effconv  # noqa: F401  (registers the models)
from benchmarks.harness import Context, FunctionModule, Row, compare, forward_backward, train_step
from effconv.engine.workarounds import avoid_cpu_channels_last_crash
from effconv.ops.common import channel_shuffle, channel_shuffles

SHUFFLES = [  # (label, batch on CPU, batch on a GPU, channels, size, groups in turn)
    ("ShuffleNetV2 / DiCENet-style, g=2", 16, 256, 116, 28, (2,)),
    ("MicroNet Lite block, g=24 then 48 (composed)", 16, 256, 96, 28, (24, 48)),
]
# one model per family: registry name, knobs, input size, classes, batch on CPU, batch on a GPU
FAMILIES = [
    ("resnet20_cifar", {}, 32, 10, 32, 512),
    ("resnet20_cifar", {"conv": "multiception"}, 32, 10, 32, 512),
    ("mobilenetv3_small_xsep", {}, 32, 10, 32, 512),
    ("micronet_m0", {}, 224, 1000, 8, 256),
    ("dicenet_100", {}, 224, 1000, 4, 128),
    ("mobilenetv2_mix", {}, 224, 1000, 4, 128),
]


def _view_idiom(x: torch.Tensor, g: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)


def shuffle_rows(ctx: Context) -> list[Row]:
    rows = []
    for label, cpu_batch, gpu_batch, c, size, groups in SHUFFLES:
        batch = ctx.batch(cpu_batch, gpu_batch)
        for fmt, layout in ((torch.contiguous_format, "NCHW"), (torch.channels_last, "channels_last")):
            x = torch.randn(batch, c, size, size, device=ctx.device).contiguous(memory_format=fmt)

            def idiom(t, groups=groups):
                for g in groups:
                    t = _view_idiom(t, g)
                return t

            times = compare(
                {
                    "copy": forward_backward(FunctionModule(lambda t: t.clone()), x),
                    "ours": forward_backward(FunctionModule(lambda t, groups=groups: channel_shuffles(t, groups)), x),
                    "in_turn": forward_backward(
                        FunctionModule(lambda t, groups=groups: [t := channel_shuffle(t, g) for g in groups][-1]), x
                    ),
                    "idiom": forward_backward(FunctionModule(idiom), x),
                },
                ctx,
            )
            ratio = times["ours"] / times["copy"]
            note = f"view/transpose idiom: {times['idiom'] / times['copy']:.2f}x a copy"
            if len(groups) > 1:
                note += f"; the shuffles one after the other: {times['in_turn'] / times['copy']:.2f}x"
            rows.append(
                Row(
                    "operators / channel shuffle",
                    f"{label}, fwd+bwd ({batch}, {c}, {size}, {size}) {layout}",
                    times["ours"] * 1e3,
                    "ms",
                    reference="x.clone() fwd+bwd",
                    ratio=ratio,
                    ratio_meaning="of a plain copy's time",
                    target="<= 1.2x",
                    met=ratio <= 1.2,
                    note=note,
                    cause="the permutation moves channels across the innermost (channel) dimension: strided "
                    "reads that a plain copy does not have"
                    if ratio > 1.2 and fmt is torch.channels_last
                    else ("" if ratio <= 1.2 else "a permutation copy with short contiguous runs"),
                )
            )
    return rows


def channels_last_rows(ctx: Context) -> list[Row]:
    rows = []
    for name, knobs, size, classes, cpu_batch, gpu_batch in FAMILIES:
        batch = ctx.batch(cpu_batch, gpu_batch, quick=max(2, cpu_batch // 4))
        steps = {}
        for fmt, key in ((torch.contiguous_format, "nchw"), (torch.channels_last, "cl")):
            torch.manual_seed(0)
            model = timm.create_model(name, num_classes=classes, **knobs).to(ctx.device, memory_format=fmt)
            avoid_cpu_channels_last_crash(model, ctx.device, fmt is torch.channels_last)
            x = torch.randn(batch, 3, size, size, device=ctx.device).contiguous(memory_format=fmt)
            y = torch.randint(0, classes, (batch,), device=ctx.device)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            steps[key] = train_step(model.train(), x, y, opt)
        times = compare(steps, ctx, warmup=1)
        ratio = times["nchw"] / times["cl"]
        label = name + "".join(f" {k}={v}" for k, v in knobs.items())
        rows.append(
            Row(
                "channels_last vs NCHW (train step)",
                f"{label}, {size} px, batch {batch}",
                batch / times["cl"],
                "img/s channels_last",
                reference="same step in NCHW",
                ratio=ratio,
                ratio_meaning="NCHW time / channels_last time (> 1: channels_last faster)",
                note=f"NCHW {batch / times['nchw']:.1f} img/s",
                extra={k: v * 1e3 for k, v in times.items()},
            )
        )
    return rows


def run(ctx: Context) -> list[Row]:
    return shuffle_rows(ctx) + channels_last_rows(ctx)
