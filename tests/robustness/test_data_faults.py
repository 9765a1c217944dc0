"""The dataset's files damaged while a run is down (an in-memory dataset is read once, at start-up, so damage
done mid-run shows when the killed run is started again): deleted, truncated, overwritten with other rows.
Each is one line naming the file, the checkpoint stays, and with the file restored the run ends exactly as
an uninterrupted one. Pending the datasets issue: the same for streamed datasets (ImageNet folders), whose
files are opened during the epoch.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import sklearn.datasets

from effconv.data import digits
from effconv.engine import checkpoint as ckpt
from effconv.engine.loop import Trainer, train
from effconv.errors import UserError
from tests.conftest import compose, quick_overrides
from tests.robustness.helpers import MLP, assert_same_run

BUNDLED = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"


class Killed(Exception):
    """Stands in for the process dying after an update (the process-level kills are in test_process_faults)."""


def run(tmp_path, root: Path, name: str):
    digits._splits.cache_clear()  # a restarted process reads the files again
    overrides = [*MLP, f"data.root={root}", "recipe.epochs=2", "limit_train_batches=4", "limit_eval_batches=1"]
    return compose(*quick_overrides(tmp_path / name, *overrides, "checkpoint_interval_s=1e-9", "run_name=digits"))


DAMAGE = {
    "deleted": (lambda f: f.unlink(), "digits: {file} not found; expected scikit-learn's digits.csv.gz there"),
    "truncated": (
        lambda f: f.write_bytes(BUNDLED.read_bytes()[:5000]),
        "digits: cannot read the files under data.root={root} (EOFError: Compressed file ended before the "
        "end-of-stream marker was reached); a file is missing, truncated or corrupt: restore it",
    ),
    "other rows": (
        lambda f: f.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n")),
        "digits: {file} has shape (2, 3); expected rows of 64 pixels + 1 label",
    ),
}


def test_damaged_dataset_file_is_named_and_nothing_is_lost(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    file = root / "digits.csv.gz"
    shutil.copy(BUNDLED, file)
    reference = run(tmp_path, root, "reference")
    train(reference)

    step = Trainer._after_update

    def step_then_die(self):
        step(self)
        if self.state.global_step == 5:
            raise Killed

    monkeypatch.setattr(Trainer, "_after_update", step_then_die)
    with pytest.raises(Killed):
        train(run(tmp_path, root, "faulted"))
    monkeypatch.undo()
    checkpoint = tmp_path / "faulted" / "digits" / "checkpoints" / "last.pt"
    for damage, message in DAMAGE.values():
        damage(file)
        with pytest.raises(UserError) as error:
            train(run(tmp_path, root, "faulted"))
        assert str(error.value).startswith(message.format(file=file, root=root)), str(error.value)
        assert ckpt.load(checkpoint)["global_step"] == 4  # killed after update 5, before its checkpoint
    shutil.copy(BUNDLED, file)  # restored
    train(run(tmp_path, root, "faulted"))
    assert_same_run(tmp_path / "reference" / "digits", tmp_path / "faulted" / "digits")
