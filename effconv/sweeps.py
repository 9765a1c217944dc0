"""A sweep's closing summary, read from its jobs' run directories, and the exit status it gives the sweep.

The sweepers (hydra_plugins/effconv_table_sweeper) hand over every launched job; each job's state is what its
run directory says (``effconv.engine.status``), so the summary is the same whether the jobs ran in this process
(the local launcher), in submitit processes or on SLURM nodes. A job that finished before this sweep began
(run again, and skipped) is listed as such; a job whose error escaped before its run directory said anything
shows that error. ``python train.py -m ...`` then exits 1 if any job did not finish.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from effconv.engine.status import DONE, FAILED_STATE, NOT_STARTED, STOPPED, RunStatus, run_status, totals


@dataclass
class Job:
    overrides: list[str]
    run_dir: Path | None  # None: the sweeper could not tell (a sub-directory made of job numbers, say)
    error: str | None = None  # what escaped the job, if anything did


@dataclass
class Outcome:
    jobs: int = 0
    unfinished: int = 0


LAST = Outcome()  # the sweep this process ran last (read by the entry point for its exit status)


def job_status(job: Job, started: float) -> RunStatus:
    status = run_status(job.run_dir) if job.run_dir else RunStatus(Path("?"), NOT_STARTED, "run directory unknown")
    if status.state in (NOT_STARTED, STOPPED) and job.error:
        return RunStatus(status.run_dir, FAILED_STATE, job.error)
    if status.state == DONE and _older_than(status.run_dir / "results.json", started):
        status.detail = ", ".join(filter(None, [status.detail, "finished before this sweep, not trained again"]))
    return status


def _older_than(path: Path, when: float) -> bool:
    try:
        return path.stat().st_mtime < when
    except OSError:
        return False


def _shown(path: Path) -> str:
    """Relative to the working directory when inside it (outputs/...), else as it is."""
    relative = os.path.relpath(Path(path).absolute())
    return str(path) if relative.startswith("..") else relative


def summarise(jobs: list[Job], started: float) -> Outcome:
    """Print one line per job and the totals; remember them in ``LAST``."""
    statuses = [job_status(job, started) for job in jobs]
    counted = totals([s.state for s in statuses])
    print(f"\nsweep of {len(jobs)} job{'s' * (len(jobs) != 1)}: {counted}", flush=True)
    for s in statuses:
        print(f"  {s.state:<7} {_shown(s.run_dir)}{': ' + s.detail if s.detail else ''}", flush=True)
    LAST.jobs, LAST.unfinished = len(jobs), sum(s.state != DONE for s in statuses)
    if LAST.unfinished:
        print(
            f"{LAST.unfinished} job(s) did not finish: run the same command again to retrain those (finished ones "
            "are not trained again)",
            flush=True,
        )
    return LAST
