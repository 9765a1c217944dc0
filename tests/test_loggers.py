"""Optional sinks: wandb keeps its run id in the run dir and is always finished; TensorBoard writes events."""

import tests.helper_models  # noqa: F401
from effconv.engine.loop import train
from effconv.engine.outputs import run_dir_of
from tests.conftest import compose, quick_overrides

TINY = ["model=timm", "model.name=test_tiny_mlp", "recipe.epochs=1", "limit_train_batches=2", "limit_eval_batches=1"]


def test_wandb_run_id_is_kept_for_resume(tmp_path):
    cfg = compose(*quick_overrides(tmp_path, *TINY, "logger=wandb", "logger.mode=disabled"))
    train(cfg)
    run_id = (run_dir_of(cfg) / "wandb_run_id").read_text()
    assert len(run_id) >= 8
    train(cfg)  # the finished run again: same id reused
    assert (run_dir_of(cfg) / "wandb_run_id").read_text() == run_id


def test_tensorboard_writes_events(tmp_path):
    cfg = compose(*quick_overrides(tmp_path, *TINY, "logger=tensorboard"))
    train(cfg)
    assert list((run_dir_of(cfg) / "tensorboard").glob("events.out.tfevents.*"))
