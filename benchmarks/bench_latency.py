"""Inference latency by the MicroNet paper's protocol, per runtime; its Fig. 5 (right); the deployment targets.

Protocol (MicroNet Sec. 6.1.3): batch 1, one thread, 224x224, the mean over at least 1,000 images after a
warm-up (the paper: 5,000 images on a Xeon E5-2620 v4). Reported per model and runtime: mean, p50, p90 (ms).
Every candidate (model x runtime) is timed in the same process, round-robin in chunks of images, so the
machine's drift hits all alike and ratios are taken within one run.

Runtimes (all at one intra-op thread):

* ``eager``: the model as trained, eval mode, ``torch.inference_mode``, NCHW float32;
* ``eager+path``: the inference path (``effconv.deploy.inference_path``, runtime ``eager``);
* ``compile``: ``torch.compile`` of the inference path (runtime ``inductor``), inductor's weight freezing on;
* ``onnxruntime``: the inference path exported by export.py's ONNX route, ONNX Runtime with all graph
  optimisations, one intra-op thread;
* ``aoti``: the inference path as an AOTInductor package (``torch._inductor.aoti_compile_and_package``).

Targets: in the fastest runtime of each network, MicroNet-M2 <= MobileNetV3-Small 0.5 (timm) and MicroNet-M1 <=
MobileNetV3-Small 0.35 (the paper's claim at about equal accuracy); Dynamic Shift-Max at inference <= 1.5x a
3x3 depth-wise conv of the same shape. A missed target's row carries the per-operator profile that explains it.

``--quick`` times two networks in the three runtimes that need no C++ compilation, over 50 images: a smoke run.
Compiled artefacts are kept for the run in a temporary directory, or in ``$EFFCONV_LATENCY_CACHE`` across runs
(development only: its keys are the model, runtime, torch version and the inference path's source).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch import nn

import effconv  # noqa: F401  (registers the models)
from benchmarks.harness import Context, Row
from effconv.deploy import inference_path
from effconv.deploy.artefacts import export_program, load_runner, write_artefact
from effconv.threads import torch_threads

GROUP = "latency: MicroNet protocol (batch 1, one thread, 224 px)"
SIZE = 224
RUNTIMES = ("eager", "eager+path", "compile", "onnxruntime", "aoti")
QUICK_RUNTIMES = ("eager", "eager+path", "onnxruntime")
# name -> (label, paper top-1 % or None, its source); MobileNetV3-Small 0.35 is timm's generator at 0.35
# (effconv/models/mobilenetv3_baselines.py: timm registers no 0.35)
MODELS = {
    "micronet_m0": ("MicroNet-M0", 46.6, "MicroNet Table 7"),
    "micronet_m1s": ("MicroNet-M1#", 49.4, "MicroNet Table 7"),
    "micronet_m1": ("MicroNet-M1", 51.4, "MicroNet Table 7"),
    "micronet_m2s": ("MicroNet-M2#", 58.2, "MicroNet Table 7"),
    "micronet_m2": ("MicroNet-M2", 59.4, "MicroNet Table 7"),
    "micronet_m3s": ("MicroNet-M3#", 61.3, "MicroNet Table 7"),
    "micronet_m3": ("MicroNet-M3", 62.5, "MicroNet Table 7"),
    "mnv3_small_035": ("MobileNetV3-Small 0.35", 49.8, "MicroNet Table 7"),
    "mobilenetv3_small_050": ("MobileNetV3-Small 0.5 (timm)", 58.0, "MicroNet Table 7"),
    "mobilenetv3_small_075": ("MobileNetV3-Small 0.75 (timm)", 65.4, "MicroNet Sec. 1 / Fig. 5"),
    "mobilenetv3_small_100": ("MobileNetV3-Small 1.0 (timm)", 67.4, "MobileNetV3 paper, Table 3"),
    "dicenet_050": ("DiCENet s=0.5", 54.0, "EdgeNets model zoo"),
    "dicenet_100": ("DiCENet s=1.0", 66.5, "EdgeNets model zoo"),
    "dicenet_200": ("DiCENet s=2.0", 71.0, "EdgeNets model zoo"),
    "shufflenet_v2": ("ShuffleNetV2 1.0 (ours)", None, ""),
    "mobilenetv2_100": ("MobileNetV2 1.0 (timm)", None, ""),
    "mixnet_s": ("MixNet-S (timm)", None, ""),
}
QUICK_MODELS = ("micronet_m1", "mnv3_small_035")
TARGETS = (("micronet_m2", "mobilenetv3_small_050"), ("micronet_m1", "mnv3_small_035"))
PAPER_ANCHORS = {"MicroNet": (7.0, 55.0), "MobileNetV3-Small": (9.5, 55.0)}  # Sec. 6.1.3's two read-offs


def run(ctx: Context) -> list[Row]:
    from benchmarks.__main__ import device_name

    if ctx.device.type != "cpu":
        return [Row(GROUP, "not run", None, "", note="the MicroNet protocol is a one-thread CPU measurement")]
    models = QUICK_MODELS if ctx.quick else tuple(MODELS)
    runtimes = QUICK_RUNTIMES if ctx.quick else RUNTIMES
    images, rounds = (50, 2) if ctx.quick else (1000, 10)
    begin = time.perf_counter()
    with torch_threads(1), _artefact_dir() as cache:
        candidates, build_s, differences = {}, {}, {}
        for name in models:
            for runtime, (fn, seconds, difference) in build_runtimes(name, runtimes, cache).items():
                candidates[(name, runtime)] = fn
                build_s[(name, runtime)] = seconds
                differences[(name, runtime)] = difference
        samples = time_round_robin(candidates, images, rounds)
        profiles = profile_targets(candidates, samples, cache) if not ctx.quick else {}
        shift_max = shift_max_rows(ctx, cache, runtimes)
        mixconv = [] if ctx.quick else mixconv_rows(cache)
        device = device_name(ctx.device)  # inside the one-thread block: it names the thread count
    stats = {key: summarise(values) for key, values in samples.items()}
    rows = latency_rows(stats, models, runtimes) + target_rows(stats, runtimes, profiles) + shift_max + mixconv
    rows.append(equivalence_row(differences))
    figure = plot_fig5(stats, runtimes, ctx.out)
    write_doc(ctx, device, stats, build_s, rows, models, runtimes, images, figure, time.perf_counter() - begin)
    return rows


@contextlib.contextmanager
def _artefact_dir():
    kept = os.environ.get("EFFCONV_LATENCY_CACHE")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        yield Path(kept)
        return
    with tempfile.TemporaryDirectory(prefix="effconv-latency-") as tmp:
        yield Path(tmp)


@functools.cache
def _source_key() -> str:
    """Artefacts depend on the inference path's code and torch: a kept artefact is reused only if both match."""
    digest = hashlib.sha1(torch.__version__.encode())
    for path in sorted((Path(__file__).resolve().parents[1] / "effconv").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build_runtimes(name: str, runtimes, cache: Path) -> dict[str, tuple[Callable, float, float]]:
    """runtime -> (a function of one image, seconds it took to build, its relative difference from eager)."""
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    checks = [torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(100 + i)) for i in range(2)]
    with torch.inference_mode():
        expected = [model(c) for c in checks]
    built = {}
    for runtime in runtimes:
        start = time.perf_counter()
        fn = _build(model, runtime, name, cache, x)
        seconds = time.perf_counter() - start
        difference = max(((fn(c) - e).abs().max() / e.abs().max()).item() for c, e in zip(checks, expected))
        built[runtime] = (fn, seconds, difference)
    return built


def _build(model: nn.Module, runtime: str, name: str, cache: Path, x: torch.Tensor) -> Callable:
    if runtime == "eager":
        return _no_grad(model)
    if runtime == "eager+path":
        return _no_grad(inference_path(model, (3, SIZE, SIZE), "eager"))
    if runtime == "compile":
        import torch._inductor.config as inductor_config

        deployed = inference_path(model, (3, SIZE, SIZE), "inductor")
        with inductor_config.patch(freezing=True):
            compiled = compile_alone(deployed, name)
            with torch.no_grad():
                compiled(x)  # compiles now, with freezing in force
        return _no_grad(compiled)
    fmt = "onnx" if runtime == "onnxruntime" else "aoti"
    path = cache / f"{name}-{_source_key()}{'.onnx' if fmt == 'onnx' else '_aoti.pt2'}"
    if not path.is_file():
        deployed = inference_path(model, (3, SIZE, SIZE), "onnx" if fmt == "onnx" else "inductor")
        with contextlib.redirect_stdout(io.StringIO()):
            write_artefact(export_program(deployed, x, False, False), fmt, path)
    return _no_grad(load_runner(path, fmt, threads=1))


def compile_alone(module: nn.Module, tag: str) -> Callable:
    """``torch.compile`` of ``module`` through an entry function with a code object of its own.

    Dynamo caches compiled graphs per code object, behind guards. Every effconv network shares one ``forward``
    (ClassifierNet's), so compiling 17 of them directly would pile up guarded entries on it: each call would
    test the guards of the others first, and past torch's recompile limit (8) later networks silently run
    eager. A fresh code object per network keeps one entry each."""

    def entry(x):
        return module(x)

    entry.__code__ = entry.__code__.replace(co_name=f"latency_{tag.replace('-', '_')}")
    return torch.compile(entry, dynamic=False)


def _no_grad(fn: Callable) -> Callable:
    def call(x):
        with torch.inference_mode():
            return fn(x)

    return call


def time_round_robin(candidates: dict, images: int, rounds: int) -> dict:
    """Seconds per image of every candidate: ``rounds`` passes over all candidates, images / rounds each."""
    pool = [torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    for fn in candidates.values():  # warm-up
        for x in pool:
            fn(x)
    samples = {key: [] for key in candidates}
    per_round = -(-images // rounds)
    for _ in range(rounds):
        for key, fn in candidates.items():
            for i in range(per_round):
                x = pool[i % len(pool)]
                start = time.perf_counter()
                fn(x)
                samples[key].append(time.perf_counter() - start)
    return samples


def summarise(values: list[float]) -> dict:
    ms = sorted(v * 1e3 for v in values)
    return {
        "mean": statistics.fmean(ms),
        "p50": statistics.median(ms),
        "p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
        "images": len(ms),
    }


def fastest(stats: dict, name: str, runtimes) -> tuple[str, float]:
    runtime = min((r for r in runtimes if (name, r) in stats), key=lambda r: stats[(name, r)]["mean"])
    return runtime, stats[(name, runtime)]["mean"]


def latency_rows(stats: dict, models, runtimes) -> list[Row]:
    rows = []
    for name in models:
        label, top1, source = MODELS[name]
        best, best_ms = fastest(stats, name, runtimes)
        eager = stats[(name, "eager")]["mean"]
        per_runtime = ", ".join(
            f"{r} {stats[(name, r)]['mean']:.2f} (p50 {stats[(name, r)]['p50']:.2f}, p90 {stats[(name, r)]['p90']:.2f})"
            for r in runtimes
        )
        rows.append(
            Row(
                GROUP,
                f"{label}: fastest runtime ({best})",
                best_ms,
                "ms",
                reference="eager PyTorch",
                ratio=eager / best_ms,
                ratio_meaning="speed-up over eager",
                note=f"mean ms per image: {per_runtime}" + (f"; paper top-1 {top1}% ({source})" if top1 else ""),
            )
        )
    return rows


def target_rows(stats: dict, runtimes, profiles: dict) -> list[Row]:
    rows = []
    for ours, theirs in TARGETS:
        if (ours, "eager") not in stats or (theirs, "eager") not in stats:
            continue
        ours_runtime, ours_ms = fastest(stats, ours, runtimes)
        theirs_runtime, theirs_ms = fastest(stats, theirs, runtimes)
        ratio = ours_ms / theirs_ms
        per_runtime = ", ".join(f"{r} {stats[(ours, r)]['mean'] / stats[(theirs, r)]['mean']:.2f}x" for r in runtimes)
        rows.append(
            Row(
                GROUP,
                f"{MODELS[ours][0]} vs {MODELS[theirs][0]}, each in its fastest runtime",
                ours_ms,
                "ms",
                reference=f"{MODELS[theirs][0]} ({theirs_runtime}, {theirs_ms:.2f} ms)",
                ratio=ratio,
                ratio_meaning=f"of the reference's latency (ours in {ours_runtime})",
                target="<= 1.0 (paper Fig. 5: faster at about equal top-1)",
                met=ratio <= 1.0,
                note=f"same-runtime ratios: {per_runtime}",
                cause="" if ratio <= 1.0 else profiles.get(ours, "not profiled"),
            )
        )
    return rows


def equivalence_row(differences: dict) -> Row:
    """Every artefact timed here against the model as trained, on two random images: the latency is of the
    same function."""
    worst = max((k for k in differences if k[1] != "eager"), key=differences.get)
    value = differences[worst]
    return Row(
        GROUP,
        "every runtime's artefact vs eager PyTorch: largest relative logit difference",
        value,
        "",
        reference="the model as trained, eager",
        target="<= 1e-5",
        met=value <= 1e-5,
        note=f"largest: {MODELS[worst[0]][0]} in {worst[1]}; largest difference over the largest eager logit, "
        "two images",
    )


def profile_targets(candidates: dict, samples: dict, cache: Path) -> dict[str, str]:
    """Per-operator time of each target pair in the runtime MicroNet is fastest in: the measured cause."""
    causes = {}
    for ours, theirs in TARGETS:
        keys = [k for k in candidates if k[0] == ours]
        runtime = min(keys, key=lambda k: statistics.fmean(samples[k]))[1]
        if runtime != "onnxruntime":
            causes[ours] = f"fastest in {runtime}: no per-operator profile for this runtime"
            continue
        mine, reference = (_ort_profile(cache / f"{n}-{_source_key()}.onnx") for n in (ours, theirs))
        causes[ours] = _describe_profiles(MODELS[ours][0], mine, MODELS[theirs][0], reference)
    return causes


COMPUTE_OPS = ("Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul")


def _ort_profile(path: Path, runs: int = 200) -> dict[str, tuple[float, int]]:
    """op type -> (ms per image, nodes) from onnxruntime's own profiler, one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = torch.randn(1, 3, SIZE, SIZE).numpy()
    for _ in range(runs):
        session.run(None, {name: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    totals, nodes = {}, {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1e3 / runs
            nodes.setdefault(op, set()).add(event["name"])
    return {op: (totals[op], len(nodes[op])) for op in totals}


def _describe_profiles(ours: str, mine: dict, theirs: str, reference: dict) -> str:
    def split(profile):
        compute = sum(t for op, (t, _) in profile.items() if op in COMPUTE_OPS)
        rest = sum(t for op, (t, _) in profile.items() if op not in COMPUTE_OPS)
        count = sum(n for _, n in profile.values())
        return compute, rest, count

    mc, mr, mn = split(mine)
    tc, tr, tn = split(reference)
    top = sorted(((t, op, n) for op, (t, n) in mine.items() if op not in COMPUTE_OPS), reverse=True)[:5]
    listed = ", ".join(f"{op} {t:.2f} ms ({n} nodes)" for t, op, n in top)
    return (
        f"onnxruntime profile per image (profiler on, so times are inflated alike): {ours} spends {mc:.2f} ms in "
        f"convolutions and GEMMs and {mr:.2f} ms in {mn} nodes overall, {theirs} {tc:.2f} ms and {tr:.2f} ms in "
        f"{tn} nodes. {ours}'s non-convolution time, largest first: {listed} (Dynamic Shift-Max's pooling, "
        "hyper-function, shift gathers, fusions and max; shuffles that cannot be folded; residual adds)"
    )


# Dynamic Shift-Max vs one 3x3 depth-wise conv on the same input: MicroNet-M2's K=2 layers at three resolutions
SHIFT_MAX_SHAPES = ((144, 28, 8), (384, 14, 8), (576, 7, 12))  # (channels, size, shift groups)


class _DepthwiseConv(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)

    def forward(self, x):
        return self.conv(x)


def shift_max_rows(ctx: Context, cache: Path, runtimes) -> list[Row]:
    from effconv.deploy.shift_max import ShiftMaxInference
    from effconv.ops.dynamic_shift_max import DynamicShiftMax

    shapes = SHIFT_MAX_SHAPES[:1] if ctx.quick else SHIFT_MAX_SHAPES
    op_runtimes = [r for r in ("eager+path", "compile", "onnxruntime") if r in runtimes]
    rows = []
    for channels, size, groups in shapes:
        torch.manual_seed(0)
        ops = {"shift-max": ShiftMaxInference(DynamicShiftMax(channels, groups)).eval(), "dw": _DepthwiseConv(channels)}
        x = torch.randn(1, channels, size, size)
        candidates = {}
        for op_name, module in ops.items():
            for runtime in op_runtimes:
                candidates[(op_name, runtime)] = _build_op(module, runtime, f"{op_name}-{channels}x{size}", cache, x)
        samples = time_round_robin_op(candidates, x, 400 if not ctx.quick else 40, 4 if not ctx.quick else 2)
        ratios = {
            r: statistics.fmean(samples[("shift-max", r)]) / statistics.fmean(samples[("dw", r)]) for r in op_runtimes
        }
        best = min(op_runtimes, key=lambda r: statistics.fmean(samples[("shift-max", r)]))
        ratio = ratios[best]
        rows.append(
            Row(
                GROUP,
                f"Dynamic Shift-Max (K=2, J=2), (1, {channels}, {size}, {size}), fastest runtime ({best})",
                statistics.fmean(samples[("shift-max", best)]) * 1e3,
                "ms",
                reference="3x3 depth-wise conv, same input, same runtime",
                ratio=ratio,
                ratio_meaning="of the depth-wise conv's time",
                target="<= 1.5x",
                met=ratio <= 1.5,
                note="per runtime: " + ", ".join(f"{r} {v:.2f}x" for r, v in ratios.items()),
                cause=""
                if ratio <= 1.5
                else "the activation's pooling pass, two tiny GEMMs for the coefficients and K x J multiply-adds, "
                "a gather and a max over the tensor, against one pass of 9 multiply-adds per element",
            )
        )
    return rows


def _build_op(module: nn.Module, runtime: str, tag: str, cache: Path, x: torch.Tensor) -> Callable:
    if runtime == "eager+path":
        return _no_grad(module)
    if runtime == "compile":
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            compiled = compile_alone(module, tag)
            with torch.no_grad():
                compiled(x)
        return _no_grad(compiled)
    path = cache / f"{tag}-{_source_key()}.onnx"
    if not path.is_file():
        with contextlib.redirect_stdout(io.StringIO()):
            write_artefact(export_program(module, x, False, False), "onnx", path)
    return _no_grad(load_runner(path, "onnx", threads=1))


def time_round_robin_op(candidates: dict, x: torch.Tensor, calls: int, rounds: int) -> dict:
    for fn in candidates.values():
        for _ in range(5):
            fn(x)
    samples = {key: [] for key in candidates}
    for _ in range(rounds):
        for key, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(calls // rounds):
                fn(x)
            samples[key].append((time.perf_counter() - start) / (calls // rounds))
    return samples


def mixconv_rows(cache: Path) -> list[Row]:
    """MixNet-S in ONNX Runtime with MixConv split (timm's form) and padded (one conv): the exported form's basis
    (effconv/deploy/mixconv.py RUNTIME_FORMS)."""
    from effconv.deploy import mixconv

    torch.manual_seed(0)
    model = timm.create_model("mixnet_s").eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    candidates = {}
    for form in ("padded", "split"):
        path = cache / f"mixnet_s-{form}-{_source_key()}.onnx"
        if not path.is_file():
            saved = mixconv.RUNTIME_FORMS["onnx"]
            mixconv.RUNTIME_FORMS["onnx"] = form
            try:
                deployed = inference_path(model, (3, SIZE, SIZE), "onnx")
            finally:
                mixconv.RUNTIME_FORMS["onnx"] = saved
            with contextlib.redirect_stdout(io.StringIO()):
                write_artefact(export_program(deployed, x, False, False), "onnx", path)
        candidates[form] = _no_grad(load_runner(path, "onnx", threads=1))
    samples = time_round_robin(candidates, 300, 6)
    padded, split = (statistics.fmean(samples[f]) * 1e3 for f in ("padded", "split"))
    chosen = mixconv.RUNTIME_FORMS["onnx"]
    return [
        Row(
            GROUP,
            "MixConv form in ONNX Runtime: MixNet-S with the padded form",
            padded,
            "ms",
            reference=f"split form ({split:.2f} ms)",
            ratio=padded / split,
            ratio_meaning="of the split form's latency",
            note=f"the exported form is '{chosen}'"
            + ("" if (padded <= split) == (chosen == "padded") else "; this run measured the other form faster"),
        )
    ]


def plot_fig5(stats: dict, runtimes, out: Path) -> str | None:
    """Paper top-1 against our latency per runtime, MicroNet and MobileNetV3-Small, with the paper's read-offs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    families = {
        "MicroNet": ["micronet_m0", "micronet_m1", "micronet_m2", "micronet_m3"],
        "MobileNetV3-Small": [
            "mnv3_small_035",
            "mobilenetv3_small_050",
            "mobilenetv3_small_075",
            "mobilenetv3_small_100",
        ],
    }
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = dict(zip(RUNTIMES, ("tab:gray", "tab:blue", "tab:green", "tab:red", "tab:purple")))
    for runtime in runtimes:
        for family, names in families.items():
            names = [n for n in names if (n, runtime) in stats]
            if not names:
                continue
            ms = [stats[(n, runtime)]["mean"] for n in names]
            ax.plot(
                ms,
                [MODELS[n][1] for n in names],
                marker="o" if family == "MicroNet" else "s",
                linestyle="-" if family == "MicroNet" else "--",
                color=colours[runtime],
                label=f"{family}, {runtime}",
            )
    (micro_ms, top1), (mobile_ms, _) = PAPER_ANCHORS["MicroNet"], PAPER_ANCHORS["MobileNetV3-Small"]
    ax.plot([micro_ms, mobile_ms], [top1, top1], color="black", linewidth=1, linestyle=":", zorder=4)
    ax.scatter([micro_ms], [top1], marker="*", s=120, color="black", zorder=5)
    ax.scatter([mobile_ms], [top1], marker="X", s=80, color="black", zorder=5)
    ax.annotate(
        f"paper (Xeon E5-2620 v4), {top1:g}% top-1:\n"
        f"MicroNet < {micro_ms:g} ms (*), MobileNetV3-Small ~{mobile_ms:g} ms (x)",
        (micro_ms, top1),
        fontsize=7,
        xytext=(-10, 12),
        textcoords="offset points",
        ha="center",
    )
    ax.set_xscale("log")
    ax.set_xlabel("latency per image, batch 1, one thread, 224 px (ms, log scale)")
    ax.set_ylabel("ImageNet top-1 (%), the papers' numbers")
    ax.set_title("MicroNet Fig. 5 (right) on this machine, per runtime")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    path = out / "latency_micronet_fig5.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write_doc(ctx, device, stats, build_s, rows, models, runtimes, images, figure, total_s) -> None:
    lines = [
        "# Inference latency: the MicroNet protocol per runtime",
        "",
        f"Generated by `python -m benchmarks --only latency` on **{device}**, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d')}, in {total_s:.0f} s"
        + (" (**quick smoke run**: 50 images, two networks; not for conclusions)" if ctx.quick else "")
        + ".",
        "",
        f"Batch 1, one thread, {SIZE}x{SIZE}, mean over {images} images per cell after a warm-up (MicroNet Sec. "
        "6.1.3: 5,000 images on a Xeon E5-2620 v4), all cells timed round-robin in one process "
        "(benchmarks/bench_latency.py). Absolute times follow the machine and its load; compare within this "
        "table. Top-1 is the papers' (ImageNet), not ours. The GPU part of the latency issue was not run: no GPU "
        "was available.",
        "",
        "## Mean ms per image (p50 / p90)",
        "",
        "| network | paper top-1 | " + " | ".join(runtimes) + " |",
        "|---|---|" + "---|" * len(runtimes),
    ]
    for name in models:
        label, top1, _ = MODELS[name]
        best, _ = fastest(stats, name, runtimes)
        cells = []
        for r in runtimes:
            s = stats[(name, r)]
            cell = f"{s['mean']:.2f} ({s['p50']:.2f} / {s['p90']:.2f})"
            cells.append(f"**{cell}**" if r == best else cell)
        lines.append(f"| {label} | {top1 if top1 else ''} | " + " | ".join(cells) + " |")
    lines += ["", "Bold: the fastest runtime of the row.", "", "## Targets", ""]
    lines += ["| measurement | value | reference | ratio | target | met | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.target:
            met = "yes" if r.met else "**no**"
            note = r.note + (f"; **cause:** {r.cause}" if r.cause else "")
            value = f"{r.value:.3f} ms" if r.unit == "ms" else f"{r.value:.1e}"
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}x {r.ratio_meaning}"
            lines.append(f"| {r.name} | {value} | {r.reference} | {ratio} | {r.target} | {met} | {note} |")
    others = [r for r in rows if not r.target and r.reference and "fastest runtime (" not in r.name]
    if others:
        lines += [
            "",
            "## Other measurements",
            "",
            "| measurement | value | reference | ratio | note |",
            "|---|---|---|---|---|",
        ]
        for r in others:
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}x {r.ratio_meaning}"
            lines.append(f"| {r.name} | {r.value:.3f} {r.unit} | {r.reference} | {ratio} | {r.note} |")
    slow = sorted(build_s.items(), key=lambda kv: -kv[1])[:5]
    lines += [
        "",
        "## Build times",
        "",
        "Seconds to build each runtime's artefact (export, compile), longest first: "
        + ", ".join(f"{n} {r} {s:.0f} s" for (n, r), s in slow)
        + ".",
        "",
    ]
    if figure:
        lines += [f"![MicroNet Fig. 5 right, per runtime]({figure})", ""]
    (ctx.out / "latency.md").write_text("\n".join(lines))
