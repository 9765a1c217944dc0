"""timm's model checks (its tests/test_models.py) on every registered model, at the size of its pretrained cfg.

As timm's test does, a check runs at the cfg's input size capped where timm caps it (backward, TorchScript
and fx at 128 px, feature extraction at 96 px): the 32/56/96 px networks run at their own size, the 224 px
ImageNet networks at the cap (their DiCE units resample, as at any other size). The preprocessing each cfg
declares is checked against conf/data/<dataset>.yaml, every tag included.
"""

import copy
import math

import pytest
import timm
import torch
from omegaconf import OmegaConf
from timm.models import FeatureGraphNet, MobileNetV3

import effconv  # noqa: F401  (registers the models)
from effconv.config import CONF_DIR
from effconv.errors import UserError
from effconv.models import our_models
from effconv.models.pretrained_cfgs import PAPER_NORMALISATION

# the project's networks (tests register helpers of their own, e.g. tests/helper_models.py)
MODELS = [n for n in our_models() if timm.models.model_entrypoint(n).__module__.startswith("effconv.")]
# one model per code path (family, head, activation slots): for a check whose cost is tracing the same code
FAMILIES = [
    "dicenet_050",
    "shufflenet_v2",
    "resnet_dw",
    "micronet_m0",
    "micronet_m3",
    "mnv3_small_050",
    "mobilenet_v1",
    "mobilenetv1_mix",
    "mobilenetv2_mix",
    "mobilenetv2_stl10",
    "mobilenetv3_small_xsep",
    "resnet20_cifar",
    "seresnet56_cifar",
    "shakeshake26_2x96d_cifar",
]
TAGGED = [n for n in timm.list_models(include_tags=True) if n.split(".")[0] in MODELS]
BACKWARD_SIZE = JIT_SIZE = FX_SIZE = 128  # timm's TARGET_BWD_SIZE, TARGET_JIT_SIZE, TARGET_FWD_FX_SIZE
FEATURE_SIZE = 96  # timm's TARGET_FFEAT_SIZE


def _input(name: str, cap: int | None = None, batch: int = 1) -> torch.Tensor:
    channels, *size = timm.get_pretrained_cfg_value(name, "input_size")
    return torch.randn(batch, channels, *(min(s, cap or s) for s in size))


def test_every_model_and_tag_has_a_pretrained_cfg():
    assert len(MODELS) == 32 and len(TAGGED) == 40
    entry_modules = {timm.models.model_entrypoint(n).__module__ for n in MODELS}
    assert entry_modules == {timm.models.model_entrypoint(n).__module__ for n in FAMILIES}
    assert timm.list_models("resnet50_cifar", include_tags=True) == [
        "resnet50_cifar.cifar10",
        "resnet50_cifar.cifar100",
        "resnet50_cifar.imagenet32",
        "resnet50_cifar.stl10",
    ]


@pytest.mark.parametrize("name", TAGGED)
def test_cfg_preprocessing_is_the_datasets(name):
    """mean/std/size/classes of every tag are those conf/data/<tag>.yaml trains with (paper overrides aside)."""
    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    model, dataset = name.split(".")
    paper = "multiception" if cfg["paper_name"].startswith("Depthwise Multiception") else None
    data = OmegaConf.load(CONF_DIR / "data" / f"{dataset}.yaml")
    mean, std = PAPER_NORMALISATION.get((paper, dataset), (tuple(data.mean), tuple(data.std)))
    assert cfg["mean"] == pytest.approx(mean) and cfg["std"] == pytest.approx(std)
    assert cfg["input_size"] == (3, data.img_size, data.img_size) and cfg["num_classes"] == data.num_classes
    assert not (cfg.get("url") or cfg.get("hf_hub_id") or cfg.get("file"))  # no hosted weights
    assert cfg["paper_ids"] and cfg["first_conv"] and cfg["classifier"]


def test_multiception_stl10_uses_the_authors_normalisation():
    experiment = OmegaConf.load(CONF_DIR / "experiment" / "multiception" / "table2.yaml")
    assert PAPER_NORMALISATION[("multiception", "stl10")] == (tuple(experiment.data.mean), tuple(experiment.data.std))


@pytest.mark.parametrize("name", [n for n in TAGGED if not n.endswith(".imagenet")])
def test_small_input_tags_build_for_their_dataset(name):
    """A tag sets the default classes and the preprocessing; the final map is the cfg's pool_size."""
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    assert model.num_classes == cfg["num_classes"] and cfg["tag"] == name.split(".")[1]
    data_cfg = timm.data.resolve_model_data_config(model)
    assert data_cfg["input_size"] == cfg["input_size"] and data_cfg["mean"] == cfg["mean"]
    with torch.no_grad():
        assert model.forward_features(_input(name)).shape[2:] == cfg["pool_size"]


@pytest.mark.parametrize("name", MODELS)
def test_forward_head_and_cfg(name):
    """timm's test_model_forward and test_model_default_cfgs."""
    model = timm.create_model(name).eval()
    cfg = model.default_cfg
    x = _input(name)
    state = model.state_dict()
    classifiers = cfg["classifier"] if isinstance(cfg["classifier"], tuple) else (cfg["classifier"],)
    assert all(f"{c}.weight" in state for c in (*classifiers, cfg["first_conv"]))
    assert model.in_chans == cfg["input_size"][0] and model.num_classes == cfg["num_classes"]
    assert timm.data.resolve_model_data_config(model)["mean"] == cfg["mean"]
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, cfg["num_classes"]) and torch.isfinite(out).all()
        features = model.forward_features(x)
        assert features.shape[1:] == (model.num_features, *cfg["pool_size"])
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.shape == (1, model.head_hidden_size)
        model.set_grad_checkpointing()
        torch.testing.assert_close(model(x), out, rtol=1e-4, atol=1e-5)
        model.reset_classifier(0)
        assert model.num_classes == 0
        torch.testing.assert_close(model(x), pre_logits)
        if not isinstance(model, MobileNetV3):  # timm's EARLY_POOL_MODELS: its head conv follows the pool
            model.reset_classifier(0, "")
            assert model(x).shape[2:] == cfg["pool_size"]
            unpooled = timm.create_model(name, num_classes=0, global_pool="").eval()
            assert unpooled(x).shape[2:] == cfg["pool_size"]


def _assert_trains(model, x):
    """A batch of 2 through ``model`` (42 classes) and back: every parameter gets a gradient."""
    out = model(x)
    assert out.shape == (2, 42)
    out.mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name):
    """timm's test_model_backward: 42 classes, batch 2, train mode."""
    _assert_trains(timm.create_model(name, num_classes=42).train(), _input(name, BACKWARD_SIZE, batch=2))


@pytest.mark.parametrize("name", MODELS)
def test_features_and_intermediates(name):
    """timm's test_model_forward_features and test_model_forward_intermediates, with exact map sizes, and
    forward_intermediates' options (indices int / list / negative, stop_early, intermediates_only), pruning."""
    x = _input(name, FEATURE_SIZE)
    features = timm.create_model(name, features_only=True).eval()
    channels, reductions = features.feature_info.channels(), features.feature_info.reduction()
    assert len(channels) >= 3 and reductions == sorted(reductions)
    expected_shapes = [(c, *(math.ceil(s / r) for s in x.shape[2:])) for c, r in zip(channels, reductions)]
    model = timm.create_model(name).eval()
    with torch.no_grad():
        assert [o.shape[1:] for o in features(x)] == expected_shapes
        final, taps = model.forward_intermediates(x)
        assert [t.shape[1:] for t in taps] == expected_shapes
        torch.testing.assert_close(final, model.forward_features(x))
        selections = {2: taps[-2:], (0, -1): [taps[0], taps[-1]]}
        for indices, expected in selections.items():
            got = model.forward_intermediates(x, indices=list(indices) if isinstance(indices, tuple) else indices)[1]
            assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
        assert torch.equal(early[0], taps[1])
        pruned = copy.deepcopy(model)
        assert pruned.prune_intermediate_layers([1]) == [1] and pruned.num_features == channels[1]
        assert torch.equal(pruned.forward_features(x), taps[1])


@pytest.mark.parametrize("name", MODELS)
def test_torchscript(name):
    """timm's test_model_forward_torchscript: the scripted model computes what the eager one does."""
    with timm.layers.set_layer_config(scriptable=True):
        model = timm.create_model(name).eval()
    x = _input(name, JIT_SIZE)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_fx_forward_and_backward(name):
    """timm's test_model_forward_fx / test_model_backward_fx, with torch.fx.symbolic_trace itself (no leaf
    lists needed): the traced model computes what the eager one does, and trains."""
    model = timm.create_model(name).eval()
    x = _input(name, FX_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x), rtol=1e-4, atol=1e-5)
    model.reset_classifier(42)
    _assert_trains(torch.fx.symbolic_trace(model.train()), _input(name, FX_SIZE, batch=2))


@pytest.mark.parametrize("name", FAMILIES)
def test_fx_and_hook_feature_extractors(name):
    """timm's other extractors find the levels feature_info names and give what forward_intermediates gives:
    feature_cls='fx' (torchvision's extractor with timm's leaves, traced in train and eval mode: 2 s of
    tracing a DiCENet, so one model per code path) and 'hook'."""
    extractors = {}
    for feature_cls in ("fx", "hook", None):
        torch.manual_seed(0)  # the same weights in each
        kwargs = {"features_only": True, "feature_cls": feature_cls} if feature_cls else {}
        extractors[feature_cls] = timm.create_model(name, **kwargs).eval()
    assert isinstance(extractors["fx"], FeatureGraphNet)
    x = _input(name, FEATURE_SIZE)
    with torch.no_grad():
        expected = extractors[None].forward_intermediates(x, intermediates_only=True)
        torch.testing.assert_close(extractors["fx"](x), expected)
        torch.testing.assert_close(extractors["hook"](x), expected)


def test_pretrained_needs_a_file_and_loads_one(tmp_path):
    with pytest.raises(UserError, match="no hosted weights"):
        timm.create_model("resnet20_cifar", pretrained=True)
    source = timm.create_model("resnet20_cifar")
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    loaded = timm.create_model(
        "resnet20_cifar", pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "weights.pth")}
    )
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))


def test_reset_classifier_keeps_an_eval_model_in_eval():
    """MicroNet's new BatchNorm1d classifier used to come back in train mode: batch 1 failed, batch 2 used batch
    statistics. Every new module takes the model's mode, so each image's logits are its own."""
    model = timm.create_model("micronet_m0").eval()
    model.reset_classifier(5)
    assert not any(m.training for m in model.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:1]), model(x)[:1])


def test_global_pool_and_drop_path_knobs():
    """global_pool at construction and in reset_classifier; drop_path_rate puts timm's DropPath on residual
    branches, rising linearly to the given rate."""
    model = timm.create_model("resnet20_cifar", global_pool="catavgmax", num_classes=0).eval()
    assert model.head_hidden_size == 128 and model(torch.randn(1, 3, 32, 32)).shape == (1, 128)
    model.reset_classifier(10, "max")
    assert model.get_classifier().in_features == 64
    drop = [
        m.drop_prob
        for m in timm.create_model("resnet20_cifar", drop_path_rate=0.2).modules()
        if isinstance(m, timm.layers.DropPath)
    ]
    assert drop == pytest.approx([0.2 * i / 8 for i in range(1, 9)])  # the first block's rate is 0: no module
    with pytest.raises(ValueError, match="grouped head"):
        timm.create_model("dicenet_050", global_pool="catavgmax")


def test_dicenet_features_at_sizes_it_was_not_built_for():
    """DiCE units resample (paper Sec. 3.3): a backbone built for 224 px (or 64 px) gives every level at any
    input size, non-square included, at ceil(size / stride)."""
    for img_size, size in ((224, (80, 112)), (64, (96, 72))):
        backbone = timm.create_model("dicenet_050", img_size=img_size, features_only=True).eval()
        with torch.no_grad():
            levels = backbone(torch.randn(1, 3, *size))
        assert [lvl.shape[1:] for lvl in levels] == [
            (c, math.ceil(size[0] / r), math.ceil(size[1] / r))
            for c, r in zip(backbone.feature_info.channels(), backbone.feature_info.reduction())
        ]
