"""Table specs: the ``table:`` node of ``effconv/conf/experiment/<paper>/<table>.yaml`` as data.

A row names the overrides that make it (the same ones the table sweeper launches) and the paper's own
numbers; ``relative_to`` adds a column of params/MAdds change against another row (e.g. the
depth-wise baseline of the same network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from effconv.config import compose, group_options
from effconv.errors import UserError, unknown_choice


@dataclass
class Row:
    name: str
    overrides: list[str]
    paper: dict[str, Any] = field(default_factory=dict)
    relative_to: str | None = None
    input_size: list[int] | None = None  # for static costs; default (3, data.img_size, data.img_size)
    note: str | None = None


@dataclass
class TableSpec:
    experiment: str
    title: str
    rows: list[Row]
    columns: list[str] = field(default_factory=lambda: ["params", "madds", "top1"])
    metric: str = "best"  # best | last: which epoch's accuracy of each run
    notes: list[str] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)  # names in effconv.report.summaries.SUMMARIES
    plot: bool = True
    tolerances: dict[str, float] = field(default_factory=dict)  # column -> allowed |relative delta|, shown
    sweep_keys: list[str] = field(default_factory=list)
    sweep_params: dict[str, str] = field(default_factory=dict)  # hydra.sweeper.params, crossed with every row

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise UserError(f"table {self.experiment}: no row named '{name}'")


def override_key(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~")


def load_spec(experiment: str) -> TableSpec:
    options = group_options("experiment")
    if experiment not in options:
        raise unknown_choice("experiment", experiment, options, "; see effconv/conf/experiment/")
    from hydra.core.hydra_config import HydraConfig

    cfg = compose([f"experiment={experiment}"])
    params = OmegaConf.to_container(HydraConfig.get().sweeper.get("params") or {}, resolve=False)
    table = cfg.get("table")
    if not table or not table.get("rows"):
        raise UserError(f"experiment {experiment} has no table.rows; it is not a table")
    data = OmegaConf.to_container(table, resolve=False)
    rows = [Row(**r) for r in data.pop("rows")]
    spec = TableSpec(experiment=experiment, rows=rows, sweep_params={k: str(v) for k, v in params.items()}, **data)
    names = [r.name for r in rows]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise UserError(f"table {experiment}: duplicate row names {sorted(duplicated)}")
    keys = []
    for r in rows:
        keys += [override_key(o) for o in r.overrides if override_key(o) not in keys]
    spec.sweep_keys = [k for k in keys if k != "seed"]
    return spec
