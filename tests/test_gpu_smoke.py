"""benchmarks/gpu_smoke.py runs on the CPU (issue 17), so it cannot rot before a GPU runs it.

The suite runs four of its sections (the other three take ~45 s more on 2 cores: Trainer updates of four
models in two precisions, a dynamo compile, a benchmark subprocess); the whole CPU run,
``python -m benchmarks.gpu_smoke --device cpu --quick``, is the issue's acceptance command (< 2 minutes).
"""

from __future__ import annotations

from benchmarks import gpu_smoke

SECTIONS = ["env", "deterministic", "gpu_decode", "resume"]


def test_smoke_sections_run_on_the_cpu_and_fill_the_report(tmp_path):
    out = tmp_path / "smoke.md"
    status = gpu_smoke.main(["--device", "cpu", "--quick", "--sections", ",".join(SECTIONS), "--out", str(out)])
    report = out.read_text()
    assert status == 0, report
    assert report.startswith("# GPU smoke run, CPU counterpart (not a GPU result)")
    assert [line for line in report.splitlines() if line.startswith("## ")] == [
        "## Environment",
        "## deterministic=true twice",
        "## data.gpu_decode true vs false",
        "## SIGUSR1 mid-epoch, resumed vs uninterrupted",
    ]
    assert "**failed**" not in report and "**NO**" not in report
    checks = [line for line in report.splitlines() if line.startswith("Checks: ")]
    assert checks and checks[0].startswith("Checks: 8 of 8 hold"), checks
