"""Evaluation: top-1 / top-5 / loss over a loader, exact under DDP (counts are summed, not averaged)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from effconv.engine.runtime import Runtime, all_reduce_sum


@torch.no_grad()
def evaluate(model: nn.Module, loader, runtime: Runtime, limit_batches: int | None = None) -> dict:
    """Accuracy in percent (as timm's ``accuracy``) and mean cross-entropy over the whole split."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=runtime.device)  # loss, top1, top5, count
    for i, (images, labels) in enumerate(loader.batches(epoch=0)):
        if limit_batches is not None and i >= limit_batches:
            break
        with runtime.autocast():
            logits = model(images)
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(labels[:, None])
        sums += torch.stack(
            [
                F.cross_entropy(logits, labels, reduction="sum").double(),
                hits[:, :1].sum().double(),
                hits.sum().double(),
                torch.tensor(float(len(labels)), dtype=torch.float64, device=runtime.device),
            ]
        )
    model.train(was_training)
    loss, top1, top5, count = all_reduce_sum(sums, runtime).tolist()
    count = max(count, 1.0)
    return {"loss": loss / count, "top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count}


def load_saved(run: str | None, checkpoint: str | None, which: str = "best", data_root: str | None = None):
    """(checkpoint path, checkpoint state, the run's config) of ``run=`` or ``checkpoint=``; one-line errors."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from effconv.engine import checkpoint as ckpt
    from effconv.errors import UserError

    if bool(run) == bool(checkpoint):
        raise UserError("give exactly one of run=<run dir> or checkpoint=<file>")
    if run:
        run_dir = Path(run)
        if which not in ("best", "last"):
            raise UserError(f"which must be best or last (got {which})")
        path = run_dir / "checkpoints" / f"{which}.pt"
        if not run_dir.is_dir():
            raise UserError(f"run={run_dir} is not a directory; pass a run directory under outputs/")
        if not path.is_file():
            raise UserError(f"{path} does not exist; the run has not finished an epoch yet")
    else:
        path = Path(checkpoint)
    state = ckpt.load(path)
    run_cfg = OmegaConf.create(state.get("config") or {})
    if "model" not in run_cfg or "data" not in run_cfg:
        raise UserError(f"checkpoint {path} holds no config; use checkpoints written by train.py")
    if data_root is not None:
        run_cfg.data.root = data_root
    return path, state, run_cfg


def model_from_config(run_cfg) -> nn.Module:
    """The run's network (random weights) from its config: model knobs and the dataset's class count."""
    from omegaconf import OmegaConf

    from effconv import models

    model_cfg = {k: v for k, v in OmegaConf.to_container(run_cfg.model).items() if k != "init_from"}
    return models.create(model_cfg, run_cfg.data.num_classes)


def evaluate_saved(eval_cfg) -> dict:
    """evaluate.py: top-1/top-5 (raw and EMA), params, MAdds and images/s of a run's or a file's checkpoint."""
    import json
    from pathlib import Path

    from effconv.engine.datafiles import build_loaders
    from effconv.engine.outputs import write_json_atomic
    from effconv.engine.runtime import setup
    from effconv.profile import count_cost, measure_throughput

    path, state, run_cfg = load_saved(eval_cfg.run, eval_cfg.checkpoint, eval_cfg.which, eval_cfg.data_root)
    run_dir = Path(eval_cfg.run) if eval_cfg.run else None
    rt = setup(
        eval_cfg.device, run_cfg.get("amp", "none"), run_cfg.get("seed", 0), False, run_cfg.get("channels_last", True)
    )
    model = model_from_config(run_cfg)
    input_size = (3, run_cfg.data.img_size, run_cfg.data.img_size)
    cost = count_cost(model, input_size)
    model.load_state_dict(state["state_dict"])
    model.to(rt.device, memory_format=rt.memory_format)
    loaders = build_loaders(
        run_cfg.data,
        eval_cfg.batch_size,
        eval_cfg.batch_size,
        rt.device,
        run_cfg.get("seed", 0),
        memory_format=rt.memory_format,
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
                model,
                input_size,
                b,
                rt.device,
                run_cfg.get("channels_last", True),
                min_time_s=0.3,
                repeats=3,
                amp_dtype=rt.amp_dtype,
            ).images_per_s,
            1,
        )
        for b in eval_cfg.throughput_batches
    }
    result["device"] = str(rt.device)
    out = Path(eval_cfg.output) if eval_cfg.output else (run_dir or path.parent) / "eval.json"
    write_json_atomic(out, result)
    print(json.dumps({k: result[k] for k in ("top1", "top5", "params_m", "madds_m", "images_per_s")}), flush=True)
    print(f"wrote {out}", flush=True)
    return result
