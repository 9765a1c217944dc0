"""DiCENet Table 1-3 networks: shapes and gradient flow, and every table row on the paper's FLOPs."""

from __future__ import annotations

import pytest
import timm
import torch

import effconv  # noqa: F401  (registers the models)
from effconv.report.columns import RowContext
from effconv.report.spec import load_spec
from effconv.width_search import find_width

FAMILIES = [
    ("mobilenet_v1", {"conv": "sep"}),
    ("mobilenet_v1", {"conv": "dice"}),
    ("mobilenet_v1", {"conv": "dice", "spatial": "depthwise", "fusion": "pointwise"}),
    ("resnet_dw", {"conv": "sep"}),
    ("resnet_dw", {"conv": "dice"}),
    ("resnet_dw", {"conv": "dice", "first_pointwise": "dimfuse", "spatial": "depthwise"}),
    ("resnet_dw", {"conv": "dice", "fusion": "se"}),
    ("shufflenet_v2", {}),
    ("shufflenet_v2", {"first_pointwise": "dimfuse"}),
    ("dicenet_100", {"fusion": "pointwise_se", "first_pointwise": "dimfuse"}),
]


@pytest.mark.parametrize(
    ("name", "knobs"), FAMILIES, ids=[f"{n}-{'-'.join(k.values()) or 'default'}" for n, k in FAMILIES]
)
def test_family_shapes_and_gradient_flow(name, knobs):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=6, img_size=64, width_mult=0.5, **knobs)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 6)
    out.logsumexp(1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pre_logits.shape == (2, model.get_classifier().in_features)


@pytest.mark.parametrize("table", ["dicenet/table1", "dicenet/table2", "dicenet/table3"])
def test_table_rows_land_on_the_papers_flops(table):
    """Every row within 5 % of the paper's FLOPs at 224 px (160 px where a row says), as the report counts."""
    spec = load_spec(table)
    assert spec.tolerances["madds"] == 0.05
    misses = []
    for row in spec.rows:
        madds = RowContext(spec, row).cost.madds_m
        if abs(madds - row.paper["madds"]) > 0.05 * row.paper["madds"]:
            misses.append(f"{row.name}: {madds:.2f} vs {row.paper['madds']}")
    assert not misses, misses


def test_width_search_lands_on_the_grid_point_closest_to_the_target():
    def cost(width):  # quadratic in width, like a separable network; with steps, like channel rounding
        return 70.71 * (round(width * 32) / 32) ** 2

    width, madds = find_width(cost, 98.114, grid=1 / 32)
    assert width == pytest.approx(38 / 32) and madds == pytest.approx(cost(38 / 32))
    assert all(abs(cost(w / 32) - 98.114) >= abs(madds - 98.114) for w in range(3, 128))


def test_widths_double_exactly_so_strided_dice_stays_grouped():
    """MobileNet / ResNet widths keep exact doublings: a C -> 2C DiCE unit's 3x3 has C groups."""
    model = timm.create_model("mobilenet_v1", conv="dice", width_mult=1.71875, img_size=64)
    for unit in model.features[1:]:
        spatial = unit.fusion.spatial[0]
        assert spatial.groups == spatial.in_channels
