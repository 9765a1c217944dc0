"""Where a run stands, read from its run directory alone: done, running, failed, stopped or not started.

``metrics.jsonl`` says what happened last (``start``/``resume``/``epoch`` while training, ``end``, ``failed``,
``interrupted``), ``results.json`` what a finished run gave, ``failed.json`` why a run failed. A run whose
last event is a training event is running while the process that started it lives (checked on this host;
a run started on another host is reported as running there) and stopped otherwise (killed or pre-empted;
the same command resumes it). Sweeps use it for their closing summary, the report for ``--status``, and
``train`` to skip a run that finished already.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from effconv.config import to_plain
from effconv.engine.outputs import FAILED, run_dir_of

DONE, RUNNING, FAILED_STATE, STOPPED, NOT_STARTED = "done", "running", "failed", "stopped", "not started"
STATES = (DONE, FAILED_STATE, STOPPED, RUNNING, NOT_STARTED)  # the order summaries count them in


def totals(states: list[str]) -> str:
    """'3 done, 1 failed' (states that occur, in STATES order)."""
    return ", ".join(f"{states.count(s)} {s}" for s in STATES if s in states)


# config keys that do not change what a run trains (as hydra.job.config.override_dirname.exclude_keys in
# conf/config.yaml, which keeps them out of the run name), plus the run's place and its table spec
NOT_TRAINING = (
    "run_dir",
    "run_name",
    "output_root",
    "resume",
    "allow_resume_change",
    "device",
    "threads",
    "progress",
    "checkpoint_interval_s",
    "logger",
    "table",
    "data.root",
    "data.num_workers",
    "data.cache_dir",
    "data.verify_checksums",
)


@dataclass
class RunStatus:
    run_dir: Path
    state: str
    detail: str = ""  # the failure's reason, the top-1 of a finished run, where a run stopped
    results: dict | None = field(default=None, repr=False)

    def line(self) -> str:
        return f"{self.state}{': ' + self.detail if self.detail else ''}"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _events(run_dir: Path) -> list[dict]:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:  # a line cut by a kill
            continue
    return events


def _alive(start: dict) -> bool | None:
    """Whether the process of a ``start`` event lives; None when it ran on another host."""
    if start.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(start["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError):
        return True
    return True


def run_status(run_dir: Path) -> RunStatus:
    run_dir = Path(run_dir)
    events = [e for e in _events(run_dir) if e.get("type") != "nonfinite_loss"]
    results = _read_json(run_dir / "results.json")
    last = events[-1] if events else None
    if last is None:
        return RunStatus(run_dir, DONE, _top1(results), results) if results else RunStatus(run_dir, NOT_STARTED)
    if last["type"] == "end":
        return RunStatus(run_dir, DONE, _top1(results), results)
    if last["type"] == "failed":
        failure = _read_json(run_dir / FAILED) or {}
        return RunStatus(run_dir, FAILED_STATE, failure.get("reason") or last.get("reason", ""))
    where = _position(events)
    if last["type"] == "interrupted":
        return RunStatus(run_dir, STOPPED, f"{last.get('signal')} at {where}; the same command resumes it")
    start = next((e for e in reversed(events) if e["type"] == "start"), {})
    alive = _alive(start)
    if alive is False:
        return RunStatus(run_dir, STOPPED, f"killed at {where}; the same command resumes it")
    age = time.time() - last.get("time", time.time())
    host = "" if alive else f" on {start.get('host')}"
    return RunStatus(run_dir, RUNNING, f"{where}{host}, last event {age:.0f} s ago")


def _top1(results: dict | None) -> str:
    top1 = (results or {}).get("top1")
    return f"top-1 {top1:.2f}" if top1 is not None else ""


def _position(events: list[dict]) -> str:
    epochs = [e for e in events if e["type"] == "epoch"]
    return f"epoch {epochs[-1]['epoch']} done" if epochs else "epoch 1"


def _what_trains(config: dict) -> dict:
    kept = {k: v for k, v in config.items() if k not in NOT_TRAINING}
    for key in NOT_TRAINING:
        group, _, leaf = key.partition(".")
        if leaf and isinstance(kept.get(group), dict):
            kept[group] = {k: v for k, v in kept[group].items() if k != leaf}
    return kept


def finished_results(cfg) -> dict | None:
    """results.json of ``cfg``'s run when that run finished all ``recipe.epochs`` with the same config (keys
    that change no training aside), else None. Only with ``resume=auto``: ``resume=never`` starts over."""
    if cfg.resume != "auto":
        return None
    status = run_status(run_dir_of(cfg))
    results = status.results
    if status.state != DONE or not results:
        return None
    if results.get("epochs_done") != cfg.recipe.epochs or results.get("epochs") != cfg.recipe.epochs:
        return None
    if _what_trains(results.get("config") or {}) != _what_trains(to_plain(cfg)):
        return None
    return results
