"""Faults around checkpoints and the loss, injected in-process: a write that fails (exception, partial file,
disk full), unreadable checkpoints, a non-finite loss, a resume that would silently change the run. Each
keeps the last good checkpoint loadable, says what happened in one line, and a rerun loses nothing.
"""

from __future__ import annotations

import builtins

import pytest
import torch

import tests.helper_models  # noqa: F401
from effconv.engine import checkpoint as ckpt
from effconv.engine.loop import train
from effconv.engine.outputs import RunFiles
from effconv.errors import NonFiniteLossError, UserError
from tests.conftest import compose, quick_overrides
from tests.robustness.helpers import MLP, assert_same_run, error_lines, run_train

RUN = [*MLP, "recipe.epochs=2", "recipe.batch_size=16", "limit_train_batches=3", "limit_eval_batches=1"]
EVERY_UPDATE = "checkpoint_interval_s=1e-9"


def run_dir(cfg):
    return ckpt.Path(cfg.output_root) / cfg.run_name


def fail_save_at(monkeypatch, update: int, failure) -> None:
    """``failure(f)`` runs instead of writing the checkpoint of ``update`` (into the open temporary file f)."""
    save = torch.save

    def save_or_fail(state, f, *args, **kwargs):
        if isinstance(state, dict) and state.get("global_step") == update:
            failure(f)
        return save(state, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_or_fail)


def test_write_failures_keep_previous_checkpoint(tmp_path, monkeypatch):
    """An exception while writing, with or without a partial file on disk: last.pt stays the previous one."""
    path = tmp_path / "last.pt"
    ckpt.save_atomic({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    for partial in (b"", b"PK\x03\x04 half a zip"):

        def crash(f, partial=partial):
            f.write(partial)
            raise RuntimeError("killed while writing")

        fail_save_at(monkeypatch, 2, crash)
        with pytest.raises(RuntimeError, match="killed while writing"):
            ckpt.save_atomic({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path, keep_previous=True)
        monkeypatch.undo()
        assert ckpt.load(path)["global_step"] == 1
        assert not list(tmp_path.glob("*.tmp"))


def test_failed_write_during_a_run_then_rerun_loses_nothing(tmp_path, monkeypatch):
    reference = compose(*quick_overrides(tmp_path / "reference", *RUN, EVERY_UPDATE))
    train(reference)
    cfg = compose(*quick_overrides(tmp_path / "faulted", *RUN, EVERY_UPDATE))

    def crash(f):
        f.write(b"PK\x03\x04")  # the start of a zip, and then nothing
        raise RuntimeError("crash")

    fail_save_at(monkeypatch, 4, crash)
    with pytest.raises(RuntimeError, match="crash"):
        train(cfg)
    monkeypatch.undo()
    assert ckpt.load(run_dir(cfg) / "checkpoints" / "last.pt")["global_step"] == 3
    train(cfg)
    assert_same_run(run_dir(reference), run_dir(cfg))


def test_disk_full_is_one_line_and_keeps_previous(tmp_path, monkeypatch):
    """The checkpoint of update 4 is written to /dev/full: the kernel's ENOSPC, not a mock exception."""
    reference = compose(*quick_overrides(tmp_path / "reference", *RUN, EVERY_UPDATE))
    train(reference)
    cfg = compose(*quick_overrides(tmp_path / "full", *RUN, EVERY_UPDATE))
    checkpoints = run_dir(cfg) / "checkpoints"
    writes = []

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        if str(file).endswith("last.pt.tmp"):
            writes.append(file)
            if len(writes) == 4:  # updates 1-3 (the 3rd ends epoch 1), then the checkpoint of update 4
                return builtins.open("/dev/full", mode, *args, **kwargs)
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(ckpt, "open", open_on_full_disk, raising=False)
    with pytest.raises(UserError) as error:
        train(cfg)
    monkeypatch.undo()
    assert str(error.value) == (
        f"could not write checkpoint {checkpoints / 'last.pt'}: No space left on device; the previous checkpoint "
        "is intact (free disk space, then run the same command to resume)"
    )
    assert error.value.exit_code == 2
    assert ckpt.load(checkpoints / "last.pt")["global_step"] == 3
    assert not list(checkpoints.glob("*.tmp"))
    train(cfg)  # space freed
    assert_same_run(run_dir(reference), run_dir(cfg))


def test_disk_full_on_run_files_is_one_line(tmp_path):
    files = RunFiles(tmp_path)
    files.metrics = ckpt.Path("/dev/full")
    with pytest.raises(UserError, match=r"^cannot write /dev/full: No space left on device; the checkpoints"):
        files.event("epoch", epoch=1)


def corrupt(path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if how == "truncated" else b"\x00garbage" * 100)


def test_unreadable_checkpoints_fall_back_to_newest_loadable(tmp_path):
    """last.pt truncated -> last.prev.pt; last.pt and last.prev.pt corrupt -> best.pt; all bad -> refused."""
    for step in (1, 2, 3):
        ckpt.save_atomic({"state_dict": {}, "global_step": step}, tmp_path / "last.pt", keep_previous=True)
        if step == 2:
            ckpt.save_atomic({"state_dict": {}, "global_step": step}, tmp_path / "best.pt")
    corrupt(tmp_path / "last.pt", "truncated")
    said = []
    path, state = ckpt.find_resumable(tmp_path, log=said.append)
    assert (path.name, state["global_step"]) == ("last.prev.pt", 2)
    assert said[0].startswith(f"warning: checkpoint {tmp_path / 'last.pt'} is unreadable (")
    assert said[1] == f"resuming from {tmp_path / 'last.prev.pt'}, the newest checkpoint that loads (update 2)"
    corrupt(tmp_path / "last.prev.pt", "garbage")
    path, state = ckpt.find_resumable(tmp_path, log=said.append)
    assert (path.name, state["global_step"]) == ("best.pt", 2)
    corrupt(tmp_path / "best.pt", "truncated")
    with pytest.raises(UserError, match=r"^no checkpoint in .* can be loaded \(.*\): move that run directory away"):
        ckpt.find_resumable(tmp_path, log=said.append)


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_nonfinite_loss_stops_with_the_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, kind):
    """NaN from inside the network (weights are NaN after that update), or +inf added to the loss."""
    extra = ["+model.nan_on_call=7"] if kind == "nan" else []
    if kind == "inf":
        calls, forward = [0], torch.nn.CrossEntropyLoss.forward

        def inf_on_seventh(self, x, y):
            calls[0] += 1
            return forward(self, x, y) + (float("inf") if calls[0] == 7 else 0.0)

        monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", inf_on_seventh)
    cfg = compose(
        *quick_overrides(tmp_path, *MLP, "recipe.epochs=3", "limit_train_batches=4", "limit_eval_batches=1", *extra)
    )
    with pytest.raises(NonFiniteLossError, match=rf"^loss became {kind} at step 6 \(epoch 2, batch 2\)") as err:
        train(cfg)
    assert err.value.exit_code == 3 and "the last good checkpoint is kept in" in str(err.value)
    state = ckpt.load(run_dir(cfg) / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())


def test_nonfinite_loss_exit_status_from_the_command_line(tmp_path):
    done = run_train(tmp_path, *RUN, "+model.nan_on_call=2", "run_name=nan")
    assert done.returncode == 3
    assert error_lines(done) == [
        "error: loss became nan at step 1 (epoch 1, batch 1); the last good checkpoint is kept in "
        f"{tmp_path / 'nan' / 'checkpoints'}: lower recipe.lr or check the data"
    ]


@pytest.mark.parametrize(
    "changed, key",
    [
        ("recipe.epochs=3", "recipe.epochs=2, this run asks for 3"),
        ("recipe.batch_size=8", "effective batch (recipe.batch_size x recipe.accum_steps x processes)=16, this run "),
        ("recipe.accum_steps=2", "effective batch (recipe.batch_size x recipe.accum_steps x processes)=16, this run "),
    ],
)
def test_resume_with_changed_schedule_is_refused_naming_the_key(tmp_path, changed, key):
    fixed = [*RUN, "run_name=fixed"]
    train(compose(*quick_overrides(tmp_path, *fixed)))
    with pytest.raises(UserError, match="pass allow_resume_change=true to continue with the new value") as error:
        train(compose(*quick_overrides(tmp_path, *fixed, changed)))
    assert key in str(error.value)
    results = train(compose(*quick_overrides(tmp_path, *fixed, changed, "allow_resume_change=true")))
    assert results["epochs_done"] == (3 if "epochs" in changed else 2)
