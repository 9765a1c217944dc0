"""Run directory files and logging sinks (DESIGN §3).

The run directory is Hydra's output directory of the job (``run_dir``; by default
``outputs/[<experiment>/]<run_name>``): ``config.yaml`` (resolved), ``metrics.jsonl`` (one typed JSON object
per event), ``summary.csv`` (one row per epoch, via timm's ``update_summary``), ``results.json`` (final),
``failed.json`` (a run that stopped on an error: why), and ``checkpoints/``. Only the primary process writes.

One epoch record (``epoch_record``), one key spelling, feeds every sink: the summary row, the ``epoch`` event,
the console line, and wandb / TensorBoard (optional mirrors; the run files are always written).
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
FAILED = "failed.json"
# the summary.csv columns after ``epoch`` (those a run has), in order, then ``lr``
SUMMARY_KEYS = ("train_loss", "eval_loss", "eval_top1", "eval_top5", "eval_ema_loss", "eval_ema_top1", "eval_ema_top5")


def run_dir_of(cfg) -> Path:
    """The run directory: Hydra's output directory of the job (``run_dir``, set in conf/config.yaml), else,
    for a config composed outside a Hydra job, where that directory would be by default."""
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    return Path(cfg.output_root) / cfg.run_name


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


def append_event(metrics: Path, kind: str, **fields) -> None:
    """One typed line of metrics.jsonl."""
    with writing(metrics), open(metrics, "a") as f:
        f.write(json.dumps({"type": kind, "time": round(time.time(), 3), **fields}) + "\n")


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
            append_event(self.metrics, kind, **fields)

    def start_summary(self, epochs_done: int) -> None:
        """Drop rows of epochs that will be run again (a resumed run), or an old file (a fresh one)."""
        if self.primary:
            with writing(self.summary):
                if epochs_done == 0:
                    self.summary.unlink(missing_ok=True)
                else:  # rows are numbered from 1: keep 1..epochs_done
                    trim_summary(str(self.summary), epochs_done + 1)

    def epoch(self, record: dict) -> None:
        """One epoch's record: a summary.csv row (timm's ``update_summary``) and an ``epoch`` event."""
        if self.primary:
            columns = [k for k in SUMMARY_KEYS if k in record]
            train = {k[len("train_") :]: record[k] for k in columns if k.startswith("train_")}
            evaluation = {k[len("eval_") :]: record[k] for k in columns if k.startswith("eval_")}
            with writing(self.summary):
                update_summary(record["epoch"], train, evaluation, str(self.summary), lr=record["lr"])
        self.event("epoch", **record)

    def clear_failure(self) -> None:
        """A run that starts again is no longer failed (a new failure writes the file again)."""
        if self.primary:
            with writing(self.dir / FAILED):
                (self.dir / FAILED).unlink(missing_ok=True)

    def write_results(self, results: dict) -> None:
        if self.primary:
            write_json_atomic(self.results, results)


def epoch_record(epoch: int, global_step: int, lr: float, train_loss: float, raw: dict, ema: dict | None, **more):
    """One epoch's numbers under the one spelling every sink uses (summary.csv columns, ``epoch`` events,
    logger keys): ``train_loss``, ``eval_<metric>`` (raw weights), ``eval_ema_<metric>``, ``lr``."""
    record = {"epoch": epoch, "global_step": global_step, "lr": lr, "train_loss": train_loss}
    record.update({f"eval_{k}": raw[k] for k in ("loss", "top1", "top5")})
    if ema:
        record.update({f"eval_ema_{k}": ema[k] for k in ("loss", "top1", "top5")})
    return {**record, **more}


def console_line(record: dict, epochs: int) -> str:
    line = (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}  top-1 {record['eval_top1']:.2f}  "
        f"top-5 {record['eval_top5']:.2f}"
    )
    if "eval_ema_top1" in record:
        line += f"  EMA top-1 {record['eval_ema_top1']:.2f}"
    return line + f"  lr {record['lr']:.4g}  ({record['epoch_time_s']:.1f} s/epoch avg)"


def progress_bar(description: str, total: int, initial: int):
    """The console progress bar of an epoch (tqdm; off when the output is not a terminal)."""
    from tqdm import tqdm

    options = {"leave": False, "dynamic_ncols": True, "mininterval": 1.0, "disable": None}
    return tqdm(total=total, initial=initial, desc=description, **options)


def record_failure(run_dir: Path, reason: str, exit_code: int, **facts) -> None:
    """``failed.json`` (why the run stopped, with what the report matches a table row by) and a ``failed``
    event; best effort: a directory that cannot be written is left as it is."""
    failure = {"status": "failed", "reason": reason, "exit_code": exit_code, "time": round(time.time(), 3), **facts}
    with contextlib.suppress(OSError, UserError):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(run_dir) / FAILED, failure)
        append_event(Path(run_dir) / "metrics.jsonl", "failed", reason=reason, exit_code=exit_code)


class Sinks:
    """wandb / TensorBoard mirrors of the epoch records (primary process only)."""

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

    def log(self, record: dict) -> None:
        """An epoch record, at its optimizer update; keys as in summary.csv and metrics.jsonl."""
        step = record["global_step"]
        metrics = {k: v for k, v in record.items() if k not in ("epoch", "global_step")}
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
