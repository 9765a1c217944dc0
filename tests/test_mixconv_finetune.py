"""Transfer learning for MixConv Fig. 9: fine-tuning with a new head, the upsampling presets, the recipes."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from effconv import models
from effconv.data import ImageArrays, register_dataset
from effconv.data.transforms import batch_transform
from effconv.engine.checkpoint import checkpoint_of, init_weights_from, load
from effconv.engine.loop import train
from effconv.engine.optim import build_optimizer, build_scheduler
from tests.conftest import compose, quick_overrides

SHAPES_CLASSES = ["horizontal", "vertical", "diagonal"]


@register_dataset("mixconv_test_shapes")
def _shapes(data_cfg, split):
    """A 3-class, 16x16 stand-in for a small target dataset (CIFAR's class count differs from digits' too)."""
    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(48 if split == "train" else 12) % 3
    images = torch.randint(0, 60, (len(labels), 3, 16, 16), generator=generator, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        line = (torch.arange(16) % 4 == 0).to(torch.uint8) * 190
        pattern = [
            line[:, None].expand(16, 16),
            line[None, :].expand(16, 16),
            torch.eye(16, dtype=torch.uint8) * 190,
        ]
        images[i] += pattern[label]
    return ImageArrays(images, labels, SHAPES_CLASSES)


TINY_MODEL = ["model=mobilenetv2_mix", "model.width_mult=0.25", "model.groups=2", "recipe.batch_size=16"]
ONE_STEP = ["recipe.epochs=1", "limit_train_batches=2", "limit_eval_batches=1"]


def test_finetune_from_a_run_gets_a_new_head(tmp_path):
    source = train(compose(*quick_overrides(tmp_path, *TINY_MODEL, *ONE_STEP, "run_name=source")))
    assert source["data"] == "digits"
    run_dir = tmp_path / "source"
    target = [
        *TINY_MODEL,
        *ONE_STEP,
        "data.name=mixconv_test_shapes",
        "data.num_classes=3",
        "data.img_size=32",
        "data.train_transform=pad_crop_flip_upsample",
        "data.eval_transform=upsample",
        "data.crop_padding=2",
        f"model.init_from={run_dir}",
        "run_name=target",
    ]
    cfg = compose(*quick_overrides(tmp_path, *target))

    # the initialisation itself: every tensor but the classifier comes from the source checkpoint
    model = models.create({k: v for k, v in OmegaConf.to_container(cfg.model).items() if k != "init_from"}, 3)
    init_weights_from(model, run_dir, log=lambda message: None)
    weights = load(checkpoint_of(run_dir))["state_dict"]
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert value.shape[0] == 3 and weights[key].shape[0] == 10
        else:
            assert torch.equal(value, weights[key]), key

    result = train(cfg)  # and the loop trains from there on the 3-class data
    assert result["top1"] is not None
    assert load(tmp_path / "target" / "checkpoints" / "last.pt")["state_dict"]["fc.weight"].shape[0] == 3


def test_upsample_presets():
    cfg = compose("data=digits", "data.img_size=40", "data.crop_padding=2", "data.hflip=0.5")
    images = torch.full((4, 3, 16, 16), 77, dtype=torch.uint8)
    images[:, :, :, :8] = 200
    train_fn, eval_fn = (
        batch_transform("pad_crop_flip_upsample", cfg.data, True),
        batch_transform("upsample", cfg.data, False),
    )
    out = eval_fn(images, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 40, 40) and out.dtype == torch.uint8
    assert out[:, :, :, :18].eq(200).all() and out[:, :, :, 22:].eq(77).all()  # bilinear: only the edge blends
    first = train_fn(images, torch.Generator().manual_seed(3))
    assert first.shape == (4, 3, 40, 40) and first.dtype == torch.uint8
    assert torch.equal(first, train_fn(images, torch.Generator().manual_seed(3)))  # a function of the seed


def test_mnasnet_recipe_schedule():
    """Warm-up over 5 epochs, then x0.97 every 2.4 epochs (timm's step schedule, stepped per update)."""
    recipe = compose("recipe=mnasnet").recipe
    assert (recipe.opt, recipe.opt_eps, recipe.weight_decay, recipe.ema_decay) == (
        "rmsproptf",
        1e-3,
        1e-5,
        0.9999,
    )
    optimizer = build_optimizer(torch.nn.Linear(2, 2), recipe, recipe.lr)
    scheduler = build_scheduler(optimizer, recipe, updates_per_epoch=10)
    for step, expected in (
        (50, recipe.lr * 0.97**2),
        (240, recipe.lr * 0.97**10),
        (241, recipe.lr * 0.97**10),
    ):
        scheduler.step_update(step)
        assert abs(optimizer.param_groups[0]["lr"] - expected) < 1e-12
    scheduler.step_update(0)
    assert optimizer.param_groups[0]["lr"] == recipe.warmup_lr
