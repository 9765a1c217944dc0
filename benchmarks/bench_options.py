"""Speed options of the training loop, each measured before it is a default (bare train steps, channels_last).

* bf16 autocast (``amp=bf16``) against fp32, on the CPU only where it has native bf16 (AVX512-BF16 / AMX);
* ``torch.compile`` of the bare model (``compile=true``), modes ``default`` and ``max-autotune-no-cudagraphs``,
  with their compile time (the loop compiles once per run);
* the optimizer step: SGD with momentum per-parameter (``foreach=False``, what timm/torch choose on a CPU),
  ``foreach=True`` and ``fused=True``, on MicroNet-M0's ~300 parameter tensors;
* GPU-only options (non-blocking copies, CUDA graphs, cudnn.benchmark, batched augmentation and JPEG decoding
  on the device, the Triton DimConv kernel): rows that say they need a CUDA device when none is present.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import timm
import torch

import effconv  # noqa: F401  (registers the models)
from benchmarks.harness import Context, Row, compare, train_step
from effconv.engine import runtime
from effconv.engine.workarounds import avoid_cpu_channels_last_crash

GROUP = "speed options (train step)"
MODELS = {"resnet20_cifar": (32, 10, 32, 512), "micronet_m0": (224, 1000, 8, 256)}  # size, classes, CPU/GPU batch


def native_bf16(device: torch.device) -> bool:
    if device.type != "cuda":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return runtime.native_bf16(device)


def _setup(name: str, ctx: Context, seed: int = 0):
    size, classes, cpu_batch, gpu_batch = MODELS[name]
    batch = ctx.batch(cpu_batch, gpu_batch, quick=max(2, cpu_batch // 4))
    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=classes).to(ctx.device, memory_format=torch.channels_last).train()
    avoid_cpu_channels_last_crash(model, ctx.device, True)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=gen).to(ctx.device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), generator=gen).to(ctx.device)
    return model, x, y, batch, size


def _autocast_step(model, x, y, opt, device):
    plain = train_step(model, x, y, opt)

    def fn():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            plain()

    return fn


def bf16_rows(ctx: Context) -> list[Row]:
    if not native_bf16(ctx.device):
        return [
            Row(GROUP, "bf16 autocast", None, "", note="this device has no native bf16: not measured, amp stays off")
        ]
    rows = []
    for name in MODELS:
        model, x, y, batch, size = _setup(name, ctx)
        with torch.no_grad():
            model.eval()
            fp32 = model(x)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16):
                bf16 = model(x).float()
            model.train()
        drift = float((bf16 - fp32).abs().max() / fp32.abs().max())
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the weights stay, both time the same step
        times = compare(
            {"fp32": train_step(model, x, y, opt), "bf16": _autocast_step(model, x, y, opt, ctx.device)},
            ctx,
            warmup=1,
        )
        ratio = times["fp32"] / times["bf16"]
        rows.append(
            Row(
                GROUP,
                f"bf16 autocast, {name} {size} px batch {batch}",
                batch / times["bf16"],
                "img/s",
                reference="fp32",
                ratio=ratio,
                ratio_meaning="speed-up (fp32 time / bf16 time)",
                target="> 1.1 to be a CPU default",
                met=ratio > 1.1,
                note=f"fp32 {batch / times['fp32']:.1f} img/s; logits drift {drift:.1e} of their max",
                cause=""
                if ratio > 1.1
                else "depth-wise and grouped convs, BN and the elementwise ops have no faster bf16 kernels on "
                "this CPU; autocast adds casts around every conv",
            )
        )
    return rows


SLOW = os.environ.get("EFFCONV_BENCH_SLOW") == "1"


def compile_rows(ctx: Context) -> list[Row]:
    rows = []
    modes = ("default", "max-autotune-no-cudagraphs")
    for name in MODELS:
        if name == "micronet_m0" and not SLOW:
            rows.append(
                Row(
                    GROUP,
                    f"torch.compile mode=default, {name}",
                    None,
                    "",
                    note="left out of the 15-minute run: its cold compile takes minutes on 2 cores "
                    "(EFFCONV_BENCH_SLOW=1 measures it; result in docs/speed.md)",
                )
            )
            continue
        steps, compile_s = {}, {}
        for mode in ("eager", *modes):
            if name == "micronet_m0" and mode not in ("eager", "default"):
                continue  # its max-autotune compile alone would take most of the benchmark's time budget
            model, x, y, batch, size = _setup(name, ctx)
            opt = torch.optim.SGD(model.parameters(), lr=0.0)
            forward = model if mode == "eager" else torch.compile(model, mode=mode)
            step = train_step(forward, x, y, opt)
            start = time.perf_counter()
            step()
            compile_s[mode] = time.perf_counter() - start
            steps[mode] = step
        times = compare(steps, ctx, warmup=1)
        for mode in steps:
            if mode == "eager":
                continue
            ratio = times["eager"] / times[mode]
            rows.append(
                Row(
                    GROUP,
                    f"torch.compile mode={mode}, {name} {size} px batch {batch}",
                    batch / times[mode],
                    "img/s",
                    reference="eager",
                    ratio=ratio,
                    ratio_meaning="speed-up (eager time / compiled time)",
                    target="> 1.1 and compile time < 10 min of steps saved to be a default",
                    met=None,
                    note=f"eager {batch / times['eager']:.1f} img/s; first step (compile) {compile_s[mode]:.0f} s",
                    extra={"compile_s": compile_s[mode]},
                )
            )
    return rows


def optimizer_rows(ctx: Context) -> list[Row]:
    model, x, y, batch, size = _setup("micronet_m0", ctx)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    variants = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    steps = {}
    for key, kw in variants.items():
        try:
            opt = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=3e-5, **kw)
            opt.step()
        except (RuntimeError, TypeError) as e:  # fused SGD needs a build that has it for this device
            steps[key] = None
            print(f"SGD {key}: {e}")
            continue
        steps[key] = opt.step
    times = compare({k: v for k, v in steps.items() if v is not None}, ctx)
    step_time = compare({"step": train_step(model, x, y, torch.optim.SGD(params, lr=0.0))}, ctx, warmup=1)["step"]
    rows = []
    for key in ("foreach", "fused"):
        if key not in times:
            rows.append(Row(GROUP, f"SGD {key}", None, "", note="not available in this torch build"))
            continue
        ratio = times["for-loop"] / times[key]
        rows.append(
            Row(
                GROUP,
                f"SGD momentum step, {key}, micronet_m0 ({len(params)} tensors)",
                times[key] * 1e3,
                "ms",
                reference="per-parameter loop (torch's CPU default)",
                ratio=ratio,
                ratio_meaning="speed-up of the optimizer step",
                note=f"per-parameter loop {times['for-loop'] * 1e3:.2f} ms = "
                f"{times['for-loop'] / step_time:.1%} of a batch-{batch} train step",
            )
        )
    return rows


GPU_ONLY = [
    ("non-blocking host-to-device copies", "data already lives on the training device (in-memory path)"),
    ("CUDA graphs (torch.compile mode=reduce-overhead) for tiny models", ""),
    ("torch.backends.cudnn.benchmark", "on by default on CUDA unless deterministic=true (engine/runtime.py)"),
    ("batched augmentation on the GPU", "the in-memory presets run on the images' device, so on a GPU too"),
    ("JPEG decoding on the GPU (data.gpu_decode)", ""),
    ("Triton DimConv kernel (one launch for the three branches)", "not written: it could not be tested here"),
]


def gpu_rows(ctx: Context) -> list[Row]:
    if ctx.device.type == "cuda":
        note = "not implemented in this suite yet"
    else:
        note = "needs a CUDA GPU; none on this machine"
    return [Row(GROUP, name, None, "", note=f"{note}. {extra}".strip()) for name, extra in GPU_ONLY]


def run(ctx: Context) -> list[Row]:
    return bf16_rows(ctx) + optimizer_rows(ctx) + compile_rows(ctx) + gpu_rows(ctx)
