"""Shared pieces of the fault-injection suite: the tiny-MLP run, the faulting runner, comparisons."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

import tests.helper_models  # noqa: F401  (registers test_tiny_mlp for the in-process references)
from effconv.engine import checkpoint as ckpt
from tests.conftest import run_cli

RUNNER = "tests/robustness/run_train.py"
MLP = ["model=timm", "model.name=test_tiny_mlp", "data.train_transform=none"]


def run_train(output_root: Path, *overrides: str, fault: str | None = None, timeout: float = 600, **env):
    """One ``train.py`` process (with the test models registered), optionally with an injected fault."""
    extra = {"EFFCONV_FAULT": fault} if fault else {}
    return run_cli(
        RUNNER, f"output_root={output_root}", "progress=false", *overrides, timeout=timeout, env={**extra, **env}
    )


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith(("error:", "interrupted:"))]


def events(run_dir: Path, kind: str | None = None) -> list[dict]:
    found = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e for e in found if kind is None or e["type"] == kind]


def assert_same_run(a: Path, b: Path) -> None:
    """Nothing lost: the same final weights (raw and EMA, bit for bit), summary rows and results."""
    last_a, last_b = (ckpt.load(d / "checkpoints" / "last.pt") for d in (a, b))
    for part in ("state_dict", "state_dict_ema"):
        if last_a[part] is None:
            assert last_b[part] is None
            continue
        assert last_a[part].keys() == last_b[part].keys()
        for k, v in last_a[part].items():
            assert torch.equal(v, last_b[part][k]), (part, k)
    assert (a / "summary.csv").read_text() == (b / "summary.csv").read_text()
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for key in ("top1", "top5", "best_top1", "last_top1", "last_loss", "last_ema_top1", "global_steps", "epochs_done"):
        assert ra[key] == rb[key], key
