"""A Hydra sweeper that launches the rows of a paper table.

Hydra's basic sweeper only forms Cartesian products, but a paper table is a list of rows (architectures at
widths that differ per architecture, ablation steps, ...). An experiment file selects this sweeper with
``override /hydra/sweeper: table`` and lists its rows under ``table.rows``, each with the overrides that
make it; ``hydra.sweeper.params`` (seeds, say) and the command-line overrides are crossed with every row,
exactly as the basic sweeper would do. Command-line values win over a row's value for the same key.
``hydra.sweeper.only=<regex>`` launches the rows whose name matches.

Only the job list is ours; running the jobs, a failing row that lets the others run, and the closing summary
are the grid sweeper's (grid_sweeper.py).
"""

import re
from dataclasses import dataclass
from typing import Optional  # no PEP 563: Hydra scans this module outside sys.modules

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf

from hydra_plugins.effconv_table_sweeper.grid_sweeper import GridSweeper


@dataclass
class TableSweeperConf:
    _target_: str = "hydra_plugins.effconv_table_sweeper.table_sweeper.TableSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[dict[str, str]] = None
    only: Optional[str] = None  # regex over row names


ConfigStore.instance().store(group="hydra/sweeper", name="table", node=TableSweeperConf, provider="effconv")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def row_jobs(rows: list[dict], crossed: list[list[str]], only: Optional[str] = None) -> list[list[str]]:
    """Each row's overrides + each crossed combination; a crossed value replaces the row's for its key."""
    jobs = []
    for row in rows:
        if only and not re.search(only, str(row.get("name", ""))):
            continue
        for combo in crossed:
            replaced = {_key(o) for o in combo}
            jobs.append([o for o in row.get("overrides", []) if _key(o) not in replaced] + list(combo))
    return jobs


class TableSweeper(GridSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict] = None, only: Optional[str] = None):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.only = only

    def job_list(self, arguments: list[str]) -> list[list[str]]:
        rows = OmegaConf.select(self.config, "table.rows")
        if not rows:
            raise HydraException("hydra/sweeper=table needs table.rows (set by an experiment file)")
        rows = OmegaConf.to_container(rows, resolve=False)
        jobs = row_jobs(rows, super().job_list(arguments), self.only)
        if not jobs:
            raise HydraException(f"no table row matches hydra.sweeper.only={self.only!r}")
        return jobs
