"""Training on a generated CIFAR-10 copy beats chance clearly: images and labels are read in step."""

from __future__ import annotations

from effconv.engine.loop import train
from effconv.threads import torch_threads
from tests.data_formats import write


def test_short_training_on_cifar10_copy_beats_chance(tmp_path, train_cfg):
    written = write("cifar10", tmp_path / "cifar", per_class=60, eval_per_class=20)
    cfg = train_cfg(
        "data=cifar10",
        f"data.root={written.root}",
        "model=resnet20_cifar",
        "+model.widths=[8,16,16]",
        "recipe.batch_size=32",
        "recipe.lr=0.8",
        "recipe.epochs=3",
        "seed=1",
        "channels_last=false",
    )
    with torch_threads(1):  # a tiny net gains nothing from a thread team, which spin-waits on a busy machine
        results = train(cfg)
    assert results["last_top1"] >= 60.0, results  # chance is 10%
