"""Sweeps that survive a failing job, and the run directory as Hydra's output directory.

Real ``train.py -m`` processes (through the fault runner, which registers the test MLP): every job runs, a
failing job (bad value, non-finite loss) is recorded in its run directory, the sweep closes with a summary and
exits 1, and the same command again trains nothing that finished. The submitit launcher does the same with
one process per job. ``hydra.run.dir`` moves a single run, which resumes there.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.robustness.helpers import MLP, RUNNER, events, run_train

pytestmark = pytest.mark.slow

TINY = [
    *MLP,
    "progress=false",
    "recipe.epochs=1",
    "recipe.warmup_epochs=0",
    "limit_train_batches=2",
    "limit_eval_batches=1",
]
LR_INVALID, LR_OK, LR_DIVERGES = "-1", "0.1", "1e30"


def job_dir(sweep_dir, lr: str):
    """The run directory of the job with ``recipe.lr=<lr>`` (its overrides, as Hydra saved them)."""

    def job_lr(run_dir) -> float | None:
        if not (run_dir / ".hydra" / "overrides.yaml").is_file():
            return None  # submitit's own directory
        lines = (run_dir / ".hydra" / "overrides.yaml").read_text().splitlines()
        return next((float(line.split("=")[1]) for line in lines if line.startswith("- recipe.lr=")), None)

    (found,) = [d for d in sweep_dir.iterdir() if d.is_dir() and job_lr(d) == float(lr)]
    return found


def summary_lines(stdout: str) -> list[str]:
    return stdout[stdout.index("sweep of ") :].splitlines()


def test_local_sweep_runs_every_job_then_reruns_only_unfinished(tmp_path):
    """recipe.lr=-1 (refused), 0.1 (trains), 1e30 (non-finite loss): all three run, under hydra.sweep.dir."""
    sweep = [*TINY, f"recipe.lr={LR_INVALID},{LR_OK},{LR_DIVERGES}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = run_cli(RUNNER, "-m", *sweep)
    assert done.returncode == 1, done.stderr[-3000:]
    invalid, ok, diverged = (job_dir(tmp_path / "sweep", lr) for lr in (LR_INVALID, LR_OK, LR_DIVERGES))
    assert json.loads((ok / "results.json").read_text())["epochs_done"] == 1
    assert json.loads((invalid / "failed.json").read_text())["reason"] == "recipe.lr must be > 0 (got -1.0)"
    failure = json.loads((diverged / "failed.json").read_text())
    assert failure["exit_code"] == 3 and failure["reason"].startswith("loss became ")
    assert [e["type"] for e in events(diverged)] == ["start", "nonfinite_loss", "failed"]
    lines = summary_lines(done.stdout)
    assert lines[0] == "sweep of 3 jobs: 1 done, 2 failed"
    assert f"  failed  {invalid}: recipe.lr must be > 0 (got -1.0)" in lines
    assert any(line.startswith(f"  failed  {diverged}: loss became ") for line in lines)
    assert f"  done    {ok}: top-1 " in "\n".join(lines)
    assert "error: recipe.lr must be > 0 (got -1.0)" in done.stderr

    before = (ok / "results.json").stat().st_mtime_ns, len(events(ok))
    again = run_cli(RUNNER, "-m", *sweep)
    assert again.returncode == 1
    assert ((ok / "results.json").stat().st_mtime_ns, len(events(ok))) == before  # not trained again
    assert "finished before this sweep, not trained again" in again.stdout
    assert [e["type"] for e in events(diverged)].count("start") == 2  # a failed job is trained again


def test_submitit_local_sweep_runs_every_job(tmp_path):
    """Each job in its own process (the code path of launcher=slurm): the failing one cancels no other. (A
    real model: the job processes do not import the tests' models.)"""
    small = ["recipe.epochs=1", "recipe.batch_size=8", "limit_train_batches=1", "limit_eval_batches=1"]
    sweep = ["launcher=submitit_local", f"recipe.lr={LR_INVALID},{LR_OK}", f"output_root={tmp_path}", "progress=false"]
    done = run_cli("train.py", "-m", *small, *sweep)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert (job_dir(tmp_path, LR_OK) / "results.json").is_file()
    assert (job_dir(tmp_path, LR_INVALID) / "failed.json").is_file()
    assert summary_lines(done.stdout)[0] == "sweep of 2 jobs: 1 done, 1 failed"


def test_run_dir_is_hydras_output_dir_and_resumes_there(tmp_path):
    """hydra.run.dir=<dir>: config.yaml, results.json and checkpoints go there; killed, the same command
    resumes there."""
    run = [*TINY, "recipe.epochs=2", "checkpoint_interval_s=1e-9", f"hydra.run.dir={tmp_path / 'mine'}"]
    killed = run_train(tmp_path / "unused", *run, fault="kill@3")
    assert killed.returncode < 0
    done = run_train(tmp_path / "unused", *run)
    assert done.returncode == 0, done.stderr[-3000:]
    mine = tmp_path / "mine"
    files = {"config.yaml", "results.json", "summary.csv", "metrics.jsonl", "checkpoints"}
    assert files <= {p.name for p in mine.iterdir()}
    assert [e["global_step"] for e in events(mine, "resume")] == [2]
    assert not (tmp_path / "unused").exists()
