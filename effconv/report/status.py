"""``python -m effconv.report <paper>/<table> --status``: every job of a table's sweep, and where it stands.

The jobs are those ``python train.py -m experiment=<paper>/<table>`` launches (each row crossed with
``hydra.sweeper.params``, e.g. the seeds); each job's run directory is the one that command gives it
(``<output root>/<paper>/<table>/<run name>``), and its state (done / running / failed / stopped / not
started) is what that directory says (``effconv.engine.status``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from effconv.config import compose
from effconv.engine.status import RunStatus, run_status, totals
from effconv.report.spec import TableSpec
from hydra_plugins.effconv_table_sweeper.table_sweeper import row_jobs


@dataclass
class TableJob:
    row: str
    crossed: list[str]  # the job's own values of hydra.sweeper.params (seed=0, ...)
    status: RunStatus


def table_jobs(spec: TableSpec, output_root: Path) -> list[TableJob]:
    params = [f"{key}={value}" for key, value in spec.sweep_params.items()]
    crossed = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]
    jobs = []
    for row in spec.rows:
        for job in row_jobs([{"name": row.name, "overrides": row.overrides}], crossed):
            run_name = compose([f"experiment={spec.experiment}", *job]).run_name
            own = [o for o in job if o.split("=", 1)[0] in spec.sweep_params]
            jobs.append(TableJob(row.name, own, run_status(Path(output_root) / run_name)))
    return jobs


def status_lines(spec: TableSpec, output_root: Path) -> str:
    from effconv.engine.results import format_table

    jobs = table_jobs(spec, output_root)
    rows = [[job.row, " ".join(job.crossed) or "-", job.status.line(), str(job.status.run_dir)] for job in jobs]
    header = f"{spec.experiment}: {len(jobs)} jobs under {output_root}: {totals([job.status.state for job in jobs])}"
    return header + "\n" + format_table(rows, ["row", "job", "status", "run directory"])
