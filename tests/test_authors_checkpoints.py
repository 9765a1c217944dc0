"""The papers' authors' checkpoints load through timm's own mechanism and compute the authors' outputs.

The fixtures (``shared/fixtures/authors_checkpoints``, README there) were written by the authors' code: each
holds what that code saves (``checkpoint``), an input, and the authors' model's outputs on it. A test saves the
``checkpoint`` to a file, as a user holds it, and loads it with ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=...))``. Tolerances are the README's: rel = max|out - ref| / max|ref| at most
1e-9 in float64 and 1e-4 in float32. Tests without fixtures build their files from our own models.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import effconv  # noqa: F401  (registers the models)
from effconv.errors import UserError
from effconv.models import formats
from effconv.models.formats import edgenets
from effconv.models.shakeshake import ShakeBlock

REPO = Path(__file__).resolve().parent.parent
# files written by the authors' own code (README there: formats, knobs, tolerances); kept in the repository so a
# fresh clone (CI) tests every converter
FIXTURE_DIR = REPO / "tests" / "fixtures" / "authors_checkpoints"
FILES = [
    "micronet_m0.pt",
    "micronet_m3.pt",
    "dicenet_0.5.pt",
    "dicenet_1.0.pt",
    "shufflenetv2_1.0.pt",
    "resnet20_multiception.pt",
    "resnet20_standard.pt",
    "seresnet56_multiception.pt",
    "mobilenetv2_stl10_multiception.pt",
    "dicenet_seg_0.5_pascal.pt",
    "dicenet_seg_1.0_city.pt",
]


def fixture_dir() -> Path:
    """``$EFFCONV_AUTHORS_CHECKPOINTS`` (another copy of the files), else ``tests/fixtures/authors_checkpoints``."""
    return Path(os.environ.get("EFFCONV_AUTHORS_CHECKPOINTS") or FIXTURE_DIR)


def users_file(name: str, tmp_path: Path) -> tuple[Path, dict]:
    """The fixture, and its ``checkpoint`` saved alone: the file a user downloads."""
    fixture = torch.load(fixture_dir() / name, map_location="cpu", weights_only=True)
    path = tmp_path / name.replace(".pt", ".pth")
    torch.save(fixture["checkpoint"], path)
    return path, fixture


def relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return ((out.double() - reference).abs().max() / reference.abs().max()).item()


@pytest.mark.parametrize("name", FILES)
def test_authors_checkpoint_matches_the_authors_outputs(name, tmp_path, caplog):
    path, fixture = users_file(name, tmp_path)
    spec = fixture["config"]["effconv"]
    segmentation = "features" in fixture  # levels 1-4 of the classification network: through features_only
    with caplog.at_level(logging.WARNING):
        model = timm.create_model(
            spec["model"],
            pretrained=True,
            pretrained_cfg_overlay={"file": str(path)},
            features_only=segmentation,
            **spec["kwargs"],
        ).eval()
    reference = fixture["features" if segmentation else "logits"]
    for dtype, tolerance in ((torch.float32, 1e-4), (torch.float64, 1e-9)):
        with torch.no_grad():
            out = model.to(dtype)(fixture["input"].to(dtype))
        if segmentation:
            level4 = model.feature_info.reduction().index(16)
            assert model.feature_info.channels()[level4] == reference.shape[1]
            out = out[level4]
        assert out.shape == reference.shape
        assert relative_error(out, reference) <= tolerance, (name, dtype)
    if segmentation:  # what the segmentation file does not hold is left to train, and said so
        assert "level5, head_proj, fc keep their initialisation" in caplog.text
    else:
        assert "keep their initialisation" not in caplog.text


def test_micronet_bare_state_dict_without_prefix_converts_as_the_training_dict(tmp_path):
    _, fixture = users_file("micronet_m0.pt", tmp_path)
    training_dict = fixture["checkpoint"]
    bare = {k.removeprefix("module."): v for k, v in training_dict["state_dict"].items()}
    model = timm.create_model("micronet_m0")
    from_training_dict = formats.convert(formats.read(_saved(training_dict, tmp_path)).default, model)
    from_bare = formats.convert(bare, model)
    assert from_bare.layout == from_training_dict.layout != "effconv"
    assert all(torch.equal(from_bare.state_dict[k], v) for k, v in from_training_dict.state_dict.items())


def _saved(content, tmp_path: Path) -> Path:
    path = tmp_path / "saved.pth"
    torch.save(content, path)
    return path


def test_weights_of_another_variant_stop_with_one_line_naming_the_layout_and_first_key(tmp_path):
    path, _ = users_file("resnet20_standard.pt", tmp_path)
    with pytest.raises(UserError) as error:
        timm.create_model("resnet20_cifar", conv="multiception", pretrained=True,
                          pretrained_cfg_overlay={"file": str(path)})  # fmt: skip
    message = str(error.value)
    assert "\n" not in message and error.value.exit_code == 2
    assert message.startswith(f"checkpoint {path} is a guoqingbao/Multiception ResNet")
    assert "first key that does not fit: 'layer1.0.conv_bn.0.weight' (16, 16, 3, 3)" in message


def test_a_foreign_layout_stops_with_one_line_naming_the_expected_layouts(tmp_path):
    path = _saved({"backbone.stem.weight": torch.zeros(16, 3, 3, 3), "head.weight": torch.zeros(10, 16)}, tmp_path)
    with pytest.raises(UserError) as error:
        timm.create_model("resnet20_cifar", pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    assert str(error.value) == (
        f"checkpoint {path} does not fit resnet20_cifar: expected an effconv resnet20_cifar state dict with the "
        "same knobs or a guoqingbao/Multiception ResNet / SE-ResNet / ShakeNet / MobileNetV2 state dict ('module.' "
        "optional); first key that does not fit: 'backbone.stem.weight' (16, 3, 3, 3) is not in the model"
    )


def test_own_checkpoint_loads_ema_weights_by_default_and_raw_ones_with_the_raw_tag(tmp_path):
    raw, ema = (timm.create_model("resnet20_cifar").state_dict() for _ in range(2))
    path = _saved({"state_dict": raw, "state_dict_ema": ema, "epoch": 3, "config": {"model": {}}}, tmp_path)
    for tag, expected in ((None, ema), ("ema", ema), ("raw", raw)):
        overlay = dict(file=str(path), **({"tag": tag} if tag else {}))
        loaded = timm.create_model("resnet20_cifar", pretrained=True, pretrained_cfg_overlay=overlay).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in expected.items()), tag
    weights = formats.read(path)
    assert weights.epoch == 3 and weights.config == {"model": {}} and weights.default is weights.ema


def test_safetensors_files_load_as_timm_writes_them(tmp_path):
    import safetensors.torch

    source = timm.create_model("resnet20_cifar")
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(source.state_dict(), path)
    loaded = timm.create_model("resnet20_cifar", pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())
    assert formats.read(path).config is None


def test_another_class_count_keeps_the_models_classifier_and_says_so(tmp_path, caplog):
    source = timm.create_model("resnet20_cifar", num_classes=100)
    path = _saved({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path)
    with caplog.at_level(logging.WARNING):
        model = timm.create_model("resnet20_cifar", pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    assert model.fc.out_features == 10 and torch.equal(model.features[0][0].weight, source.features[0][0].weight)
    assert "resnet20_cifar: fc keep their initialisation" in caplog.text


def test_a_classifier_of_the_models_class_count_loads_whatever_class_count_the_cfg_states(tmp_path):
    source = timm.create_model("resnet20_cifar", num_classes=100)
    path = _saved(source.state_dict(), tmp_path)
    # a registered cfg for 10-class weights: timm would drop a classifier whose count differs from it
    overlay = {"file": str(path), "classifier": "fc", "num_classes": 10}
    model = timm.create_model("resnet20_cifar", num_classes=100, pretrained=True, pretrained_cfg_overlay=overlay)
    assert torch.equal(model.fc.weight, source.fc.weight) and model.pretrained_cfg["num_classes"] == 100


def test_dimconv_norm_channels_are_interleaved_per_input_channel():
    # EdgeNets [d0 d1 | h0 h1 | w0 w1] -> ours (d0 h0 w0 d1 h1 w1)
    assert edgenets.interleaved(torch.tensor([0.0, 1, 10, 11, 20, 21])).tolist() == [0, 10, 20, 1, 11, 21]


def _authors_shakenet_state(model) -> dict[str, torch.Tensor]:
    """Our ShakeNet's tensors in the authors' layout (fixtures README; no such file is published): stem ``c_in``,
    blocks ``layer<s>.<i>`` that register ``shortcut`` (conv1, conv2, bn) before ``branch1`` / ``branch2``, a
    shortcut in every block (random ones where widths are equal: the authors' code never calls them),
    classifier ``fc_out``."""
    generator = torch.Generator().manual_seed(0)
    state = {"c_in.weight": model.features[0].weight, "c_in.bias": model.features[0].bias}
    blocks = [m for m in model.features if isinstance(m, ShakeBlock)]
    in_ch = model.features[0].out_channels
    for index, block in enumerate(blocks):
        out_ch = block.branch1[3].out_channels
        shortcut = block.shortcut.state_dict() or {
            "conv1.weight": torch.randn(out_ch // 2, in_ch, 1, 1, generator=generator),
            "conv2.weight": torch.randn(out_ch // 2, in_ch, 1, 1, generator=generator),
            **{f"bn.{k}": v + 0.5 for k, v in nn.BatchNorm2d(out_ch).state_dict().items()},
        }
        prefix = f"layer{index * 3 // len(blocks) + 1}.{index % (len(blocks) // 3)}"
        state |= {f"{prefix}.shortcut.{k}": v for k, v in shortcut.items()}
        for branch in ("branch1", "branch2"):
            state |= {f"{prefix}.{branch}.{k}": v for k, v in getattr(block, branch).state_dict().items()}
        in_ch = out_ch
    return state | {"fc_out.weight": model.fc.weight, "fc_out.bias": model.fc.bias}


@pytest.mark.parametrize("unused_shortcuts", [False, True])
def test_shakenet_in_the_authors_layout_loads_with_or_without_their_unused_shortcuts(unused_shortcuts, tmp_path):
    knobs = {"depth": 14, "base_width": 8, "conv": "multiception"}  # two blocks per stage: the second keeps its width
    source = timm.create_model("shakeshake26_2x96d_cifar", **knobs).eval()
    state = _authors_shakenet_state(source)
    path = _saved({f"module.{k}": v for k, v in state.items()}, tmp_path)
    model = timm.create_model("shakeshake26_2x96d_cifar", unused_shortcuts=unused_shortcuts, pretrained=True,
                              pretrained_cfg_overlay={"file": str(path)}, **knobs).eval()  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    unused = {k: v for k, v in model.state_dict().items() if ".unused_shortcut." in k}
    assert len(unused) == (3 * 7 if unused_shortcuts else 0)  # 3 width-keeping blocks x (2 convs + 5 BN tensors)
    if unused_shortcuts:  # the authors' never-called tensors are held, unchanged
        assert torch.equal(model.features[2].unused_shortcut.conv1.weight, state["layer1.1.shortcut.conv1.weight"])
