"""A Hydra sweeper that launches the rows of a paper table.

Hydra's basic sweeper only forms Cartesian products, but a paper table is a list of rows (architectures at
widths that differ per architecture, ablation steps, ...). An experiment file selects this sweeper with
``override /hydra/sweeper: table`` and lists its rows under ``table.rows``, each with the overrides that
make it; ``hydra.sweeper.params`` (seeds, say) and the command-line overrides are crossed with every row,
exactly as the basic sweeper would do. Command-line values win over a row's value for the same key.
``hydra.sweeper.only=<regex>`` launches the rows whose name matches.

Only the job list is ours: jobs go to whatever launcher is configured (local, submitit_local, SLURM).
"""

import re
from dataclasses import dataclass
from typing import Any, Optional  # no PEP 563: Hydra scans this module outside sys.modules

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf


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


class TableSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict] = None, only: Optional[str] = None):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.only = only

    def sweep(self, arguments: list[str]) -> Any:
        rows = OmegaConf.select(self.config, "table.rows")
        if not rows:
            raise HydraException("hydra/sweeper=table needs table.rows (set by an experiment file)")
        rows = OmegaConf.to_container(rows, resolve=False)
        # let the basic sweeper expand params and command-line sweeps into combinations, then add the rows
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        crossed = self.split_arguments(parser.parse_overrides(self._parse_config() + list(arguments)), None)[0]
        jobs = row_jobs(rows, crossed, self.only)
        if not jobs:
            raise HydraException(f"no table row matches hydra.sweeper.only={self.only!r}")
        size = self.max_batch_size or len(jobs)
        self.overrides = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        self.batch_index = 0
        return self._launch_all()

    def _launch_all(self):
        from pathlib import Path

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, first = [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=first)
            for r in results:
                _ = r.return_value  # re-raises a failed job's error, as the basic sweeper does
            first += len(batch)
            returns.append(results)
        return returns
