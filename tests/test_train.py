"""The training loop end to end on CPU: it learns, accumulates exactly, keeps an EMA, resumes bit for bit.

Faults (failed writes, corrupt checkpoints, non-finite losses, refused resumes, killed processes) are in
tests/robustness/.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import tests.helper_models  # noqa: F401  (registers test_tiny_mlp)
from effconv import models
from effconv.engine import checkpoint as ckpt
from effconv.engine.loop import Trainer, train
from effconv.engine.outputs import run_dir_of
from tests.conftest import compose, quick_overrides

MLP = ["model=timm", "model.name=test_tiny_mlp", "data.train_transform=none"]
CONSTANT_LR = ["recipe.sched=step", "recipe.decay_epochs=1000", "recipe.decay_rate=1.0"]


def run_dir(cfg):
    return run_dir_of(cfg)


def weights(cfg, name="last.pt", key="state_dict"):
    return ckpt.load(run_dir(cfg) / "checkpoints" / name)[key]


def assert_same_weights(a: dict, b: dict, atol: float = 0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol:
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k


def test_default_model_learns_digits(tmp_path):
    """ResNet-20 on digits: two epochs (88 updates of 32 images) already give a real accuracy (chance: 10%)."""
    cfg = compose(*quick_overrides(tmp_path, "recipe.batch_size=32"))
    results = train(cfg)
    assert results["top1"] > 60, results["top1"]
    assert results["params"] == 272_474 and results["epochs_done"] == 2
    files = {p.name for p in run_dir(cfg).iterdir()}
    assert {"config.yaml", "metrics.jsonl", "summary.csv", "results.json", "checkpoints"} <= files
    assert (run_dir(cfg) / "checkpoints" / "best.pt").is_file()
    summary = (run_dir(cfg) / "summary.csv").read_text().splitlines()
    assert summary[0] == "epoch,train_loss,eval_loss,eval_top1,eval_top5,lr" and len(summary) == 3
    events = [json.loads(line)["type"] for line in (run_dir(cfg) / "metrics.jsonl").read_text().splitlines()]
    assert events == ["start", "epoch", "epoch", "end"]
    on_disk = json.loads((run_dir(cfg) / "results.json").read_text())
    assert on_disk["top1"] == results["top1"] and on_disk["config"]["model"]["name"] == "resnet20_cifar"


def test_accumulation_equals_large_batch(tmp_path):
    """batch 8 x accumulation 4 makes the same update as batch 32 on a BN-free model."""
    common = [*MLP, *CONSTANT_LR, "recipe.epochs=1", "recipe.weight_decay=1e-3", "limit_eval_batches=1"]
    big = compose(*quick_overrides(tmp_path / "big", *common, "recipe.batch_size=32", "limit_train_batches=2"))
    small = compose(
        *quick_overrides(
            tmp_path / "small", *common, "recipe.batch_size=8", "recipe.accum_steps=4", "limit_train_batches=8"
        )
    )
    train(big)
    train(small)
    assert_same_weights(weights(big), weights(small), atol=1e-6)


def test_partial_last_window_is_scaled_by_its_size(tmp_path):
    """6 micro-batches with accumulation 4: updates on the mean of 4, then on the mean of the last 2."""
    cfg = compose(
        *quick_overrides(
            tmp_path,
            *MLP,
            *CONSTANT_LR,
            "recipe.epochs=1",
            "recipe.batch_size=8",
            "recipe.accum_steps=4",
            "limit_train_batches=6",
            "limit_eval_batches=1",
            "recipe.momentum=0",
            "recipe.weight_decay=0",
        )
    )
    trainer = Trainer(cfg)
    reference = models.create({"name": "test_tiny_mlp"}, 10)
    reference.load_state_dict(trainer.model.state_dict())
    lr = trainer.lr.lr
    batches = list(trainer.loaders.train.batches(0))[:6]
    for window in (batches[:4], batches[4:]):
        loss = torch.stack([torch.nn.functional.cross_entropy(reference(x), y) for x, y in window]).mean()
        reference.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in reference.parameters():
                p -= lr * p.grad
    train(cfg)
    assert_same_weights(weights(cfg), reference.state_dict(), atol=1e-6)


def test_ema_follows_timm_formula(tmp_path):
    """timm's ModelEmaV3 stepped by updates: ema_1 = w_1, then ema_k = decay * ema_(k-1) + (1 - decay) * w_k."""
    decay = 0.9
    cfg = compose(
        *quick_overrides(
            tmp_path,
            *MLP,
            "recipe.epochs=1",
            "recipe.ema=true",
            f"recipe.ema_decay={decay}",
            "limit_train_batches=2",
            "limit_eval_batches=1",
            "checkpoint_interval_s=1e-9",
        )
    )
    train(cfg)
    after_1 = ckpt.load(run_dir(cfg) / "checkpoints" / "last.prev.pt")  # written after update 1
    after_2 = ckpt.load(run_dir(cfg) / "checkpoints" / "last.pt")
    assert (after_1["global_step"], after_2["global_step"]) == (1, 2)
    for k, w2 in after_2["state_dict"].items():
        w1 = after_1["state_dict"][k]
        assert torch.equal(after_1["state_dict_ema"][k], w1), k
        torch.testing.assert_close(after_2["state_dict_ema"][k], decay * w1 + (1 - decay) * w2, atol=1e-7, rtol=0)
    results = json.loads((run_dir(cfg) / "results.json").read_text())
    assert results["ema"] and results["last_ema_top1"] is not None and results["best_ema_top1"] is not None


class Killed(Exception):
    """Stands in for kill -9: raised from inside the loop, nothing after it runs."""


def kill_after_updates(monkeypatch, n: int):
    original = Trainer._after_update

    def step(self):
        if self.state.global_step >= n:
            raise Killed
        original(self)

    monkeypatch.setattr(Trainer, "_after_update", step)


@pytest.mark.parametrize("kill_at", [5, 8], ids=["epoch-end", "mid-epoch"])
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, kill_at):
    """3 epochs straight == killed (at an epoch end / mid-epoch) + the same command again, bit for bit."""
    args = [
        "recipe.epochs=3",
        "recipe.batch_size=16",
        "limit_train_batches=5",
        "limit_eval_batches=2",
        "checkpoint_interval_s=1e-9",
        "model.drop_rate=0.2",
    ]  # dropout: the RNG state must be restored too
    straight = compose(*quick_overrides(tmp_path / "straight", *args))
    train(straight)

    resumed = compose(*quick_overrides(tmp_path / "resumed", *args))
    kill_after_updates(monkeypatch, kill_at)
    with pytest.raises(Killed):
        train(resumed)
    monkeypatch.undo()
    state = ckpt.load(run_dir(resumed) / "checkpoints" / "last.pt")
    assert state["global_step"] == kill_at and state["batch"] == kill_at % 5
    train(resumed)

    assert_same_weights(weights(straight), weights(resumed))
    assert (run_dir(straight) / "summary.csv").read_text() == (run_dir(resumed) / "summary.csv").read_text()
    a, b = (json.loads((run_dir(c) / "results.json").read_text()) for c in (straight, resumed))
    for key in ("top1", "best_top1", "last_top1", "last_loss", "global_steps", "params", "madds"):
        assert a[key] == b[key], key


def test_finished_run_is_not_trained_again(tmp_path):
    cfg = compose(*quick_overrides(tmp_path, *MLP, "recipe.epochs=1", "limit_train_batches=2", "limit_eval_batches=1"))
    first = train(cfg)
    again = train(cfg)
    assert again["global_steps"] == first["global_steps"] == 2
    assert again["top1"] == first["top1"]


def test_evaluate_reproduces_results(tmp_path):
    from effconv.config import compose as compose_any
    from effconv.evaluate_saved import evaluate_saved

    cfg = compose(*quick_overrides(tmp_path, "recipe.batch_size=16", "limit_train_batches=6"))
    results = train(cfg)
    for which, key in (("best", "top1"), ("last", "last_top1")):
        eval_cfg = compose_any([f"run={run_dir(cfg)}", f"which={which}", "throughput_batches=[2]"], "eval")
        evaluated = evaluate_saved(eval_cfg)
        assert evaluated["top1"] == results[key], which
        assert evaluated["params"] == results["params"] and evaluated["madds"] == results["madds"]
    assert json.loads((run_dir(cfg) / "eval.json").read_text())["images_per_s"]["2"] > 0


def test_init_from_resets_a_classifier_of_another_size(tmp_path):
    source = compose(
        *quick_overrides(tmp_path / "src", *MLP, "recipe.epochs=1", "limit_train_batches=2", "limit_eval_batches=1")
    )
    train(source)
    trained = weights(source)
    target = models.create({"name": "test_tiny_mlp"}, num_classes=4)
    ckpt.init_weights_from(target, run_dir(source), log=lambda m: None)
    state = target.state_dict()
    assert torch.equal(state["features.1.weight"], trained["features.1.weight"])
    assert state["fc.weight"].shape == (4, 32) and not torch.equal(state["fc.weight"], trained["fc.weight"][:4])
    wrong = models.create({"name": "resnet20_cifar"}, num_classes=10)
    with pytest.raises(Exception, match="does not fit resnet20_cifar: expected an effconv resnet20_cifar state dict"):
        ckpt.init_weights_from(wrong, run_dir(source))


def test_lr_scales_with_effective_batch(tmp_path):
    trainer = Trainer(
        compose(
            *quick_overrides(
                tmp_path, "recipe.batch_size=32", "recipe.accum_steps=2", "recipe.lr=0.4", "recipe.lr_ref_batch=256"
            )
        )
    )
    assert math.isclose(trainer.lr.lr, 0.4 * 64 / 256)
    assert "lr 0.4 per 256 images -> 0.1 at effective batch 64" in trainer.lr.note
    assert trainer.updates_per_epoch == math.ceil(len(trainer.loaders.train) / 2)


def test_loss_scaler_step_equals_the_plain_step(tmp_path):
    """The fp16 path's step through timm's NativeScaler (scaled backward, need_update for accumulation, unscale
    before clipping), run here with a CPU GradScaler on fp32: the same weights as the plain step, bit for bit
    (scaling by a power of two is exact). 7 micro-batches, accumulation 3 (windows 3, 3, 1), clipping."""
    from timm.utils import NativeScaler

    def weights_after(scaled: bool) -> dict:
        common = [*MLP, "recipe.epochs=1", "recipe.batch_size=8", "recipe.accum_steps=3", "limit_train_batches=7"]
        root = tmp_path / ("scaled" if scaled else "plain")
        trainer = Trainer(compose(*quick_overrides(root, *common, "limit_eval_batches=1", "recipe.clip_grad=0.5")))
        if scaled:
            trainer.scaler = NativeScaler("cpu")
        trainer.run()
        assert trainer.state.global_step == 3
        return trainer.model.state_dict()

    assert_same_weights(weights_after(False), weights_after(True))
