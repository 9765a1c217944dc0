"""Lines computed over a whole table and printed under it (``table.summaries: [<name>, ...]``)."""

from __future__ import annotations

from collections.abc import Callable

SUMMARIES: dict[str, Callable] = {}


def register_summary(name: str):
    def wrap(fn):
        if name in SUMMARIES:
            raise ValueError(f"report summary '{name}' is registered twice")
        SUMMARIES[name] = fn
        return fn

    return wrap


def _mean_change(table, column: str) -> list[float]:
    changes = [table.change_vs_reference(row, column) for row in table.spec.rows if row.relative_to]
    return [c for c in changes if c is not None]


@register_summary("mean_param_change")
def mean_param_change(table) -> str:
    """Average params change of every row against its relative_to row (e.g. Multiception Table V)."""
    changes = _mean_change(table, "params")
    if not changes:
        return "mean params change: no rows with relative_to"
    return f"mean params change vs reference rows: {sum(changes) / len(changes):+.2f}% over {len(changes)} rows"


@register_summary("mean_madds_change")
def mean_madds_change(table) -> str:
    changes = _mean_change(table, "madds")
    if not changes:
        return "mean MAdds change: no rows with relative_to"
    return f"mean MAdds change vs reference rows: {sum(changes) / len(changes):+.2f}% over {len(changes)} rows"
