"""Released weights on the command line: evaluate.py with model= / data=, fine-tuning from them, the report's cell.

The weights are the Multiception ResNet-20 fixture (the authors' layout, ``module.`` keys), evaluated on a
CIFAR-10 copy written by tests/data_formats.py.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import timm
import torch

from effconv import data as data_lib
from effconv.config import compose
from effconv.engine import checkpoint as ckpt
from effconv.evaluate_saved import evaluate_saved
from effconv.report.released import MARK, load_released
from effconv.report.render import build_table, to_markdown
from effconv.report.spec import load_spec
from tests.data_formats import write
from tests.test_authors_checkpoints import users_file

ROW = "CIFAR-10 ResNet-20 Multiception"
MODEL = ["model=resnet20_cifar", "model.conv=multiception"]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The authors' file, a CIFAR-10 copy, and evaluate.py's result for them (eval.json under released/)."""
    root = tmp_path_factory.mktemp("released")
    path, _ = users_file("resnet20_multiception.pt", root)
    write("cifar10", root / "cifar10", per_class=2, eval_per_class=4)
    out = root / "outputs" / "released" / "resnet20" / "eval.json"
    eval_cfg = compose(
        [f"checkpoint={path}", *MODEL, "data=cifar10", f"data.root={root / 'cifar10'}", f"output={out}",
         "throughput_batches=[2]"],
        "eval",
    )  # fmt: skip
    return {"path": path, "root": root, "eval.json": out, "result": evaluate_saved(eval_cfg)}


def test_evaluate_measures_released_weights_named_on_the_command_line(released):
    result = released["result"]
    assert result["weights"] == "multiception" and result["released"] and result["epoch"] is None
    assert result["model_cfg"]["conv"] == "multiception" and result["params"] == 189434
    assert json.loads(released["eval.json"].read_text())["top1"] == result["top1"]
    # the same accuracy from the file loaded through timm and run on the same images
    model = timm.create_model("resnet20_cifar", conv="multiception", pretrained=True,
                              pretrained_cfg_overlay={"file": str(released["path"])}).eval()  # fmt: skip
    cfg = compose(["data=cifar10", f"data.root={released['root'] / 'cifar10'}"])
    loaders = data_lib.build(cfg.data, 8, 8, torch.device("cpu"), 0, with_train=False)
    assert loaders.train is None
    hits = total = 0
    with torch.no_grad():
        for images, labels in loaders.eval.batches(epoch=0):
            hits += int((model(images).argmax(1) == labels).sum())
            total += len(labels)
    assert total == 40 and result["top1"] == pytest.approx(100.0 * hits / total)


def test_report_fills_the_rows_cell_from_the_released_evaluation_and_marks_it(released):
    spec = load_spec("multiception/table1")
    spec.rows = [r for r in spec.rows if "ResNet-20" in r.name]
    spec.rows.append(dataclasses.replace(spec.row(ROW), name="the same network again"))  # filled once: the first
    spec.columns = ["error"]
    table = build_table(spec, [], False, load_released([released["root"] / "outputs" / "released"]))
    assert list(table.released) == [ROW]
    assert table.cells[ROW]["error"].ours == pytest.approx(100.0 - released["result"]["top1"])
    assert table.cells["CIFAR-10 ResNet-20 DSConv"]["error"].ours is None
    markdown = to_markdown(table)
    assert f"| {ROW} | {100.0 - released['result']['top1']:.2f} {MARK} | 7.53 |" in markdown
    assert f"- {MARK} accuracy of the authors' released weights evaluated here" in markdown
    assert f"{ROW}: {released['path'].name}" in markdown
    # a row's own training runs take precedence over released weights
    run = {"experiment": spec.experiment, "overrides": spec.row(ROW).overrides, "top1": 92.5, "last_top1": 92.5}
    table = build_table(spec, [run], False, load_released([released["root"] / "outputs" / "released"]))
    assert not table.released and table.cells[ROW]["error"].ours == pytest.approx(7.5)


def test_fine_tuning_starts_from_released_weights_with_a_new_classifier(released):
    model = timm.create_model("resnet20_cifar", conv="multiception", num_classes=100)
    messages = []
    ckpt.init_weights_from(model, released["path"], log=messages.append)
    expected = timm.create_model("resnet20_cifar", conv="multiception", pretrained=True,
                                 pretrained_cfg_overlay={"file": str(released["path"])})  # fmt: skip
    assert torch.equal(model.features[1].conv1.depthwise[0].weight, expected.features[1].conv1.depthwise[0].weight)
    assert messages == [f"initialised from {released['path']} (raw weights, multiception layout); new classifier: fc"]
