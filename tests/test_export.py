"""export.py: every registered network exports to ONNX and ONNX Runtime agrees with eager PyTorch; a trained
run exports end to end (ONNX, ExportedProgram) with export.json; bad inputs are one line, exit status 2.

AOTInductor packages compile C++ (minutes per network on two cores): they are covered by the acceptance
command in the README, not here.
"""

from __future__ import annotations

import json
import re

import onnx
import pytest
import timm
import torch

import effconv  # noqa: F401  (registers the models)
import tests.helper_models  # noqa: F401
from effconv import cli
from effconv.config import compose as compose_any
from effconv.deploy import inference_path
from effconv.deploy.artefacts import export_program, load_runner, write_artefact
from effconv.engine.loop import train
from effconv.errors import UserError
from effconv.export import compare, export_saved
from effconv.models import our_models
from tests.conftest import REPO, compose, quick_overrides, run_cli

# the resolution each network is built for: CIFAR-style networks 32, MobileNetV2-STL10 96, the rest 224
SMALL_INPUTS = {"mobilenetv3_small_xsep": 32, "mobilenetv2_stl10": 96}


def native_size(name: str) -> int:
    return 32 if name.endswith("_cifar") else SMALL_INPUTS.get(name, 224)


@pytest.mark.parametrize("name", [n for n in our_models() if not n.startswith("test_")])
def test_every_registered_model_exports_to_onnx(name, tmp_path):
    """The inference path exported by the dynamo exporter (fixed batch 2, no graph optimiser: the fastest
    faithful settings) and run by ONNX Runtime, against the original model in eager PyTorch."""
    torch.manual_seed(0)
    size = native_size(name)
    model = timm.create_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, size, size)
    program = export_program(inference_path(model, (3, size, size), "onnx"), x, False, False)
    path = tmp_path / f"{name}.onnx"
    write_artefact(program, "onnx", path, optimize=False)
    with torch.no_grad():
        differences = compare(model, load_runner(path, "onnx"), [x, torch.randn(2, 3, size, size)])
    assert differences["max_rel_diff"] <= 1e-5, differences


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    overrides = ["model=timm", "model.name=test_tiny_mlp", "recipe.epochs=1", "limit_train_batches=2", "run_name=mlp"]
    train(compose(*quick_overrides(root / "runs", *overrides)))
    return root / "runs" / "mlp"


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_a_run_exports_verified_on_its_evaluation_images(mlp_run, fmt):
    record = export_saved(compose_any([f"run={mlp_run}", f"format={fmt}", "latency_batches=[1]"], "export"))
    path = mlp_run / "export" / f"test_tiny_mlp.{'onnx' if fmt == 'onnx' else 'pt2'}"
    assert record["path"] == str(path) and path.is_file() and record["file_bytes"] == path.stat().st_size
    assert record["max_rel_diff"] <= 1e-5 and record["top1_agreement"] == 100.0
    assert record["images"] >= 256 and record["verified_on"] == f"{record['images']} evaluation images of digits"
    assert json.loads((mlp_run / "export" / "export.json").read_text())[path.name]["format"] == fmt
    assert record["input_shape"] == ["batch", 3, 32, 32]
    x = torch.randn(5, 3, 32, 32)  # a batch size the export never saw
    if fmt == "onnx":
        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["logits"]
    assert load_runner(path, fmt)(x).shape == (5, 10)


def test_a_checkpoint_with_a_model_given_exports(mlp_run, tmp_path):
    """checkpoint=<file> model=<name>: our checkpoint (verified on its dataset) and a bare state dict (random)."""
    model = ["model=timm", "model.name=test_tiny_mlp", "format=onnx", "latency_batches=[1]", "verify_images=64"]
    ours = export_saved(compose_any([f"checkpoint={mlp_run}/checkpoints/best.pt", *model], "export"))
    assert ours["verified_on"] == "64 evaluation images of digits" and ours["max_rel_diff"] <= 1e-5
    bare = tmp_path / "weights.pt"
    torch.save({"state_dict": torch.load(mlp_run / "checkpoints" / "best.pt")["state_dict"]}, bare)
    record = export_saved(compose_any([f"checkpoint={bare}", *model, "num_classes=10", "img_size=32"], "export"))
    assert record["verified_on"] == "64 random inputs" and record["max_rel_diff"] <= 1e-5
    assert record["path"] == str(tmp_path / "export" / "test_tiny_mlp_32.onnx")


def test_the_authors_checkpoint_exports_through_the_layout_converters(tmp_path):
    """checkpoint=<the authors' file> model=<name>: converted as evaluate.py converts it, exported, verified."""
    from tests.test_authors_checkpoints import users_file

    path, _ = users_file("resnet20_multiception.pt", tmp_path)
    overrides = [f"checkpoint={path}", "model=resnet20_cifar", "model.conv=multiception", "num_classes=10"]
    record = export_saved(compose_any([*overrides, "img_size=32", "format=onnx", "latency_batches=[1]",
                                       "verify_images=64"], "export"))  # fmt: skip
    assert record["max_rel_diff"] <= 1e-5 and record["top1_agreement"] == 100.0
    assert record["verified_on"] == "64 random inputs" and record["source"] == str(path)


EXPORT = {
    "export-unknown-format": (["model=micronet_m0", "format=tflite"], r"unknown format 'tflite'; available: aoti"),
    "export-batch": (["model=micronet_m0", "batch=0"], r"batch must be dynamic or a positive integer \(got 0\)$"),
    "export-weights": (["model=micronet_m0", "weights=best"], r"weights must be raw or ema \(got best\)$"),
    "export-nothing": ([], r"give run=<run dir>, checkpoint=<file> or model=<name> \(random weights\)$"),
    "export-ema-without-ema": (["run={run}", "weights=ema"], r"{run}/checkpoints/best\.pt holds no EMA weights"),
    "export-run-without-checkpoints": (["run={empty}"], r"{empty}/checkpoints/best\.pt does not exist; the run has"),
    "export-dynamic-size-dicenet": (
        ["model=dicenet_050", "dynamic_hw=true"],
        r"dicenet_050 cannot be exported with dynamic height/width: .*; export once per deployment resolution",
    ),
    "export-out-suffix": (["model=micronet_m0", "out=model.bin"], r"out=model\.bin: a onnx artefact's file name"),
}


def _fill(text: str, paths: dict, escape: bool) -> str:
    for key, value in paths.items():
        text = text.replace("{" + key + "}", re.escape(str(value)) if escape else str(value))
    return text


@pytest.mark.parametrize("case", list(EXPORT))
def test_export_input_is_refused_in_one_line(mlp_run, tmp_path, case):
    paths = {"run": mlp_run, "empty": tmp_path}
    overrides, pattern = EXPORT[case]
    overrides = [_fill(o, paths, escape=False) for o in overrides]
    with pytest.raises(UserError) as error:
        cli.preflight(overrides, "export")
        export_saved(compose_any(overrides, "export"))
    assert "\n" not in str(error.value) and error.value.exit_code == 2
    assert re.match(_fill(pattern, paths, escape=True), str(error.value)), str(error.value)


def test_a_missing_runtime_package_is_one_line(monkeypatch):
    import importlib.util

    from effconv.deploy.artefacts import check_format

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name))
    with pytest.raises(UserError, match=r"^format=onnx needs the package\(s\) onnxruntime: pip install onnxruntime"):
        check_format("onnx")


def test_export_catalogue_is_documented():
    documented = (REPO / "docs" / "errors.md").read_text()
    assert not [case for case in EXPORT if f"`{case}`" not in documented]
    assert "`export-missing-package`" in documented


def test_export_entry_point_prints_one_line_and_exits_2():
    done = run_cli("export.py", "model=micronet_m0", "format=tflite", timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: unknown format 'tflite'; available: aoti, onnx, pt2")
