"""MixConv networks: MobileNetV1/V2 kernel studies and MixNet-S/M/L costs, knobs, parity with timm, tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.efficientnet import EfficientNet
from torch import nn

from effconv import models
from effconv.config import CONF_DIR
from effconv.errors import UserError
from effconv.ops.mixconv import MixConv
from effconv.profile import count_cost
from effconv.report.spec import load_spec
from tests.conftest import compose


def _load_by_order(ours: nn.Module, theirs: nn.Module) -> None:
    """Copy timm's state into ours tensor by tensor: same layer order, same shapes (asserted)."""
    own, their = ours.state_dict(), theirs.state_dict()
    assert len(own) == len(their)
    for (key, mine), (other_key, value) in zip(own.items(), their.items()):
        assert mine.shape == value.shape, (key, other_key)
    ours.load_state_dict(dict(zip(own, their.values())))


def _timm_mobilenetv2(kernel_token: str) -> nn.Module:
    """timm's MobileNetV2 (_gen_mobilenet_v2 in efficientnet.py), every depth-wise kernel = kernel_token."""
    arch = [
        ["ds_r1_k3_s1_c16"],
        ["ir_r2_k3_s2_e6_c24"],
        ["ir_r3_k3_s2_e6_c32"],
        ["ir_r4_k3_s2_e6_c64"],
        ["ir_r3_k3_s1_e6_c96"],
        ["ir_r3_k3_s2_e6_c160"],
        ["ir_r1_k3_s1_e6_c320"],
    ]
    arch = [[s.replace("_k3_", f"_k{kernel_token}_") for s in stage] for stage in arch]
    return EfficientNet(
        decode_arch_def(arch),
        num_features=1280,
        stem_size=32,
        round_chs_fn=round_channels,
        act_layer=nn.ReLU6,
    )


@pytest.mark.parametrize(
    "ours, knobs, theirs",
    [
        ("mobilenetv2_mix", {}, lambda: timm.create_model("mobilenetv2_100")),
        ("mobilenetv1_mix", {}, lambda: timm.create_model("mobilenetv1_100")),
        ("mobilenetv2_mix", {"groups": 4}, lambda: _timm_mobilenetv2("3.5.7.9")),
        ("mobilenetv2_mix", {"kernel": 9}, lambda: _timm_mobilenetv2("9")),
    ],
)
def test_equals_timm_with_its_weights(ours, knobs, theirs):
    """Same params, same MAdds (ours through MixConv.madds, timm's through nn.Conv2d), same outputs."""
    model, reference = models.create({"name": ours, **knobs}, 1000).eval(), theirs().eval()
    _load_by_order(model, reference)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)
    mine, its = count_cost(model, (3, 64, 64)), count_cost(reference, (3, 64, 64))
    assert (mine.params, mine.madds) == (its.params, its.madds)


def test_mobilenet_costs_at_224():
    v2 = count_cost(models.create({"name": "mobilenetv2_mix"}, 1000))
    assert v2.params == 3_504_872 and round(v2.madds_m, 1) == 300.8
    v1 = count_cost(models.create({"name": "mobilenetv1_mix"}, 1000))
    # paper Table 2: 4.2 M / 575 M, within 2 %
    assert abs(v1.params_m / 4.2 - 1) < 0.02
    assert abs(v1.madds_m / 575 - 1) < 0.02


@pytest.mark.parametrize(
    "name, params, madds",
    [("mixnet_s", 4_134_606, 239.17), ("mixnet_m", 5_014_382, 339.17), ("mixnet_l", 7_329_252, 555.25)],
)
def test_mixnet_costs_through_configs(name, params, madds):
    cfg = compose(f"model={name}", "data=imagenet")
    knobs = {k: v for k, v in OmegaConf.to_container(cfg.model).items() if k != "init_from"}
    cost = count_cost(models.create(knobs, cfg.data.num_classes), (3, 224, 224))
    assert cost.params == params and round(cost.madds_m, 2) == madds


def _depthwise(model) -> list[MixConv]:
    return [m for m in model.modules() if isinstance(m, MixConv)]


def test_single_layer_replacement():
    base = models.create({"name": "mobilenetv2_mix"}, 10)
    for layer, channels in ((0, 32), (1, 96), (16, 960)):
        one = models.create({"name": "mobilenetv2_mix", "kernel": 9, "layer": layer}, 10)
        assert sum(p.numel() for p in one.parameters()) - sum(p.numel() for p in base.parameters()) == channels * 72
        assert [i for i, m in enumerate(_depthwise(one)) if m.kernel_sizes != [3]] == [layer]
    assert len(_depthwise(base)) == 17 and len(_depthwise(models.create({"name": "mobilenetv1_mix"}, 10))) == 13


def test_dilation_only_in_stride_one_layers():
    model = models.create({"name": "mobilenetv2_mix", "groups": 4, "dilated": True}, 10)
    for m in _depthwise(model):
        taps = [w.shape[-1] for w in m.weights]
        assert taps == ([3, 5, 7, 9] if m.stride == 2 else [3, 3, 3, 3])
        assert m.dilations == ([1, 1, 1, 1] if m.stride == 2 else [1, 2, 3, 4])


def test_exponential_split_in_the_network():
    model = models.create({"name": "mobilenetv1_mix", "groups": 4, "split": "exp"}, 10)
    assert _depthwise(model)[0].splits == [16, 8, 4, 4]  # 32 channels: the paper's example


@pytest.mark.parametrize(
    "knobs, message",
    [
        ({"groups": 4, "kernel": 7}, "mixes kernels"),
        ({"layer": 17}, "layer must be"),
        ({"split": "log"}, "split must be"),
        ({"kernel": 4}, "odd"),
        ({"groups": 0}, "groups must be"),
        ({"groups": 9, "width_mult": 0.25}, "cannot split 8 channels into 9"),
    ],
)
def test_impossible_knobs_are_one_line_errors(knobs, message):
    with pytest.raises(UserError, match=message):
        models.create({"name": "mobilenetv2_mix", **knobs}, 10)


@pytest.mark.parametrize(
    "name, knobs",
    [
        ("mobilenetv1_mix", {"groups": 3, "split": "exp", "width_mult": 0.5}),
        ("mobilenetv2_mix", {"groups": 2, "dilated": True, "width_mult": 0.5}),
        ("mobilenetv2_mix", {"kernel": 9, "layer": 5, "width_mult": 0.35, "impl": "padded"}),
    ],
)
def test_forward_backward_reaches_every_parameter(name, knobs):
    model = models.create({"name": name, **knobs}, 10).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _row_model(table: str, overrides: list[str]) -> dict:
    """A row's model config: its model=<file> plus its model.<knob>=<value> overrides, parsed by Hydra."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    group = next(o.value() for o in parsed if o.key_or_group == "model")
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{group}.yaml"))
    cfg.update({o.key_or_group.split(".", 1)[1]: o.value() for o in parsed if o.key_or_group.startswith("model.")})
    return cfg


def test_every_table_row_builds():
    """Every row of the six MixConv tables names a buildable model (knobs validated at construction)."""
    built = set()
    for table in ("fig1", "fig4", "fig5", "fig6", "table2", "table3"):
        for row in load_spec(f"mixconv/{table}").rows:
            cfg = _row_model(table, row.overrides)
            if cfg["name"] not in models.our_models():
                assert timm.is_model(cfg["name"]), row.name
                continue
            knobs = {k: v for k, v in cfg.items() if k != "init_from"}
            key = repr(sorted(knobs.items()))
            if key not in built:
                built.add(key)
                assert isinstance(models.create(knobs, 10), nn.Module), row.name
    assert len(built) == 77  # fig1 12 + fig4 10 MixConv + fig5 35 + fig6 20 (+exp, +dilated; equal = fig4)


def test_table2_paper_columns_cover_the_mixnets():
    spec = load_spec("mixconv/table2")
    papers = {r.name: r.paper for r in spec.rows}
    assert papers["MixNet-S"]["madds"] == 256 and papers["MixNet-M"]["madds"] == 360
    assert papers["MixNet-L"] == {"params": 7.3, "madds": 565, "madds_se_bn": 565, "top1": 78.9, "top5": 94.2}


def test_table3_rows_start_from_table2_runs(tmp_path):
    spec = load_spec("mixconv/table3")
    cfg = compose("+experiment=mixconv/table2", "model=mixnet_m", "seed=0", f"output_root={tmp_path}")
    table2_run = str(Path(cfg.output_root) / cfg.run_name)
    row = spec.row("MixNet-M CIFAR-10")
    finetune = compose("+experiment=mixconv/table3", *row.overrides, "seed=0", f"output_root={tmp_path}")
    assert OmegaConf.to_container(finetune.model, resolve=True)["init_from"] == table2_run
    assert finetune.data.img_size == 224 and finetune.data.train_transform == "pad_crop_flip_upsample"
    assert "init_from" not in finetune.run_name  # a path does not name the run
