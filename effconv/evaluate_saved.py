"""evaluate.py: top-1/top-5 (raw and EMA), params, MAdds and images/s of a run's or a file's checkpoint.

The model is built from the config the checkpoint carries (or from ``model=`` / ``data=`` for a file without one:
the authors' released weights), by the builder training uses (``effconv.engine.build.build_model``), then given
the checkpoint's weights in any layout ``effconv.models.formats`` converts; the result goes to ``eval.json``
beside the run (or the checkpoint, ``outputs/released/`` for released weights, or ``output=``).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

from effconv.config import model_knobs
from effconv.engine.build import build_model
from effconv.engine.datafiles import build_loaders
from effconv.engine.evaluation import evaluate
from effconv.engine.outputs import write_json_atomic
from effconv.engine.runtime import setup
from effconv.errors import UserError
from effconv.models import formats
from effconv.profile import measure_throughput

RELEASED_DIR = Path("outputs") / "released"  # where the report looks for released weights' evaluations


def checkpoint_path(eval_cfg) -> Path:
    """The checkpoint ``run=`` (its best.pt or last.pt) or ``checkpoint=`` names."""
    if bool(eval_cfg.run) == bool(eval_cfg.checkpoint):
        raise UserError("give exactly one of run=<run dir> or checkpoint=<file>")
    if not eval_cfg.run:
        return Path(eval_cfg.checkpoint)
    run_dir = Path(eval_cfg.run)
    if eval_cfg.which not in ("best", "last"):
        raise UserError(f"which must be best or last (got {eval_cfg.which})")
    path = run_dir / "checkpoints" / f"{eval_cfg.which}.pt"
    if not run_dir.is_dir():
        raise UserError(f"run={run_dir} is not a directory; pass a run directory under outputs/")
    if not path.is_file():
        raise UserError(f"{path} does not exist; the run has not finished an epoch yet")
    return path


def run_config(eval_cfg, stored: dict | None, path: Path) -> DictConfig:
    """The model and data to evaluate a checkpoint with: the command line's model= / data=, else the ones a
    train.py checkpoint stores (a file without either, released weights, must be told both); this machine's
    data root."""
    cfg = OmegaConf.create(stored or {})
    for group in ("model", "data"):
        if eval_cfg.get(group) is not None:
            cfg[group] = OmegaConf.to_container(eval_cfg[group])  # resolved in the merged config
    if "model" not in cfg or "data" not in cfg:
        raise UserError(
            f"checkpoint {path} holds no config (it was not written by train.py): name the network and the "
            "dataset, e.g. model=<name> [model.<knob>=<value> ...] data=<dataset> (docs/weights.md)"
        )
    if eval_cfg.data_root is not None:
        cfg.data.root = eval_cfg.data_root
    return cfg


def load_for_evaluation(model: nn.Module, state_dict: dict, path: Path) -> str:
    """Load weights of any known layout; evaluation needs every tensor from the file. Returns the layout."""
    converted = formats.convert(state_dict, model, f"checkpoint {path}")
    if converted.kept:
        raise UserError(
            f"checkpoint {path} has no weights of the right shape for {', '.join(converted.kept)} of "
            f"{formats.architecture(model)} (another class count?): evaluate it on the dataset it was trained "
            "for, or fine-tune it with train.py model.init_from=<file>"
        )
    model.load_state_dict(converted.state_dict)
    return converted.layout


def evaluate_saved(eval_cfg) -> dict:
    path = checkpoint_path(eval_cfg)
    saved = formats.read(path)
    run_cfg = run_config(eval_cfg, saved.config, path)
    channels_last = run_cfg.get("channels_last", True)
    rt = setup(eval_cfg.device, run_cfg.get("amp", "none"), run_cfg.get("seed", 0), False, channels_last)
    built = build_model(run_cfg, rt, init_from=False)
    model, cost, input_size = built.model, built.cost, built.input_size
    weights = load_for_evaluation(model, saved.raw, path)
    batch = eval_cfg.batch_size
    loaders = build_loaders(
        run_cfg.data,
        batch,
        batch,
        rt.device,
        run_cfg.get("seed", 0),
        memory_format=rt.memory_format,
        with_train=False,
    )
    raw = evaluate(model, loaders.eval, rt, eval_cfg.limit_eval_batches)
    result = {
        "checkpoint": str(path),
        "epoch": saved.epoch,
        "model": run_cfg.model.name,
        "data": run_cfg.data.name,
        "top1": raw["top1"],
        "top5": raw["top5"],
        "loss": raw["loss"],
        "raw_top1": raw["top1"],
        "raw_top5": raw["top5"],
        "weights": weights,  # effconv, or the published layout the file came in
        "released": saved.config is None,  # weights from elsewhere (no train.py config): effconv.report.released
        "model_cfg": model_knobs(run_cfg.model),
        "img_size": run_cfg.data.img_size,
    }
    if saved.ema is not None:
        load_for_evaluation(model, saved.ema, path)
        ema = evaluate(model, loaders.eval, rt, eval_cfg.limit_eval_batches)
        result.update(top1=ema["top1"], top5=ema["top5"], ema_top1=ema["top1"], ema_top5=ema["top5"])
    result.update(
        params=cost.params,
        madds=cost.madds,
        params_m=round(cost.params_m, 6),
        madds_m=round(cost.madds_m, 4),
        input_size=list(input_size),
    )
    result["images_per_s"] = {
        str(b): round(
            measure_throughput(
                model, input_size, b, rt.device, channels_last, min_time_s=0.3, repeats=3, amp_dtype=rt.amp_dtype
            ).images_per_s,
            1,
        )
        for b in eval_cfg.throughput_batches
    }
    result["device"] = str(rt.device)
    if eval_cfg.output:
        out = Path(eval_cfg.output)
    elif eval_cfg.run:
        out = Path(eval_cfg.run) / "eval.json"
    elif result["released"]:
        out = RELEASED_DIR / f"{result['model']}-{result['data']}-{path.stem}" / "eval.json"
    else:
        out = path.parent / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    print(json.dumps({k: result[k] for k in ("top1", "top5", "params_m", "madds_m", "images_per_s")}), flush=True)
    print(f"wrote {out}", flush=True)
    return result
