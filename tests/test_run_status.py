"""Where runs stand, from their run directories: the sweep summary, the report's ``--status`` and its cells for
failed rows, and the one epoch record every sink receives."""

from __future__ import annotations

import csv
import json
import os
import socket
import time

import tests.helper_models  # noqa: F401
from effconv.config import compose
from effconv.engine.loop import train
from effconv.engine.outputs import Sinks, record_failure
from effconv.engine.status import run_status
from effconv.report.__main__ import main as report_main
from effconv.report.render import build_table, to_markdown
from effconv.report.spec import load_spec
from effconv.sweeps import Job, summarise
from tests.conftest import quick_overrides

EXPERIMENT = "baselines/digits"


def events_file(run_dir, *events) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"type": kind, "time": time.time(), **fields}) for kind, fields in events]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def finished(run_dir, top1: float, overrides: list[str]) -> None:
    events_file(run_dir, ("start", {"pid": os.getpid(), "host": socket.gethostname()}), ("end", {"top1": top1}))
    result = {"experiment": EXPERIMENT, "overrides": overrides, "top1": top1, "last_top1": top1, "ema": False}
    (run_dir / "results.json").write_text(json.dumps(result))


def dead_pid() -> int:
    """A process id that is not running (a child that has exited and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_states_from_run_directories(tmp_path, capsys):
    done, failed, killed, running, absent = (tmp_path / name for name in ("d", "f", "k", "r", "n"))
    finished(done, 91.5, [])
    record_failure(failed, "recipe.lr must be > 0 (got -1.0)", 2, experiment=None, overrides=[])
    host = socket.gethostname()
    events_file(killed, ("start", {"pid": dead_pid(), "host": host}), ("epoch", {"epoch": 3}))
    events_file(running, ("start", {"pid": os.getpid(), "host": host}))
    states = {d.name: run_status(d) for d in (done, failed, killed, running, absent)}
    assert {name: s.state for name, s in states.items()} == {
        "d": "done", "f": "failed", "k": "stopped", "r": "running", "n": "not started",
    }  # fmt: skip
    assert states["d"].detail == "top-1 91.50" and states["f"].detail == "recipe.lr must be > 0 (got -1.0)"
    assert states["k"].detail == "killed at epoch 3 done; the same command resumes it"

    jobs = [Job([], d) for d in (done, failed, killed)] + [Job([], absent, error="RuntimeError: lost")]
    outcome = summarise(jobs, started=time.time() + 1)
    out = capsys.readouterr().out
    assert (outcome.jobs, outcome.unfinished) == (4, 3)
    assert "sweep of 4 jobs: 1 done, 2 failed, 1 stopped" in out
    assert f"  failed  {failed}: recipe.lr must be > 0 (got -1.0)" in out
    assert f"  failed  {absent}: RuntimeError: lost" in out
    assert f"  done    {done}: top-1 91.50, finished before this sweep, not trained again" in out


def test_report_shows_failed_rows_and_lists_the_sweep(tmp_path, capsys):
    """A row whose run failed reads 'failed: <reason>'; --status lists every job (row x seed) and its state."""
    spec = load_spec(EXPERIMENT)
    table_dir = tmp_path / EXPERIMENT
    resnet = compose([f"experiment={EXPERIMENT}", *spec.rows[0].overrides, "seed=0"]).run_name
    mobilenet = compose([f"experiment={EXPERIMENT}", *spec.rows[1].overrides, "seed=1"]).run_name
    finished(tmp_path / resnet, 95.5, [f"experiment={EXPERIMENT}", "model=resnet20_cifar", "seed=0"])
    overrides = [f"experiment={EXPERIMENT}", "model=timm", "model.name=mobilenetv3_small_050", "seed=1"]
    record_failure(tmp_path / mobilenet, "loss became nan at step 3", 3, experiment=EXPERIMENT, overrides=overrides)

    from effconv.report.collect import load_results

    table = build_table(spec, load_results([table_dir]), static_only=False)
    markdown = to_markdown(table)
    assert "runs found: 1 (and 1 failed)" in markdown
    assert "| failed: loss became nan at step 3 |" in markdown and "95.50" in markdown

    assert report_main([EXPERIMENT, "--status", "--output-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{EXPERIMENT}: 6 jobs under {tmp_path}: 1 done, 1 failed, 4 not started"
    listed = {(line.split("  ")[0], line.split()[-1]) for line in out[3:]}
    assert ("ResNet-20 (CIFAR form)", str(tmp_path / resnet)) in listed
    assert any(f"failed: loss became nan at step 3  {tmp_path / mobilenet}" in line for line in out)


def test_one_epoch_record_feeds_every_sink(tmp_path, monkeypatch):
    """The loggers get the keys of the summary.csv columns and of the metrics.jsonl epoch event, spelt alike."""
    logged = []
    monkeypatch.setattr(Sinks, "log", lambda self, record: logged.append(record))
    tiny = ["model=timm", "model.name=test_tiny_mlp", "recipe.epochs=1", "limit_train_batches=2"]
    cfg = compose(quick_overrides(tmp_path, *tiny, "limit_eval_batches=1", "recipe.ema=true"))
    train(cfg)
    run_dir = tmp_path / cfg.run_name
    (epoch_event,) = [e for e in map(json.loads, (run_dir / "metrics.jsonl").open()) if e["type"] == "epoch"]
    with open(run_dir / "summary.csv") as f:
        (row,) = list(csv.DictReader(f))
    (record,) = logged
    assert set(row) == {"epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"} | {
        "eval_ema_loss", "eval_ema_top1", "eval_ema_top5",
    }  # fmt: skip
    assert set(row) <= set(record) and {k: v for k, v in epoch_event.items() if k not in ("type", "time")} == record
    assert float(row["eval_top1"]) == record["eval_top1"] and record["global_step"] == 2
