"""results.json (the file the report reads) and the result table printed at the end of a run."""

from __future__ import annotations

import platform

import timm
import torch

from effconv.config import to_plain
from effconv.engine.optim import ScaledLr
from effconv.engine.outputs import git_state
from effconv.engine.runtime import Runtime
from effconv.engine.state import TrainState
from effconv.profile import Cost

TIMING_KEY = "timing"  # the only part of results.json that differs between identical runs


def task_overrides() -> list[str]:
    """The command-line overrides of this job (what the report matches table rows against)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ValueError, ImportError):
        return []


def build_results(cfg, state: TrainState, cost: Cost, input_size, lr: ScaledLr, ema: bool, rt: Runtime) -> dict:
    """results.json of a run at ``state`` (its end): what was trained, its costs, best/last metrics, timing."""
    p, best, last = state, state.best, state.last
    epochs_done = p.epoch
    return {
        "model": cfg.model.name,
        "data": cfg.data.name,
        "recipe": cfg.recipe.name,
        "experiment": cfg.experiment,
        "run_name": cfg.run_name,
        "overrides": task_overrides(),
        "params": cost.params,
        "params_m": round(cost.params_m, 6),
        "madds": cost.madds,
        "madds_m": round(cost.madds_m, 4),
        "madds_convention": "multiply-accumulates of conv/linear layers + counted dynamic activations, per image",
        "input_size": list(input_size),
        "num_classes": cfg.data.num_classes,
        "epochs": cfg.recipe.epochs,
        "epochs_done": epochs_done,
        "global_steps": p.global_step,
        "effective_batch": lr.effective_batch,
        "lr": lr.lr,
        "ema": ema,
        # primary metric: EMA weights when the recipe keeps an EMA (as the papers report), else raw
        "top1": best.get("top1"),
        "top5": best.get("top5"),
        "best_epoch": best.get("epoch"),
        "best_top1": best.get("raw_top1"),
        "best_top5": best.get("raw_top5"),
        "best_ema_top1": best.get("ema_top1"),
        "best_ema_top5": best.get("ema_top5"),
        "last_top1": last.get("top1"),
        "last_top5": last.get("top5"),
        "last_ema_top1": last.get("ema_top1"),
        "last_ema_top5": last.get("ema_top5"),
        "last_loss": last.get("loss"),
        TIMING_KEY: {
            "train_images_per_s": round(p.images_per_s, 1),
            "epoch_time_s": round(p.train_time_s / max(epochs_done, 1), 3),
            "train_time_s": round(p.train_time_s, 3),
            "device": _device_name(rt.device),
            "world_size": rt.world_size,
            "amp": str(rt.amp_dtype).replace("torch.", "") if rt.amp_dtype else "none",
            "channels_last": cfg.channels_last,
            "threads": torch.get_num_threads(),
            "compile": cfg.compile,
        },
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__},
        "git": git_state(),
        "config": to_plain(cfg),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def format_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def print_result_table(results: dict) -> None:
    t = results[TIMING_KEY]
    header = ["model", "data", "params (M)", "MAdds (M)", "best top-1", "best top-5", "epoch time (s)", "images/s"]
    row = [
        results["model"],
        results["data"],
        _fmt(results["params_m"], 4),
        _fmt(results["madds_m"]),
        _fmt(results["top1"]),
        _fmt(results["top5"]),
        _fmt(t["epoch_time_s"], 1),
        f"{t['train_images_per_s']:.0f}",
    ]
    print("\n" + format_table([row], header) + "\n", flush=True)
