"""MicroNet M0-M3 against the authors' models, the # variants, the baselines and the ablation knobs.

Per-block tables are reference-architectures.md §2.2 ("measured from the instantiated official models at
224"): type, k, stride, in, hidden, out, expand/compress groups, the three activation slots, skip.
"""

from __future__ import annotations

import pytest
import timm
import torch

import effconv  # noqa: F401  (registers the models)
from effconv.models import create
from effconv.models.micronet import LiteBlock, MicroNet, RegularBlock
from effconv.ops.dynamic_relu import DynamicReLU
from effconv.ops.dynamic_shift_max import DynamicShiftMax, StaticShiftMax
from effconv.profile import count_cost
from effconv.threads import torch_threads


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


# type k s in hidden out G_e G_c A1 A2 A3 skip   ("-": absent; head rows: hidden/k/G_c absent)
SPEC_TABLES = {
    "micronet_m0": """
        A 3 2 4 16 8 - 2 - ReLU6 DY(1,2,4) no
        A 3 2 8 32 12 - 4 - DY(2,8,4) DY(1,4,4) no
        A 5 2 12 48 16 - 4 - DY(2,12,8) DY(1,4,4) no
        C 5 1 16 64 32 4 4 DY(2,4,8) DY(2,16,8) DY(1,4,8) no
        C 5 2 32 128 64 8 8 DY(2,8,16) DY(2,16,16) DY(1,8,16) no
        C 3 1 64 256 96 8 8 DY(2,8,16) DY(2,32,16) DY(1,8,12) no
        head - 1 96 - 384 12 - - - DY(1,12,24) no""",
    "micronet_m1": """
        A 3 2 6 24 8 - 2 - ReLU6 DY(1,2,4) no
        A 3 2 8 32 16 - 4 - DY(2,8,4) DY(1,4,4) no
        A 5 2 16 64 16 - 4 - DY(2,16,8) DY(1,4,4) no
        C 5 1 16 96 32 4 4 DY(2,4,12) DY(2,24,12) DY(1,4,8) no
        C 5 2 32 192 64 8 8 DY(2,8,24) DY(2,24,24) DY(1,8,16) no
        C 3 1 64 384 96 8 8 DY(2,8,24) DY(2,48,24) DY(1,8,12) no
        head - 1 96 - 576 12 - - - DY(1,12,36) no""",
    "micronet_m2": """
        A 3 2 8 32 12 - 4 - ReLU6 DY(1,4,4) no
        A 3 2 12 48 16 - 4 - DY(2,12,8) DY(1,4,4) no
        A 3 1 16 64 24 - 4 - DY(2,16,8) DY(1,4,8) no
        C 5 2 24 144 32 6 4 DY(2,6,20) DY(2,24,20) DY(1,4,8) no
        C 5 1 32 192 32 8 4 DY(2,8,12) DY(2,24,12) DY(1,4,4) yes
        C 5 1 32 192 64 8 8 DY(2,8,12) DY(2,24,12) DY(1,8,8) no
        C 5 2 64 384 96 8 8 DY(2,8,24) DY(2,48,24) DY(1,8,12) no
        C 3 1 96 576 128 12 8 DY(2,12,36) DY(2,48,36) DY(1,8,16) no
        head - 1 128 - 768 16 - - - DY(1,16,48) no""",
    "micronet_m3": """
        A 3 2 12 48 16 - 4 - DY(2,12,8) - no
        A 3 2 16 64 24 - 4 - DY(2,16,8) - no
        A 3 1 24 96 24 - 4 - DY(2,24,12) - yes
        C 5 2 24 144 32 6 4 ReLU6 DY(2,24,20) - no
        C 5 1 32 192 32 8 4 ReLU6 DY(2,24,12) - yes
        C 5 1 32 192 64 8 8 ReLU6 DY(2,24,12) - no
        C 5 1 64 384 80 8 8 ReLU6 DY(2,48,24) - no
        C 5 1 80 480 80 10 8 ReLU6 DY(2,48,32) - yes
        C 5 2 80 480 120 10 10 ReLU6 DY(2,48,32) - no
        C 5 1 120 720 120 12 10 ReLU6 DY(2,60,44) - yes
        C 3 1 120 720 144 12 12 ReLU6 DY(2,60,44) - no
        head - 1 144 - 864 12 - - - - no""",
}

# the authors' models as measured (params M, MAdds M at 224, 1000 classes), reference-architectures §2.2
AUTHORS = {
    "micronet_m0": (1.0196, 4.054),
    "micronet_m1": (1.7776, 6.120),
    "micronet_m2": (2.3939, 12.743),
    "micronet_m3": (2.6230, 20.808),
}
PAPER_SHARP = {"micronet_m1s": (1.2, 5.0), "micronet_m2s": (1.4, 11.0), "micronet_m3s": (1.6, 20.0)}


def _spec_rows(text: str) -> list[dict]:
    rows = []
    for line in text.strip().splitlines():
        t, k, s, inp, hidden, out, g_e, g_c, a1, a2, a3, skip = line.split()

        def num(v):
            return None if v == "-" else int(v)

        rows.append(
            {
                "type": t,
                "k": num(k),
                "s": int(s),
                "inp": int(inp),
                "hidden": num(hidden),
                "out": int(out),
                "G_e": num(g_e),
                "G_c": num(g_c),
                "A1": a1,
                "A2": a2,
                "A3": a3,
                "skip": skip == "yes",
            }
        )
    return rows


@pytest.mark.parametrize("name", sorted(SPEC_TABLES))
def test_per_block_tables_match_the_authors_models(name):
    ours = timm.create_model(name).block_table()
    for row in ours:
        row["type"] = "C" if row["type"] == "B" else row["type"]  # Micro-Block-B is a regular block
        row.update({a: "-" if row[a] == "–" else row[a] for a in ("A1", "A2", "A3")})
    assert ours == _spec_rows(SPEC_TABLES[name])


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_params_and_madds_match_the_authors_models(name):
    """Within 1% params and 2% MAdds (they agree to the last printed digit)."""
    cost = count_cost(timm.create_model(name), (3, 224, 224))
    params, madds = AUTHORS[name]
    assert cost.params_m == pytest.approx(params, rel=0.01)
    assert cost.madds_m == pytest.approx(madds, rel=0.02)
    assert round(cost.params_m, 4) == params and round(cost.madds_m, 3) == madds  # exact, as built


@pytest.mark.parametrize("name", sorted(PAPER_SHARP))
def test_sharp_variants_land_within_5_percent(name):
    cost = count_cost(timm.create_model(name), (3, 224, 224))
    params, madds = PAPER_SHARP[name]
    assert cost.params_m == pytest.approx(params, rel=0.05)
    assert cost.madds_m == pytest.approx(madds, rel=0.05)


def test_mobilenetv3_baselines_are_timms_generator_with_a_scaled_stem():
    costs = {
        n: count_cost(timm.create_model(n), (3, 224, 224))
        for n in ("mnv3_small_015", "mnv3_small_020", "mnv3_small_035", "mnv3_small_050")
    }
    madds = {n: round(c.madds_m, 2) for n, c in costs.items()}
    assert madds == {
        "mnv3_small_015": 4.09,
        "mnv3_small_020": 5.54,
        "mnv3_small_035": 12.82,
        "mnv3_small_050": 21.05,
    }
    assert type(timm.create_model("mnv3_small_050")).__name__ == "MobileNetV3"
    assert timm.create_model("mnv3_small_035").conv_stem.out_channels == 8  # scaled, not timm's fixed 16
    # 0.75x is where timm stops fixing the stem: our construction equals timm's registered model there
    from effconv.models.mobilenetv3_baselines import mobilenetv3_small_scaled

    ours, theirs = mobilenetv3_small_scaled(0.75), timm.create_model("mobilenetv3_small_075")
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]


@pytest.mark.parametrize("name", ["micronet_m0", "micronet_m3s", "mnv3_small_015"])
def test_train_step_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create({"name": name}, num_classes=10)
    x = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last).train()
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(4))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    model.eval()
    assert model(x[:1]).shape == (1, 10)


def test_timm_interface():
    model = timm.create_model("micronet_m1", num_classes=7)
    x = torch.randn(2, 3, 64, 64)
    features = model.forward_features(x)
    assert features.shape == (2, model.num_features, 2, 2) and model.num_features == 576
    assert model.forward_head(features, pre_logits=True).shape == (2, 960)
    model.reset_classifier(3)
    assert model.eval()(x).shape == (2, 3) and model.get_classifier()[0].out_features == 3
    model.reset_classifier(0)
    assert model(x).shape == (2, 960)


ACTIVATION_TYPES = {"dyshiftmax": DynamicShiftMax, "static": StaticShiftMax, "dyrelu": DynamicReLU}


@pytest.mark.parametrize("activation", sorted(ACTIVATION_TYPES))
def test_activation_knob_fills_the_dynamic_slots(activation):
    model = MicroNet("m2", activation=activation)
    found = [m for m in model.modules() if isinstance(m, ACTIVATION_TYPES[activation])]
    assert len(found) == 21  # 2 A-blocks x 2 + 1 x 1 (first A: A3 only) + 5 C-blocks x 3 + head
    others = set(ACTIVATION_TYPES.values()) - {ACTIVATION_TYPES[activation]}
    assert not [m for m in model.modules() if isinstance(m, tuple(others))]


def test_ablation_knobs_change_the_structure():
    relu = MicroNet("m2", activation="relu")
    assert not [m for m in relu.modules() if isinstance(m, DynamicShiftMax)]
    assert relu.block_table()[3]["A3"] == "–" and relu.block_table()[3]["A1"] == "ReLU6"
    dense = MicroNet("m2", groups=1, activation="relu")
    assert {r["G_c"] for r in dense.block_table()[:-1]} == {1}
    no_lite = MicroNet("m2", lite_levels=[])
    assert not [b for b in no_lite.blocks if isinstance(b, LiteBlock)]
    assert no_lite.block_table()[0]["hidden"] == 32  # a lite row keeps its hidden width as a regular block
    all_lite = MicroNet("m2", lite_levels="low,high")
    assert not [b for b in all_lite.blocks if isinstance(b, RegularBlock)]
    slots = MicroNet("m2", act_slots=["A2"])
    assert [r["A1"] for r in slots.block_table()[3:8]] == ["ReLU6"] * 5
    assert MicroNet("m2", K=1).block_table()[3]["A2"] == "DY(1,24,20)+ReLU6"  # Table 6: a ReLU when K=1
    assert MicroNet("m2", J=3, K=3).blocks[3].act2.J == 3
    kxk = MicroNet("m2", conv="dw", lite_levels=[])
    assert kxk.blocks[3].depthwise[0].kernel_size == (5, 5)
    wide = MicroNet("m2", width_mult=1.5, **{"lambda": 2.0})  # the YAML name of lambda_
    assert wide.block_table()[-2]["out"] == 192


def test_bad_knobs_are_one_line_user_errors():
    from effconv.errors import UserError

    for knobs, message in (
        ({"activation": "gelu"}, "activation must be"),
        ({"groups": 5}, "cannot have 5 groups"),
        ({"act_slots": ["A4"]}, "act_slots takes"),
        ({"lambda": -1}, "lambda must be"),
        ({"lite_levels": "middle"}, "lite_levels"),
        ({"K": 0}, "J and K"),
    ):
        with pytest.raises(UserError, match=message):
            create({"name": "micronet_m2", **knobs}, num_classes=10)
    with pytest.raises(UserError, match="no knob 'widht_mult'.*width_mult"):
        create({"name": "micronet_m2", "widht_mult": 1.0}, num_classes=10)


@pytest.mark.parametrize(
    "table",
    ["table1", "table2", "table3a", "table3b", "table3c", "table4", "table5", "table6", "table7", "fig5"],
)
def test_experiment_tables_compose(table):
    from effconv.report.spec import load_spec

    spec = load_spec(f"micronet/{table}")
    assert spec.rows and all(r.paper for r in spec.rows)
