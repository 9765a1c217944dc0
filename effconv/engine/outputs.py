"""Run directory files and logging sinks (DESIGN §3).

``outputs/<run_name>/``: ``config.yaml`` (resolved), ``metrics.jsonl`` (one typed JSON object per event),
``summary.csv`` (one row per epoch, via timm's ``update_summary``), ``results.json`` (final), and
``checkpoints/``. Only the primary process writes. wandb and TensorBoard are optional mirrors of the
per-epoch metrics; the run files are always written.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

from omegaconf import OmegaConf
from timm.utils import trim_summary, update_summary

from effconv.errors import UserError

REPO_DIR = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def writing(path: Path):
    """A failed write of a run file (disk full, permissions) is a one-line error naming the file."""
    try:
        yield
    except OSError as e:
        raise UserError(
            f"cannot write {path}: {e.strerror or e}; the checkpoints written so far are intact "
            "(free disk space or fix permissions, then run the same command to resume)"
        ) from None


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    with writing(path):
        try:
            tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def git_state() -> dict:
    def git(*args):
        done = subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else None

    try:
        return {"sha": git("rev-parse", "--verify", "-q", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


class RunFiles:
    """The files of one run; every method is a no-op on non-primary processes."""

    def __init__(self, run_dir: Path, primary: bool = True):
        self.dir = Path(run_dir)
        self.primary = primary
        self.checkpoints = self.dir / "checkpoints"
        self.summary = self.dir / "summary.csv"
        self.metrics = self.dir / "metrics.jsonl"
        self.results = self.dir / "results.json"
        if primary:
            try:
                self.checkpoints.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(
                    f"cannot create run directory {self.dir}: {e.strerror}; set output_root=<dir>"
                ) from None

    def write_config(self, cfg) -> None:
        if self.primary:
            with writing(self.dir / "config.yaml"):
                (self.dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    def event(self, kind: str, **fields) -> None:
        if self.primary:
            with writing(self.metrics), open(self.metrics, "a") as f:
                f.write(json.dumps({"type": kind, "time": round(time.time(), 3), **fields}) + "\n")

    def start_summary(self, epochs_done: int) -> None:
        """Drop rows of epochs that will be run again (a resumed run), or an old file (a fresh one)."""
        if self.primary:
            with writing(self.summary):
                if epochs_done == 0:
                    self.summary.unlink(missing_ok=True)
                else:  # rows are numbered from 1: keep 1..epochs_done
                    trim_summary(str(self.summary), epochs_done + 1)

    def summary_row(self, epoch: int, train: dict, evaluation: dict, lr: float) -> None:
        if self.primary:
            with writing(self.summary):
                update_summary(epoch, train, evaluation, str(self.summary), lr=lr)

    def write_results(self, results: dict) -> None:
        if self.primary:
            write_json_atomic(self.results, results)


class Sinks:
    """wandb / TensorBoard mirrors of the per-epoch metrics (primary process only)."""

    def __init__(self, logger_cfg, run_dir: Path, config: dict, primary: bool):
        self.wandb = None
        self.tensorboard = None
        if not primary:
            return
        if logger_cfg.name == "wandb":
            self.wandb = _start_wandb(logger_cfg, run_dir, config)
        elif logger_cfg.name == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("logger=tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        elif logger_cfg.name != "csv":
            raise UserError(f"logger.name must be csv, wandb or tensorboard (got {logger_cfg.name})")

    def log(self, metrics: dict, step: int) -> None:
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        if self.tensorboard is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


def _start_wandb(logger_cfg, run_dir: Path, config: dict):
    try:
        import wandb
    except ImportError:
        raise UserError("logger=wandb needs the wandb package: pip install wandb") from None
    if logger_cfg.mode not in ("online", "offline", "disabled"):
        raise UserError(f"logger.mode must be online, offline or disabled (got {logger_cfg.mode})")
    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id)
    return wandb.init(
        project=logger_cfg.project,
        entity=logger_cfg.entity,
        group=logger_cfg.group,
        tags=list(logger_cfg.tags),
        name=run_dir.name,
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        mode=logger_cfg.mode,
        config=config,
    )
