"""DDP: a worker killed mid-run; torchrun's elastic restart (``--max-restarts``) starts both workers again
and they resume from rank 0's last checkpoint, ending where an uninterrupted run ends.

TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: without it the restarted workers read the dead workers' addresses from
the reused rendezvous store and never form a process group (pytorch/pytorch#135712; see README)."""

from __future__ import annotations

import pytest
import torch

from effconv.engine import checkpoint as ckpt
from effconv.engine.loop import train
from tests.conftest import compose
from tests.robustness.helpers import MLP, RUNNER, events
from tests.test_distributed import torchrun

pytestmark = pytest.mark.slow

RUN = [*MLP, "recipe.epochs=2", "recipe.warmup_epochs=0", "limit_train_batches=6", "checkpoint_interval_s=1e-9"]


def test_killed_worker_restarted_by_torchrun_resumes(tmp_path):
    done = torchrun(
        "--max-restarts=1",
        RUNNER,
        f"output_root={tmp_path / 'ddp'}",
        "progress=false",
        *RUN,
        "recipe.batch_size=8",
        env_extra={"EFFCONV_FAULT": "kill@5", "EFFCONV_FAULT_RANK": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    (run_dir,) = (tmp_path / "ddp").iterdir()
    assert len(events(run_dir, "start")) == 2  # the first attempt and the restart
    # rank 1 died after update 5, before the checkpoint of update 5 was agreed: rank 0's last.pt is update 4
    assert [e["global_step"] for e in events(run_dir, "resume")] == [4]
    # nothing lost: the weights of one process with the same global batch, uninterrupted
    single = compose(f"output_root={tmp_path / 'single'}", "progress=false", *RUN, "recipe.batch_size=16")
    results = train(single)
    a = ckpt.load(run_dir / "checkpoints" / "last.pt")["state_dict"]
    b = ckpt.load(tmp_path / "single" / single.run_name / "checkpoints" / "last.pt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0, msg=k)
    assert results["global_steps"] == 12
