"""Tables: the sweeper's job list, matching runs to rows, static costs, rendering."""

import json

import pytest

from effconv.report.__main__ import _tables
from effconv.report.__main__ import main as report_main
from effconv.report.collect import runs_of
from effconv.report.columns import COLUMNS, Column, register_column
from effconv.report.render import build_table, to_csv, to_markdown
from effconv.report.spec import load_spec
from effconv.report.summaries import SUMMARIES, register_summary
from hydra_plugins.effconv_table_sweeper.table_sweeper import row_jobs


def test_row_jobs_cross_rows_with_params_and_cli_wins():
    rows = [{"name": "a", "overrides": ["model=x", "model.w=1"]}, {"name": "b", "overrides": ["model=y"]}]
    jobs = row_jobs(rows, [["seed=0", "model.w=2"], ["seed=1", "model.w=2"]])
    assert jobs == [
        ["model=x", "seed=0", "model.w=2"],
        ["model=x", "seed=1", "model.w=2"],
        ["model=y", "seed=0", "model.w=2"],
        ["model=y", "seed=1", "model.w=2"],
    ]
    assert row_jobs(rows, [[]], only="^b$") == [["model=y"]]


def fake_result(experiment, overrides, top1, last=None):
    return {
        "experiment": experiment,
        "overrides": overrides,
        "top1": top1,
        "last_top1": last or top1,
        "ema": False,
        "params_m": 1.0,
        "madds_m": 1.0,
    }


def test_runs_match_rows_by_their_keys_and_pool_seeds():
    spec = load_spec("baselines/digits")
    ours = "+experiment=baselines/digits"
    results = [
        fake_result("baselines/digits", [ours, "model=resnet20_cifar", "seed=0", "recipe.epochs=1"], 90.0),
        fake_result("baselines/digits", [ours, "model=resnet20_cifar", "seed=1"], 92.0),
        fake_result("baselines/digits", [ours, "model=timm", "model.name=resnet18", "seed=0"], 80.0),
        fake_result("other/table", ["model=resnet20_cifar"], 10.0),
    ]
    assert len(runs_of(spec.rows[0], spec, results)) == 2
    assert len(runs_of(spec.rows[1], spec, results)) == 0
    table = build_table(spec, results, static_only=False)
    top1 = table.cells["ResNet-20 (CIFAR form)"]["top1"]
    assert (top1.ours, top1.n) == (91.0, 2) and abs(top1.std - 1.41421356) < 1e-6
    assert table.cells["ResNet-20 (CIFAR form)"]["params"].ours == 0.272474  # static, from the model
    markdown = to_markdown(table)
    assert "91.00 ± 1.41 (n=2)" in markdown and "vs ResNet-20 (CIFAR form)" in markdown
    assert to_csv(table).splitlines()[1].startswith("ResNet-20 (CIFAR form),2,0.272474")


def test_report_cli_static_and_runs(tmp_path, capsys):
    run = tmp_path / "runs" / "baselines" / "digits" / "r0"
    run.mkdir(parents=True)
    (run / "results.json").write_text(
        json.dumps(fake_result("baselines/digits", ["+experiment=baselines/digits", "model=resnet20_cifar"], 95.5))
    )
    assert report_main(["baselines/digits", "--static", "--out", str(tmp_path / "rep")]) == 0
    assert "static columns only" in capsys.readouterr().out
    assert (
        report_main(["baselines/digits", "--output-root", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    )
    out = capsys.readouterr().out
    assert "| ResNet-20 (CIFAR form) | 0.2725 |" in out and "95.50" in out
    assert (tmp_path / "rep" / "baselines_digits.csv").is_file() and (
        tmp_path / "rep" / "baselines_digits.png"
    ).is_file()
    assert report_main(["nope/table"]) == 2


def test_index_links_every_rendered_table(tmp_path):
    from effconv.report.__main__ import write_index

    assert report_main(["baselines/digits", "--static", "--out", str(tmp_path)]) == 0
    index = write_index(["baselines/digits"], tmp_path).read_text()
    assert "## baselines" in index
    title = "Baselines on the digits dataset (example table, no paper)"
    assert f"- [baselines/digits](baselines_digits.md): {title}" in index


def test_registries_refuse_a_second_registration():
    """A column or summary name means one thing: registering it again (e.g. from a second paper's column file)
    is refused instead of silently replacing the first."""
    first = COLUMNS["params_code"]
    with pytest.raises(ValueError, match="report column 'params_code' is registered twice"):
        register_column(Column("params_code", "Params (M)", 4))
    with pytest.raises(ValueError, match="report summary 'mean_param_change' is registered twice"):
        register_summary("mean_param_change")(lambda table: "")
    assert COLUMNS["params_code"] is first and SUMMARIES["mean_param_change"].__name__ == "mean_param_change"


def test_tables_are_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tables = _tables()
    assert "baselines/digits" in tables and "multiception/table5" in tables
