"""export.py's command: a run's (or a file's, or a fresh model's) network as a deployable artefact, checked.

The network is built in eval mode, rewritten by the inference path (``effconv.deploy``) for the artefact's
runtime, exported (``effconv.deploy.artefacts``), loaded back in its runtime and compared with the eager
model as trained (not rewritten) on evaluation images of the run's dataset, or on random inputs when there
is no run. ``export.json`` beside the artefact gets one entry per artefact file: format, opset, input shape,
file size, the differences (max |artefact - eager| over all logits, that over max |eager|, top-1 agreement)
and the latency here at batch 1 and 32 (mean ms per batch).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from effconv.config import model_knobs
from effconv.errors import UserError

MIN_LATENCY_S = 0.5  # each latency figure: mean over at least this long (and at least 10 calls)


def export_saved(cfg) -> dict:
    from effconv.deploy import inference_path
    from effconv.deploy.artefacts import (
        RUNTIME_OF_FORMAT,
        check_dynamic_size,
        check_format,
        load_runner,
        write_artefact,
    )

    check_format(cfg.format)
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):  # their INFO lines are progress, not results
        logging.getLogger(noisy).setLevel(logging.WARNING)
    batch = _fixed_batch(cfg.batch)
    if cfg.weights not in ("raw", "ema"):
        raise UserError(f"weights must be raw or ema (got {cfg.weights})")
    source = _load(cfg)
    size = cfg.img_size or source.size() or 224
    if cfg.dynamic_hw:
        check_dynamic_size(source.model, source.name)
    threads = cfg.threads or torch.get_num_threads()
    runtime = RUNTIME_OF_FORMAT[cfg.format]
    deployed = inference_path(source.model, (3, size, size), runtime) if cfg.inference_path else source.model
    example = torch.randn(batch or 2, 3, size, size)  # a dynamic dimension needs an example of size >= 2
    path = Path(cfg.out) if cfg.out else source.out_dir / _artefact_name(source, cfg, batch, size)
    suffix = ".onnx" if cfg.format == "onnx" else ".pt2"
    if path.suffix != suffix:
        raise UserError(f"out={path}: a {cfg.format} artefact's file name must end in {suffix}")
    start = time.perf_counter()
    program = _export(deployed, example, batch, cfg.dynamic_hw, source.name)
    info = write_artefact(program, cfg.format, path, cfg.optimize)
    export_s = time.perf_counter() - start
    runner = load_runner(path, cfg.format, threads)
    images, described = _verification_images(cfg, source, size, batch)
    with torch.no_grad(), _threads(threads):
        differences = compare(source.model, runner, images)
        latency = {str(b): _latency_ms(runner, b, size) for b in cfg.latency_batches if batch in (None, b)}
    record = {
        "model": source.name,
        "source": source.described,
        "weights": cfg.weights if source.trained else "random",
        "format": cfg.format,
        "path": str(path),
        **info,
        "inference_path": getattr(deployed, "deploy_rewrites", None) if cfg.inference_path else None,
        "img_size": size,
        "dynamic_batch": batch is None,
        "dynamic_hw": cfg.dynamic_hw,
        "verified_on": described,
        **differences,
        "latency_ms": latency,
        "threads": threads,
        "export_s": round(export_s, 1),
        "torch": torch.__version__,
    }
    manifest = _write_manifest(path, record)
    summary = {k: record[k] for k in ("format", "max_rel_diff", "top1_agreement", "latency_ms", "file_bytes")}
    print(json.dumps(summary), flush=True)
    print(f"wrote {path} and {manifest}", flush=True)
    return record


def _export(model: nn.Module, example: torch.Tensor, batch: int | None, dynamic_hw: bool, name: str):
    from effconv.deploy.artefacts import export_program

    if not dynamic_hw:
        return export_program(model, example, batch is None, False)
    try:
        return export_program(model, example, batch is None, True)
    except Exception as e:  # torch.export's reason is many lines: its first says which dimension and why
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{name} cannot keep height/width dynamic ({reason}); export with dynamic_hw=false") from None


def _fixed_batch(batch) -> int | None:
    if str(batch) == "dynamic":
        return None
    try:
        value = int(batch)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"batch must be dynamic or a positive integer (got {batch})")
    return value


@dataclass
class Source:
    """What is exported: the eval-mode float32 model, its name, the run's data config (None: no dataset)."""

    model: nn.Module
    name: str
    data: object | None
    seed: int
    described: str
    out_dir: Path
    trained: bool = True

    def size(self) -> int | None:
        return (self.data.get("eval_size") or self.data.img_size) if self.data is not None else None


def _load(cfg) -> Source:
    """The network to export with its weights: a run's or a file's checkpoint (any layout evaluate.py reads,
    the authors' included), the network named by ``model=`` where given, or ``model=`` alone at random."""
    from effconv import models
    from effconv.evaluate_saved import checkpoint_path, load_for_evaluation
    from effconv.models import formats

    if not (cfg.run or cfg.checkpoint):
        if cfg.model is None:
            raise UserError("give run=<run dir>, checkpoint=<file> or model=<name> (random weights)")
        if cfg.weights == "ema":
            raise UserError(
                "weights=ema needs run=<run dir> or checkpoint=<file>; model=<name> alone has random weights"
            )
        model = models.create(model_knobs(cfg.model), cfg.num_classes)
        print(f"model={cfg.model.name} alone: random weights, verified on random inputs", flush=True)
        return Source(model.eval().float(), str(cfg.model.name), None, 0, "random weights", Path("export"), False)
    path = checkpoint_path(cfg)
    saved = formats.read(path)
    run_cfg = OmegaConf.create(saved.config or {})
    data = run_cfg.get("data")  # None: a file without train.py's config, verified on random inputs
    if data is not None and cfg.data_root is not None:
        data.root = cfg.data_root
    model_cfg = cfg.model if cfg.model is not None else run_cfg.get("model")
    if model_cfg is None:
        raise UserError(
            f"checkpoint {path} holds no config (it was not written by train.py): name the network, "
            "model=<name> [model.<knob>=<value> ...]"
        )
    name = str(model_cfg.name)
    model = models.create(model_knobs(model_cfg), data.num_classes if data is not None else cfg.num_classes)
    weights = saved.ema if cfg.weights == "ema" else saved.raw
    if weights is None:
        raise UserError(f"{path} holds no EMA weights (the run trained without recipe.ema=true); use weights=raw")
    load_for_evaluation(model, weights, path)
    out_dir = (Path(cfg.run) if cfg.run else path.parent) / "export"
    return Source(model.eval().float(), name, data, run_cfg.get("seed", 0), str(path), out_dir)


def _artefact_name(source: Source, cfg, batch: int | None, size: int) -> str:
    from effconv.deploy.artefacts import SUFFIXES

    parts = [source.name]
    if cfg.weights == "ema":
        parts.append("ema")
    if size != source.size():
        parts.append(str(size))
    if batch is not None:
        parts.append(f"b{batch}")
    if not cfg.inference_path:
        parts.append("plain")
    return "_".join(parts) + SUFFIXES[cfg.format]


def _verification_images(cfg, source: Source, size: int, batch: int | None) -> tuple[list[torch.Tensor], str]:
    """Batches of images to compare on (each of the fixed batch size, if any) and what they are."""
    step = batch or 64
    wanted = -(-cfg.verify_images // step) * step
    if source.data is None or size != source.size():
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(wanted, 3, size, size, generator=generator)
        return list(images.split(step)), f"{wanted} random inputs"
    from effconv.engine.datafiles import build_loaders

    loaders = build_loaders(source.data, step, step, torch.device("cpu"), source.seed)
    collected = []
    for images, _ in loaders.eval.batches(epoch=0):
        collected.append(images.float().contiguous())
        if sum(len(b) for b in collected) >= wanted:
            break
    images = torch.cat(collected)
    usable = len(images) // step * step
    if usable == 0:
        raise UserError(f"{source.data.name} has {len(images)} evaluation images, fewer than batch={batch}")
    return list(images[:usable].split(step)), f"{usable} evaluation images of {source.data.name}"


def compare(reference: nn.Module, runner, batches: list[torch.Tensor]) -> dict:
    """Max |artefact - eager| over all logits, that over max |eager|, and top-1 agreement (%)."""
    max_abs, scale, agree, count = 0.0, 0.0, 0, 0
    for x in batches:
        expected = reference(x).float()
        got = runner(x).float().reshape(expected.shape)
        max_abs = max(max_abs, (got - expected).abs().max().item())
        scale = max(scale, expected.abs().max().item())
        agree += (got.argmax(1) == expected.argmax(1)).sum().item()
        count += len(x)
    return {
        "max_abs_diff": max_abs,
        "max_rel_diff": max_abs / scale if scale > 0 else max_abs,
        "top1_agreement": 100.0 * agree / count,
        "images": count,
    }


def _latency_ms(runner, batch: int, size: int) -> float:
    x = torch.randn(batch, 3, size, size)
    for _ in range(3):
        runner(x)
    calls, start = 0, time.perf_counter()
    while calls < 10 or time.perf_counter() - start < MIN_LATENCY_S:
        runner(x)
        calls += 1
    return round(1e3 * (time.perf_counter() - start) / calls, 3)


def _threads(n: int):
    from effconv.threads import torch_threads

    return torch_threads(n)


def _write_manifest(path: Path, record: dict) -> Path:
    from effconv.engine.outputs import write_json_atomic

    manifest = path.parent / "export.json"
    entries = {}
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            entries = {}
    entries[path.name] = record
    write_json_atomic(manifest, entries)
    return manifest
