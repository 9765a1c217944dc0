"""Host synchronisations per training update (issue 17, finding 2), counted on the CPU.

benchmarks/host_syncs.py counts the calls that make a GPU's host wait: reads of device tensors (item, float,
bool, tolist...), blocking host-to-device copies and tensors built on the host for the device. The loop is
counted on the CPU (reads of its own tensors); the in-memory data path and evaluation on the meta device, the
stand-in for a GPU, where a copy from the host is visible. In steady state an update makes none: the epoch's
loss sum stays on the device and the augmentation's random draws go over in non-blocking copies (pinned on
CUDA). Only the finiteness check (every 50 micro-batches) and the progress bar (every 10 updates, on a
terminal) read a value.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.host_syncs import HostSyncs
from effconv.data.memory import InMemoryLoader
from effconv.data.transforms import batch_transform
from effconv.engine.evaluation import evaluate
from effconv.engine.loop import Trainer
from effconv.engine.runtime import Runtime
from tests.conftest import compose, quick_overrides
from tests.data_helpers import data_cfg

META = torch.device("meta")


def test_training_updates_read_nothing_from_the_device(tmp_path, monkeypatch):
    """resnet20_cifar on digits with EMA and gradient clipping: updates 2-11 of 12 make no host read."""
    cfg = compose(
        *quick_overrides(
            tmp_path,
            "recipe.epochs=1",
            "recipe.batch_size=8",
            "limit_train_batches=12",
            "limit_eval_batches=1",
            "recipe.ema=true",
            "recipe.clip_grad=5.0",
        )
    )
    counter, marks = HostSyncs("cpu"), []
    take_step = Trainer._after_update

    def step(self):
        take_step(self)
        marks.append(len(counter.where))

    monkeypatch.setattr(Trainer, "_after_update", step)
    with counter:
        Trainer(cfg).run()
    assert len(marks) == 12
    steady = counter.where[marks[0] : marks[10]]  # the last update holds the end-of-epoch finiteness check
    assert steady == [], steady


@pytest.mark.parametrize("preset", ["pad_crop_flip", "flip", "random_resized_crop_flip"])
def test_in_memory_batches_do_not_block_on_copies(preset):
    cfg = data_cfg("digits", train_transform=preset, img_size=16, hflip=0.5)
    images = torch.randint(0, 256, (40, 3, 20, 20), dtype=torch.uint8)
    loader = InMemoryLoader(
        images,
        torch.arange(40) % 10,
        8,
        batch_transform(preset, cfg, train=True),
        cfg.mean,
        cfg.std,
        META,
        seed=0,
        train=True,
        memory_format=torch.channels_last,
    )
    with HostSyncs(META) as counter:
        batches = list(loader.batches(epoch=1))
    assert len(batches) == 5 and batches[0][0].device == META
    assert counter.where == []


class _MetaLoader:
    def batches(self, epoch: int):
        for _ in range(6):
            yield torch.empty(4, 3, 8, 8, device=META), torch.zeros(4, dtype=torch.int64, device=META)


def test_evaluation_builds_nothing_on_the_host_per_batch():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).to(META)
    with HostSyncs(META) as counter:
        evaluate(model, _MetaLoader(), Runtime(META))
    # once per evaluation, not per batch: the image count goes over with the sums, which are read back once
    assert dict(counter.counts) == {"torch.tensor on the device": 1, "tolist": 1}, counter.where
