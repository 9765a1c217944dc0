"""Every network users can select builds, runs forward/backward, gives gradients to every parameter.

Parametrised over effconv/conf/model/*.yaml, so a new model file is tested as soon as its config exists. Each is
built as its config composes it (with the digits dataset's 10 classes) at its config's input size, capped
at 64 pixels for speed unless the config requires more (``test_img_size`` key is not used: models must run
at 32 or 64).
"""

import pytest
import torch

from effconv import models
from effconv.config import group_options, to_plain
from tests.conftest import compose

MODELS = [m for m in group_options("model") if m != "timm"]


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_a_step(name):
    cfg = compose(f"model={name}")
    model_cfg = {k: v for k, v in to_plain(cfg.model).items() if k != "init_from"}
    model = models.create(model_cfg, num_classes=10).train()
    size = min(cfg.data.img_size, 64)
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval is deterministic
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    # timm: pre-logits have head_hidden_size features where a head widens them (MobileNetV3), else num_features
    width = getattr(model, "head_hidden_size", None) or model.num_features
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape[-1] == width


def test_registry_refuses_names_timm_owns():
    with pytest.raises(ValueError, match="already registered"):
        models.register("resnet18", torch.nn.Linear)
