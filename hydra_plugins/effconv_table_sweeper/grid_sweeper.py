"""A Hydra sweeper in which every job runs whatever another does, closing with a summary.

The job list is the basic sweeper's (the Cartesian product of ``hydra.sweeper.params`` and the command-line
sweeps); the table sweeper (table_sweeper.py) makes it from a paper table's rows instead. Jobs go to whatever
launcher is configured (local, submitit_local, SLURM). A failing job records its failure in its run directory
and returns (``effconv.cli.guarded``), so the next job runs; a job whose process died, or a launcher that
fails, is noted too. After the last job, ``effconv.sweeps.summarise`` reads every job's run directory, prints
the jobs done, failed (with their one-line reasons) and unfinished, and the entry point exits non-zero if any
job did not finish.
"""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional  # no PEP 563: Hydra scans this module outside sys.modules

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.effconv_table_sweeper.grid_sweeper.GridSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="effconv")


class GridSweeper(BasicSweeper):
    def job_list(self, arguments: list[str]) -> list[list[str]]:
        """The overrides of every job: ``hydra.sweeper.params`` crossed with the command-line sweeps."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        return self.split_arguments(parser.parse_overrides(self._parse_config() + list(arguments)), None)[0]

    def sweep(self, arguments: list[str]) -> Any:
        from effconv import sweeps

        started = time.time()
        jobs = self.job_list(arguments)
        size = self.max_batch_size or len(jobs)
        self.overrides = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        self.batch_index = 0
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, launched, first = [], [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            try:
                results = self.launcher.launch(batch, initial_job_idx=first)
            except Exception as e:  # e.g. a submitit job whose process died: the others ran or run on
                print(f"error: the launcher failed for jobs {first}..{first + len(batch) - 1}: {e}", flush=True)
                results = [None] * len(batch)
            launched += [self._job(overrides, result) for overrides, result in zip(batch, results)]
            returns.append([r for r in results if r is not None])
            first += len(batch)
        sweeps.summarise(launched, started)
        return returns

    def _job(self, overrides, result):
        """A launched job: its overrides, run directory, and the error that escaped it (if any)."""
        from effconv import sweeps

        error = None
        if result is not None and result.status == JobStatus.FAILED:
            error = f"{type(result._return_value).__name__}: {result._return_value}"
        if result is not None and result.hydra_cfg is not None:
            run_dir = Path(result.hydra_cfg.hydra.runtime.output_dir)
        else:
            run_dir = self._job_dir(overrides)
        return sweeps.Job(list(overrides), run_dir, error)

    def _job_dir(self, overrides) -> Optional[Path]:
        """Where a job that returned nothing had its output directory (as Hydra's ``run_job`` computes it)."""
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            HydraConfig.instance().set_config(cfg)
            return Path(str(OmegaConf.select(cfg, "hydra.sweep.dir"))) / str(
                OmegaConf.select(cfg, "hydra.sweep.subdir")
            )
        except Exception:  # a sub-directory made of job numbers, say: the summary says the directory is unknown
            return None
