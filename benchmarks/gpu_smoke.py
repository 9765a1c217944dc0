"""One GPU smoke run: what the CPU tests cannot check, in one command and one markdown report (issue 17).

    python -m benchmarks.gpu_smoke                      # on a GPU: writes docs/gpu_smoke.md (< 8 min on an H100)
    python -m benchmarks.gpu_smoke --device cpu --quick # the same sections on the CPU, small (< 2 min)

Sections (``--sections`` picks some):

* ``env``: device, versions, compute capability, native bf16 and what ``amp=auto`` resolves to, nvJPEG
  decoding one JPEG against the CPU decoder;
* ``steps``: Trainer updates of resnet20_cifar, micronet_m0, mobilenetv2_mix and dicenet_010 on in-memory
  synthetic data with ``amp=auto`` and ``amp=fp16`` (on the CPU: ``bf16``): img/s, time of the first update,
  and host synchronisations per update in steady state, counted by ``torch.cuda.set_sync_debug_mode("warn")``
  and by benchmarks/host_syncs.py (target <= 1: fp16's GradScaler reads one flag per update);
* ``deterministic``: ``deterministic=true`` twice (resnet20_cifar with the in-memory random-resized-crop,
  mobilenetv2_mix): bitwise equal weights, and the first update's time;
* ``compile``: ``compile=true`` on resnet20_cifar: first-update (compile) time, graph breaks, img/s against
  eager (on the CPU with dynamo's ``aot_eager`` backend: a cold inductor build takes minutes on 2 cores);
* ``gpu_decode``: the streaming ImageNet loader with ``data.gpu_decode`` true and false on generated JPEGs
  (one CMYK, one PNG named .JPEG): img/s of each and how far nvJPEG's pixels are from libjpeg's;
* ``resume``: SIGUSR1 in the middle of an epoch, then the same command again, against an uninterrupted run,
  with dropout and ``deterministic=true``: bitwise equal weights, EMA and summary;
* ``operators``: ``python -m benchmarks --device <device> --quick`` for the operator modules (CPU: MixConv's).

A section that fails is reported with its error and the others still run; the exit status is 1 when a
section failed or a check did not hold. On the CPU the report goes to outputs/gpu_smoke/cpu.md unless
``--out`` says otherwise, so a CPU run never overwrites the GPU report.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before any cuBLAS handle: deterministic section

import torch  # noqa: E402

import effconv  # noqa: E402, F401  (registers the models)
from benchmarks import bench_loop  # noqa: E402  (also registers the bench_synthetic dataset)
from benchmarks.harness import backend_flags, sync  # noqa: E402
from benchmarks.host_syncs import HostSyncs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("env", "steps", "deterministic", "compile", "gpu_decode", "resume", "operators")
# model -> (data group, train preset, GPU size, GPU batch, CPU size, CPU batch); CPU: small, it only must run
STEP_MODELS = {
    "resnet20_cifar": ("cifar10", "pad_crop_flip", 32, 512, 32, 8),
    "micronet_m0": ("imagenet", "random_resized_crop_flip", 224, 256, 64, 4),
    "mobilenetv2_mix": ("imagenet", "random_resized_crop_flip", 224, 256, 64, 4),
    "dicenet_010": ("imagenet", "random_resized_crop_flip", 224, 256, 64, 4),
}
OPERATOR_MODULES = {"cuda": ["ops", "dice", "mixconv", "micronet", "multiception", "xsepconv"], "cpu": ["mixconv"]}


@dataclass
class Smoke:
    device: torch.device
    quick: bool
    work: Path  # scratch directory for run directories and JPEGs
    checks: dict = field(default_factory=dict)  # check -> bool, over all sections

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def check(self, name: str, ok: bool) -> str:
        self.checks[name] = bool(ok)
        return "yes" if ok else "**NO**"


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def timed(fn, device) -> tuple[object, float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


# -------------------------------------------------------------------------------------------------------- env
def section_env(s: Smoke) -> list[str]:
    from torchvision.io import decode_jpeg, encode_jpeg

    from benchmarks.__main__ import device_name
    from effconv.engine.runtime import native_bf16, resolve_amp

    lines = [
        f"- device: {device_name(s.device)}",
        f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
        f"Python {sys.version.split()[0]}",
    ]
    if s.cuda:
        props = torch.cuda.get_device_properties(s.device)
        lines.append(f"- compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB")
        lines.append(f"- native bf16: {native_bf16(s.device)}; `amp=auto` resolves to {resolve_amp('auto', s.device)}")
    else:
        lines.append("- no CUDA device: `amp=auto` is off on the CPU")
    image = torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    image = torch.nn.functional.avg_pool2d(image[None].float(), 5, 1, 2)[0].to(torch.uint8)  # JPEG-like content
    data = encode_jpeg(image, quality=90)
    reference, cpu_s = timed(lambda: decode_jpeg(data), torch.device("cpu"))
    if s.cuda:
        decode_jpeg(data, device=s.device)  # nvJPEG's handle and buffers are created on the first call
        decoded, gpu_s = timed(lambda: decode_jpeg(data, device=s.device), s.device)
        diff = (decoded.cpu().int() - reference.int()).abs()
        ok = decoded.shape == reference.shape and int(diff.max()) <= 16
        lines.append(
            f"- nvJPEG decoded a 500x375 JPEG in {gpu_s * 1e3:.2f} ms (CPU decoder {cpu_s * 1e3:.2f} ms); "
            f"pixels vs libjpeg: max |diff| {int(diff.max())}, mean {float(diff.float().mean()):.3f}; "
            f"close: {s.check('nvJPEG decodes like libjpeg', ok)}"
        )
    else:
        lines.append(f"- nvJPEG: not on a CPU; the CPU decoder decoded a 500x375 JPEG in {cpu_s * 1e3:.2f} ms")
    return lines


# ------------------------------------------------------------------------------------------------ the Trainer
def build_trainer(s: Smoke, model: str, *extra: str, size: int | None = None, batch: int | None = None):
    """A built Trainer of ``model`` on synthetic in-memory data of its dataset's kind (nothing trained yet)."""
    from effconv.config import compose
    from effconv.engine.loop import Trainer

    data, preset, gpu_size, gpu_batch, cpu_size, cpu_batch = STEP_MODELS[model]
    size = size or (gpu_size if s.cuda else cpu_size)
    batch = batch or (gpu_batch if s.cuda else cpu_batch)
    classes = 10 if data == "cifar10" else 1000
    run = bench_loop.synthetic_run(model, data, preset, size, classes, batch, s.device, s.work / "runs")
    cfg = compose([*run, "progress=false", *extra])
    return Trainer(cfg), batch, size


def run_updates(trainer, updates: int, epoch: int) -> None:
    """``updates`` optimizer updates through the loop's own epoch code (a fresh epoch of that length)."""
    trainer.batches_per_epoch = updates * trainer.recipe.accum_steps
    trainer.state.start_epoch(epoch)
    trainer.train_epoch(epoch)


def syncs_per_update(s: Smoke, trainer, updates: int) -> tuple[float | None, float, list[str]]:
    """Host synchronisations per update between the first and the last update of a ``updates``-long epoch
    (the first warms up, the last holds the end-of-epoch reads): CUDA's sync debug warnings (None on a CPU)
    and host_syncs' count; with the counter's first few call sites."""
    counter, marks = HostSyncs(s.device), []
    real_step = trainer._after_update
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def step():
            real_step()
            syncing = [w for w in caught if "synchroniz" in str(w.message)]
            marks.append((len(syncing), len(counter.where)))

        trainer._after_update = step
        if s.cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with counter:
                run_updates(trainer, updates, epoch=2)
        finally:
            if s.cuda:
                torch.cuda.set_sync_debug_mode(0)
            del trainer._after_update
    (cuda0, host0), (cuda1, host1) = marks[0], marks[-2]
    n = len(marks) - 2
    sites = counter.where[host0:host1][:3]
    return ((cuda1 - cuda0) / n if s.cuda else None), (host1 - host0) / n, sites


def section_steps(s: Smoke) -> list[str]:
    amps = ("auto", "fp16") if s.cuda else ("auto", "bf16")
    timed_updates, counted_updates = (20, 6) if s.cuda and not s.quick else ((8, 5) if s.cuda else (2, 4))
    rows, notes = [], []
    for model in STEP_MODELS:
        for amp in amps:
            trainer, batch, size = build_trainer(s, model, f"amp={amp}")
            _, first_s = timed(lambda t=trainer: run_updates(t, 1, epoch=0), s.device)
            _, steady_s = timed(lambda t=trainer: run_updates(t, timed_updates, epoch=1), s.device)
            cuda_syncs, host_syncs, sites = syncs_per_update(s, trainer, counted_updates)
            worst = max(v for v in (cuda_syncs, host_syncs) if v is not None)
            ok = s.check(f"steps {model} amp={amp}: <= 1 sync per update", worst <= 1)
            precision = str(trainer.rt.amp_dtype).replace("torch.", "") if trainer.rt.amp_dtype else "fp32"
            rows.append(
                [
                    model,
                    f"{amp} ({precision})",
                    f"{size} px, {batch}",
                    f"{batch * timed_updates / steady_s:.0f}",
                    f"{first_s:.2f}",
                    "n/a (CPU)" if cuda_syncs is None else f"{cuda_syncs:.2f}",
                    f"{host_syncs:.2f}",
                    ok,
                ]
            )
            if sites:
                notes.append(f"- {model} amp={amp}: {'; '.join(sites)}")
            del trainer
            gc.collect()
            if s.cuda:
                torch.cuda.empty_cache()
    header = ["model", "amp", "size, batch", "img/s", "first update s", "syncs/update (CUDA)", "host reads/update"]
    lines = table([*header, "<= 1"], rows)
    return lines + (["", "Where the host read values in steady state:", *notes] if notes else [])


# --------------------------------------------------------------------------------------------- determinism
def section_deterministic(s: Smoke) -> list[str]:
    updates = 4 if s.quick else 8
    rows = []
    for model, extra in (
        ("resnet20_cifar", ["data.train_transform=random_resized_crop_flip"]),
        ("mobilenetv2_mix", []),
    ):
        weights, firsts = [], []
        for _ in range(2):
            with backend_flags(s.device):  # the run turns determinism on process-wide; off again after
                trainer, batch, size = build_trainer(s, model, "deterministic=true", "seed=3", *extra)
                _, first = timed(lambda t=trainer: run_updates(t, 1, epoch=0), s.device)
                run_updates(trainer, updates - 1, epoch=1)
                weights.append({k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()})
                firsts.append(first)
                del trainer
        equal = all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())
        diff = max(float((v.double() - weights[1][k].double()).abs().max()) for k, v in weights[0].items())
        rows.append(
            [
                model,
                f"{size} px, {batch}",
                updates,
                s.check(f"deterministic {model}: bitwise equal", equal),
                f"{diff:.3g}",
                f"{firsts[0]:.2f} / {firsts[1]:.2f}",
            ]
        )
    return table(["model", "size, batch", "updates", "bitwise equal", "max diff", "first update s (run 1 / 2)"], rows)


# ------------------------------------------------------------------------------------------------- compile
@contextlib.contextmanager
def compile_backend(backend: str | None):
    """torch.compile with ``backend`` for the block (None: inductor, what compile=true uses)."""
    if backend is None:
        yield
        return
    real = torch.compile
    torch.compile = lambda model, **kw: real(model, backend=backend, **{k: v for k, v in kw.items() if k != "mode"})
    try:
        yield
    finally:
        torch.compile = real


def section_compile(s: Smoke) -> list[str]:
    import torch._dynamo

    backend = None if s.cuda else "aot_eager"
    updates = 20 if s.cuda and not s.quick else (8 if s.cuda else 3)
    rates = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        with compile_backend(backend):
            trainer, batch, size = build_trainer(s, "resnet20_cifar", f"compile={str(compiled).lower()}")
        _, first = timed(lambda t=trainer: run_updates(t, 1, epoch=0), s.device)
        _, steady = timed(lambda t=trainer: run_updates(t, updates, epoch=1), s.device)
        rates[compiled] = (batch * updates / steady, first)
        breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
        del trainer
    speedup = rates[True][0] / rates[False][0]
    return [
        f"- backend: {backend or 'inductor (compile=true)'}; resnet20_cifar, {size} px, batch {batch}",
        f"- first update (compile): {rates[True][1]:.1f} s (eager: {rates[False][1]:.2f} s)",
        f"- graph breaks: {breaks}; none: {s.check('compile: no graph breaks', breaks == 0)}",
        f"- {rates[True][0]:.0f} img/s compiled vs {rates[False][0]:.0f} eager: {speedup:.2f}x",
    ]


# ---------------------------------------------------------------------------------------------- gpu_decode
def write_jpegs(root: Path, n: int) -> None:
    """``n`` 500x375 JPEGs in 8 class folders, the second one CMYK and the third a PNG named .JPEG."""
    import numpy as np

    from benchmarks.bench_data import write_jpegs as plain
    from tests.data_formats import class_images, save_image

    plain(root, n)
    files = sorted((root / "train").glob("*/*.JPEG"))
    image = class_images(np.array([0]), 375, 500, 8, np.random.default_rng(1), 16)[0]
    save_image(image, files[1], mode="CMYK")
    save_image(image, files[2], fmt="PNG")


def section_gpu_decode(s: Smoke) -> list[str]:
    from effconv.data import read_split
    from effconv.data.streaming import StreamingLoader
    from tests.data_helpers import data_cfg

    n, batch = (512, 64) if s.cuda and not s.quick else ((256, 64) if s.cuda else (48, 16))
    size = 224 if s.cuda else 96
    workers = min(8, os.cpu_count() or 1) if s.cuda else 0
    write_jpegs(s.work / "jpegs", n)
    results, rows = {}, []
    for gpu_decode in (False, True):
        cfg = data_cfg(
            "imagenet", s.work / "jpegs", num_classes=8, img_size=size, num_workers=workers, gpu_decode=gpu_decode
        )
        loader = StreamingLoader(read_split(cfg, "train"), batch, cfg, True, cfg.mean, cfg.std, s.device, seed=0)
        batches, start = [], None
        for x, y in loader.batches(epoch=0):
            if start is None:  # the first batch waits for the workers to start
                sync(s.device)
                start = time.perf_counter()
            batches.append((x, y))  # kept on the device: a copy to the host here would synchronise every batch
        sync(s.device)
        seconds = time.perf_counter() - start
        loader.close()
        batches = [(x.cpu(), y.cpu()) for x, y in batches]
        images = sum(len(y) for _, y in batches)
        results[gpu_decode] = batches
        rows.append(
            [
                str(gpu_decode).lower() + ("" if loader.gpu_decode == gpu_decode else " (fell back: no CUDA)"),
                images,
                f"{(images - len(batches[0][1])) / seconds:.0f}",
            ]
        )
    pairs = list(zip(results[False], results[True]))
    same_labels = all(torch.equal(a[1], b[1]) for a, b in pairs)
    diff = max(float((a[0] - b[0]).abs().max()) for a, b in pairs)
    mean = sum(float((a[0] - b[0]).abs().mean()) for a, b in pairs) / len(pairs)
    complete = sum(len(y) for _, y in results[True]) == (n // batch) * batch
    decoders = "nvJPEG vs libjpeg" if s.cuda else "libjpeg both times (no CUDA)"
    return [
        f"- {n} generated 500x375 JPEGs (one CMYK, one PNG named .JPEG), batch {batch}, {size} px random-resized "
        f"crops, {workers} workers",
        "",
        *table(["gpu_decode", "images", "img/s after the first batch"], rows),
        "",
        f"- every image arrived, the CMYK and PNG ones included: {s.check('gpu_decode: every image', complete)}",
        f"- same labels in the same order: {s.check('gpu_decode: same order', same_labels)}",
        f"- normalised pixels, {decoders}: max |diff| {diff:.3f}, mean {mean:.4f} "
        f"(close: {s.check('gpu_decode: close to the CPU decoder', mean < 0.05)})",
    ]


# -------------------------------------------------------------------------------------------------- resume
def section_resume(s: Smoke) -> list[str]:
    from effconv.config import compose
    from effconv.engine import checkpoint as ckpt
    from effconv.engine.loop import Interrupted, Trainer, train

    batch = 64 if s.cuda else 32
    common = [
        "model=resnet20_cifar",
        "data=digits",
        "model.drop_rate=0.2",
        "recipe.ema=true",
        "recipe.epochs=1",
        "recipe.warmup_epochs=0",
        f"recipe.batch_size={batch}",
        "limit_train_batches=8",
        "deterministic=true",
        f"device={s.device}",
        f"output_root={s.work / 'resume'}",
        "checkpoint_interval_s=0",
        "progress=false",
    ]
    with backend_flags(s.device):
        straight = train(compose([*common, "run_name=straight"]))
        real_step = Trainer._after_update

        def step(self):  # SIGUSR1 to this process after update 3, as a scheduler would send it
            real_step(self)
            if self.state.global_step == 3:
                os.kill(os.getpid(), signal.SIGUSR1)

        Trainer._after_update = step
        try:
            train(compose([*common, "run_name=resumed"]))
            interrupted = "no"
        except Interrupted as e:
            interrupted = str(e)
        finally:
            Trainer._after_update = real_step
        resumed = train(compose([*common, "run_name=resumed"]))
    a, b = (ckpt.load(s.work / "resume" / name / "checkpoints" / "last.pt") for name in ("straight", "resumed"))
    parts = {
        part: all(torch.equal(v, b[part][k]) for k, v in a[part].items()) for part in ("state_dict", "state_dict_ema")
    }
    summaries = [(s.work / "resume" / n / "summary.csv").read_text() for n in ("straight", "resumed")]
    return [
        f"- resnet20_cifar on digits, dropout 0.2, EMA, deterministic=true, batch {batch}, 8 updates; SIGUSR1 after "
        f"update 3",
        f"- interrupted: {interrupted}",
        f"- weights bitwise equal to the uninterrupted run: {s.check('resume: weights', parts['state_dict'])}",
        f"- EMA bitwise equal: {s.check('resume: EMA', parts['state_dict_ema'])}",
        f"- summary rows equal: {s.check('resume: summary', summaries[0] == summaries[1])}; top-1 "
        f"{straight['top1']:.2f} / {resumed['top1']:.2f}",
    ]


# ----------------------------------------------------------------------------------------------- operators
def section_operators(s: Smoke) -> list[str]:
    modules = OPERATOR_MODULES["cuda" if s.cuda else "cpu"]
    out = s.work / "benchmarks"
    command = [sys.executable, "-m", "benchmarks", "--device", s.device.type, "--quick", "--only", *modules]
    done = subprocess.run(
        [*command, "--out", str(out)], cwd=REPO, capture_output=True, text=True, env={**os.environ}, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
    rows = json.loads(next(out.glob("benchmarks*.json")).read_text())["rows"]
    lines = [f"`python {' '.join(command[1:])}` ({len(rows)} rows; quick: short samples)", ""]
    body = []
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x {r['ratio_meaning']}"
        value = "not measured" if r["value"] is None else f"{r['value']:.4g} {r['unit']}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "no")
        body.append([f"{r['group']}: {r['name']}", value, ratio, r["target"], met])
    s.check("operators: rows produced", len(rows) > 0)
    return lines + table(["row", "value", "ratio", "target", "met"], body)


# ------------------------------------------------------------------------------------------------- report
def render(s: Smoke, results: dict, total_s: float, argv: list[str]) -> str:
    failed = [name for name, ok in s.checks.items() if not ok]
    errors = [name for name, (ok, _) in results.items() if not ok]
    lines = [
        "# GPU smoke run" if s.cuda else "# GPU smoke run, CPU counterpart (not a GPU result)",
        "",
        f"`python -m benchmarks.gpu_smoke {' '.join(argv)}` on {s.device}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{total_s:.0f} s" + (" (quick)" if s.quick else "") + ".",
        "",
        f"Checks: {len(s.checks) - len(failed)} of {len(s.checks)} hold"
        + (f"; not holding: {', '.join(failed)}" if failed else "")
        + (f". Sections that failed: {', '.join(errors)}" if errors else "")
        + ".",
        "",
    ]
    titles = {
        "env": "Environment",
        "steps": "Trainer updates: throughput and host synchronisations",
        "deterministic": "deterministic=true twice",
        "compile": "compile=true (resnet20_cifar)",
        "gpu_decode": "data.gpu_decode true vs false",
        "resume": "SIGUSR1 mid-epoch, resumed vs uninterrupted",
        "operators": "Operator rows",
    }
    for name, (ok, body) in results.items():
        lines += [f"## {titles[name]}", "", *(body if ok else ["**failed**:", "", "```", body.rstrip(), "```"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_smoke", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer updates and images (the CPU run)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {','.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, help="the report (default: docs/gpu_smoke.md on a GPU, else outputs/)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    sections = [n.strip() for n in args.sections.split(",") if n.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    out = args.out or (REPO / "docs" / "gpu_smoke.md" if device.type == "cuda" else REPO / "outputs/gpu_smoke/cpu.md")
    begin, results = time.perf_counter(), {}
    with tempfile.TemporaryDirectory(prefix="effconv-smoke-") as work:
        smoke = Smoke(device, args.quick, Path(work))
        for name in sections:
            start = time.perf_counter()
            try:
                with backend_flags(device):
                    results[name] = (True, globals()[f"section_{name}"](smoke))
            except Exception:
                results[name] = (False, traceback.format_exc(limit=-4))
            print(
                f"{name}: {'ok' if results[name][0] else 'FAILED'} in {time.perf_counter() - start:.0f} s", flush=True
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(smoke, results, time.perf_counter() - begin, argv))
    print(f"wrote {out}", flush=True)
    return 0 if all(ok for ok, _ in results.values()) and all(smoke.checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
