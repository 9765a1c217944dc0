"""Table columns: how each is computed (statically from the model, or from runs) and printed.

Static columns build the row's model from its composed config and need no training; run columns read
results.json files. ``@register_column`` adds a kind (a paper issue may need latency or error columns); a
name is registered once (a second registration is refused, as for models and units).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from effconv import models
from effconv.config import compose, model_knobs
from effconv.profile import Cost, count_cost
from effconv.report.collect import mean_std, metric_of
from effconv.report.spec import Row, TableSpec

# values derived from a row's model (costs, latencies, widths), keyed by (model identity, input size, name):
# rows and tables that build the same model share them
_ROW_VALUES: dict[tuple, Any] = {}


@dataclass
class RowContext:
    """One row: its composed config; its model, and the values derived from it, built on first use."""

    spec: TableSpec
    row: Row

    @functools.cached_property
    def cfg(self) -> DictConfig:
        return compose([f"experiment={self.spec.experiment}", *self.row.overrides])

    @property
    def input_size(self) -> tuple[int, int, int]:
        if self.row.input_size:
            return tuple(self.row.input_size)
        return (3, self.cfg.data.img_size, self.cfg.data.img_size)

    @functools.cached_property
    def model_key(self) -> str:
        return json.dumps([model_knobs(self.cfg.model), self.cfg.data.num_classes], sort_keys=True)

    def model(self):
        """A freshly built model (callers may move it to a device or switch its mode)."""
        return models.create(model_knobs(self.cfg.model), self.cfg.data.num_classes)

    def memo(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per model identity and input size (the one cache of per-row values)."""
        key = (self.model_key, self.input_size, name)
        if key not in _ROW_VALUES:
            _ROW_VALUES[key] = compute()
        return _ROW_VALUES[key]

    @property
    def cost(self) -> Cost:
        return self.memo("cost", lambda: count_cost(self.model(), self.input_size))


def change(value: float | None, reference: float | None, relative: bool = True) -> float | None:
    """``value`` against ``reference``: percent change (costs) or difference in points (accuracy)."""
    if value is None or reference is None:
        return None
    if relative:
        return 100.0 * (value - reference) / reference if reference else None
    return value - reference


@dataclass
class Column:
    name: str
    header: str
    digits: int
    static: Callable[[RowContext], float | None] | None = None  # value without training
    from_run: Callable[[dict, str], float | None] | None = None  # value of one run (mean/std over seeds)
    relative_delta: bool = False  # delta to the paper as a percentage (costs) or in points (accuracy)


COLUMNS: dict[str, Column] = {}


def register_column(column: Column) -> Column:
    if column.name in COLUMNS:
        raise ValueError(f"report column '{column.name}' is registered twice")
    COLUMNS[column.name] = column
    return column


register_column(Column("params", "Params (M)", 4, static=lambda ctx: ctx.cost.params_m, relative_delta=True))
register_column(Column("madds", "MAdds (M)", 2, static=lambda ctx: ctx.cost.madds_m, relative_delta=True))
# our counts again, beside the authors' released models as measured (reference-architectures §1.2, §2.2) where
# the paper's printed figures are rounded or inconsistent: a row's ``paper`` value holds that measurement
register_column(
    Column("params_code", "Params vs authors' code (M)", 4, static=lambda ctx: ctx.cost.params_m, relative_delta=True)
)
register_column(
    Column("madds_code", "MAdds vs authors' code (M)", 3, static=lambda ctx: ctx.cost.madds_m, relative_delta=True)
)
register_column(Column("top1", "Top-1 (%)", 2, from_run=lambda r, metric: metric_of(r, metric, "top1")))
register_column(Column("top5", "Top-5 (%)", 2, from_run=lambda r, metric: metric_of(r, metric, "top5")))
register_column(
    Column(
        "error",
        "Top-1 error (%)",
        2,
        from_run=lambda r, metric: (
            None if metric_of(r, metric, "top1") is None else 100.0 - metric_of(r, metric, "top1")
        ),
    )
)


@dataclass
class Cell:
    ours: float | None
    std: float | None
    n: int
    paper: float | None

    def delta(self, relative: bool) -> float | None:
        return change(self.ours, self.paper, relative)


def cell(column: Column, ctx: RowContext, runs: list[dict], metric: str) -> Cell:
    paper = ctx.row.paper.get(column.name)
    if column.static is not None:
        return Cell(column.static(ctx), None, 0, paper)
    mean, std, n = mean_std([column.from_run(r, metric) for r in runs])
    return Cell(mean, std, n, paper)


def _load_extensions() -> None:
    """Paper-specific columns and summaries live in effconv/report/columns_<paper>.py, imported here."""
    import importlib
    import pkgutil

    import effconv.report as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("columns_"):
            importlib.import_module(f"{package.__name__}.{module.name}")


_load_extensions()
