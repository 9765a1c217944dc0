"""evaluate.py: top-1/top-5 (raw and EMA), params, MAdds and images/s of a run's or a file's checkpoint.

The model is built from the config the checkpoint carries, by the builder training uses
(``effconv.engine.build.build_model``), then given the checkpoint's weights; the result goes to ``eval.json``
beside the run (or the checkpoint, or ``output=``).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from effconv.engine import checkpoint as ckpt
from effconv.engine.build import build_model
from effconv.engine.datafiles import build_loaders
from effconv.engine.evaluation import evaluate
from effconv.engine.outputs import write_json_atomic
from effconv.engine.runtime import setup
from effconv.errors import UserError
from effconv.profile import measure_throughput


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


def run_config(state: dict, path: Path, eval_cfg) -> DictConfig:
    """The training config a checkpoint carries, with this machine's data root."""
    run_cfg = OmegaConf.create(state.get("config") or {})
    if "model" not in run_cfg or "data" not in run_cfg:
        raise UserError(f"checkpoint {path} holds no config; evaluate checkpoints written by train.py")
    if eval_cfg.data_root is not None:
        run_cfg.data.root = eval_cfg.data_root
    return run_cfg


def evaluate_saved(eval_cfg) -> dict:
    path = checkpoint_path(eval_cfg)
    state = ckpt.load(path)
    run_cfg = run_config(state, path, eval_cfg)
    channels_last = run_cfg.get("channels_last", True)
    rt = setup(eval_cfg.device, run_cfg.get("amp", "none"), run_cfg.get("seed", 0), False, channels_last)
    built = build_model(run_cfg, rt, init_from=False)
    model, cost, input_size = built.model, built.cost, built.input_size
    model.load_state_dict(state["state_dict"])
    batch = eval_cfg.batch_size
    loaders = build_loaders(
        run_cfg.data, batch, batch, rt.device, run_cfg.get("seed", 0), memory_format=rt.memory_format
    )
    raw = evaluate(model, loaders.eval, rt, eval_cfg.limit_eval_batches)
    result = {
        "checkpoint": str(path),
        "epoch": state.get("epoch"),
        "model": run_cfg.model.name,
        "data": run_cfg.data.name,
        "top1": raw["top1"],
        "top5": raw["top5"],
        "loss": raw["loss"],
        "raw_top1": raw["top1"],
        "raw_top5": raw["top5"],
    }
    if state.get("state_dict_ema"):
        model.load_state_dict(state["state_dict_ema"])
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
    beside = Path(eval_cfg.run) if eval_cfg.run else path.parent
    out = Path(eval_cfg.output) if eval_cfg.output else beside / "eval.json"
    write_json_atomic(out, result)
    print(json.dumps({k: result[k] for k in ("top1", "top5", "params_m", "madds_m", "images_per_s")}), flush=True)
    print(f"wrote {out}", flush=True)
    return result
