"""Faults that end the training process, injected into real ``train.py`` processes; the same command again
must finish with exactly the weights, summary rows and results of an uninterrupted run.

One chain of launches of the same command: SIGKILL at five seeded updates (one of them half-way through the
checkpoint write, leaving a partial file), SIGTERM and SIGUSR1 (exit 143 with one line, checkpoint at the
update boundary, mid-epoch resume), and a truncated ``last.pt`` between two launches (resume falls back to
``last.prev.pt`` and says so). Plus a SIGKILL sent from outside at an unplanned instant while only epoch-end
checkpoints exist.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from effconv.engine.loop import train
from tests.conftest import REPO, compose
from tests.robustness.helpers import MLP, RUNNER, assert_same_run, error_lines, events, run_train

pytestmark = pytest.mark.slow

BATCHES, EPOCHS = 8, 3
RUN = [
    *MLP,
    f"recipe.epochs={EPOCHS}",
    "recipe.warmup_epochs=0",
    "recipe.batch_size=16",
    f"limit_train_batches={BATCHES}",
    "limit_eval_batches=2",
    "model.drop_rate=0.2",  # the RNG state must be restored too
    "recipe.ema=true",
    "recipe.ema_decay=0.9",
    "checkpoint_interval_s=1e-9",  # a checkpoint after every update
]
# (fault, seed): the fault hits a seeded update inside its own stretch of the 24 updates
CHAIN = [("kill", 11), ("kill_in_save", 22), ("kill", 33), ("term", 44), ("kill", 55), ("usr1", 66), ("kill", 77)]
TRUNCATE_AFTER = "kill_in_save"  # last.pt is then truncated before the next launch


def fault_updates() -> list[int]:
    total = BATCHES * EPOCHS
    edges = [2 + i * (total - 3) // len(CHAIN) for i in range(len(CHAIN) + 1)]
    return [random.Random(seed).randrange(edges[i], edges[i + 1]) for i, (_, seed) in enumerate(CHAIN)]


def stop_update(update: int) -> int:
    """A signal after the last update of an epoch is acted on after the next one (the epoch end saves)."""
    return update + 1 if update % BATCHES == 0 else update


def test_faults_chain_loses_nothing(tmp_path):
    reference = compose(f"output_root={tmp_path / 'reference'}", "progress=false", *RUN)
    train(reference)
    root = tmp_path / "faulted"
    checkpoints = root / reference.run_name / "checkpoints"
    expected_resumes, truncated = [], None
    for (fault, _), update in zip(CHAIN, fault_updates()):
        done = run_train(root, *RUN, fault=f"{fault}@{update}")
        if truncated is not None:  # this launch met the truncated last.pt
            assert f"warning: checkpoint {checkpoints / 'last.pt'} is unreadable (" in done.stdout
            assert (
                f"resuming from {checkpoints / 'last.prev.pt'}, the newest checkpoint that loads "
                f"(update {truncated})" in done.stdout
            )
            truncated = None
        if fault.startswith("kill"):
            assert done.returncode == -signal.SIGKILL, (fault, update, done.stderr[-2000:])
            expected_resumes.append(update - 1)  # the checkpoint of the update before
        else:
            stop = stop_update(update)
            assert done.returncode == 143, done.stderr[-2000:]
            epoch, batch = (stop - 1) // BATCHES + 1, (stop - 1) % BATCHES + 1
            name = {"term": "SIGTERM", "usr1": "SIGUSR1"}[fault]
            assert error_lines(done) == [
                f"interrupted: {name}: checkpoint written at epoch {epoch}, batch {batch}; "
                "run the same command to resume"
            ]
            expected_resumes.append(stop)
        if fault == TRUNCATE_AFTER:
            assert (checkpoints / "last.pt.tmp").stat().st_size > 0  # the half-written file is left
            last = checkpoints / "last.pt"
            last.write_bytes(last.read_bytes()[:1000])
            truncated = expected_resumes[-1] = update - 2  # last.prev.pt
    done = run_train(root, *RUN)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [e["global_step"] for e in events(checkpoints.parent, "resume")] == expected_resumes
    assert [e["signal"] for e in events(checkpoints.parent, "interrupted")] == ["SIGTERM", "SIGUSR1"]
    assert_same_run(tmp_path / "reference" / reference.run_name, checkpoints.parent)


def test_sigkill_from_outside_mid_epoch(tmp_path):
    """kill -9 from another process while epoch 2 trains, with only epoch-end checkpoints: epoch 2 is redone."""
    run = [*RUN[:-1], "checkpoint_interval_s=0", "limit_train_batches=80"]
    reference = compose(f"output_root={tmp_path / 'reference'}", "progress=false", *run)
    train(reference)
    root = tmp_path / "killed"
    command = [sys.executable, RUNNER, f"output_root={root}", "progress=false", *run]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    last = root / reference.run_name / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 600
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    done = run_train(root, *run)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [e["global_step"] for e in events(root / reference.run_name, "resume")] == [80]
    assert_same_run(tmp_path / "reference" / reference.run_name, root / reference.run_name)
