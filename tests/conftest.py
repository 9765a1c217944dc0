"""Shared fixtures: CPU only, two threads, wandb disabled, configs composed exactly as train.py does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
# idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads stall each other (10-100x)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# CI has 2 quiet cores; on a shared machine EFFCONV_TEST_THREADS=1 avoids OpenMP oversubscription stalls
import torch  # noqa: E402  (after the OpenMP environment is set)

torch.set_num_threads(int(os.environ.get("EFFCONV_TEST_THREADS", "2")))

REPO = Path(__file__).resolve().parent.parent


def compose(*overrides: str):
    from effconv.config import compose as _compose

    return _compose(list(overrides))


def quick_overrides(tmp_path: Path, *extra: str) -> list[str]:
    """A short CPU run into tmp_path: two tiny epochs, no progress bar, no mid-epoch checkpoint timer."""
    return [
        f"output_root={tmp_path}",
        "progress=false",
        "checkpoint_interval_s=0",
        "recipe.epochs=2",
        "recipe.warmup_epochs=0",
        *extra,
    ]


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 600, env: dict | None = None):
    """Run an entry point (train.py, evaluate.py, -m effconv.report) in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


@pytest.fixture
def train_cfg(tmp_path):
    def make(*overrides: str):
        return compose(*quick_overrides(tmp_path, *overrides))

    return make
