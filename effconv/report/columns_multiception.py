"""Depthwise Multiception Table V summaries: the average params and error change, Multiception vs standard.

The paper's last row of Table V averages its per-row "Param Diff" (relative params change) and "Error Diff"
(error change in points) columns over the eight dataset/model pairs. ``mean_param_change`` computes the first
from our counts only; these summaries give each average from our numbers *and* from the paper's own cells, so
the report shows whether the paper's averages follow from its printed figures and where ours depart from them.
A pair is a row with ``relative_to`` (the Multiception row) and its reference row (the standard one).
"""

from __future__ import annotations

from statistics import fmean

from effconv.report.summaries import register_summary


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return fmean(values) if values else None


def _describe(table, what: str, column: str, relative: bool, unit: str) -> str:
    pairs = [row for row in table.spec.rows if row.relative_to and column in table.cells[row.name]]
    parts = []
    for label, side in (("ours", "ours"), ("from the paper's cells", "paper")):
        values = [table.change_vs_reference(row, column, relative, side) for row in pairs]
        mean = _mean(values)
        counted = sum(v is not None for v in values)
        parts.append(f"{label} {mean:+.2f}{unit} ({counted} pairs)" if mean is not None else f"{label} –")
    return f"mean {what} change, Multiception vs standard: " + "; ".join(parts)


@register_summary("multiception_param_reduction")
def param_reduction(table) -> str:
    """Mean relative params change over the pairs, ours and from the paper's printed params."""
    return _describe(table, "params", "params", True, "%")


@register_summary("multiception_error_change")
def error_change(table) -> str:
    """Mean error change in points over the pairs, ours (needs runs) and from the paper's printed errors."""
    return _describe(table, "top-1 error", "error", False, " points")
