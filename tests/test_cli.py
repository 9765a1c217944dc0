"""Entry points as a user runs them: bad input is one line on stderr and a non-zero exit."""

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=nope"], "error: unknown model 'nope'; available: "),
        (["data.root=/nonexistent"], "error: digits: data.root=/nonexistent is not a directory"),
        (["recipe.epochs=-1"], "error: recipe.epochs must be >= 1 (got -1)"),
        (["recipe.epchs=3"], "error: Could not override 'recipe.epchs'"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    done = run_cli("train.py", *args, f"output_root={tmp_path}", timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert "Traceback" not in done.stderr


def test_evaluate_needs_a_run(tmp_path):
    done = run_cli("evaluate.py", f"run={tmp_path}/missing__a=1,b=2", timeout=120)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: run={tmp_path}/missing__a=1,b=2 is not a directory; pass a run directory under outputs/"
    )
