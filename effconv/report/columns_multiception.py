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


def _pairs(table, column: str):
    """(row cell, reference cell) of ``column`` for every row that has a reference row."""
    return [
        (table.cells[row.name][column], table.cells[row.relative_to][column])
        for row in table.spec.rows
        if row.relative_to and column in table.cells[row.name]
    ]


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return fmean(values) if values else None


def _relative_change(value, reference) -> float | None:
    return None if value is None or not reference else 100.0 * (value - reference) / reference


def _difference(value, reference) -> float | None:
    return None if value is None or reference is None else value - reference


def _describe(what: str, pairs, change, unit: str) -> str:
    ours = [change(row.ours, ref.ours) for row, ref in pairs]
    paper = [change(row.paper, ref.paper) for row, ref in pairs]
    parts = []
    for label, values in (("ours", ours), ("from the paper's cells", paper)):
        mean = _mean(values)
        counted = sum(v is not None for v in values)
        parts.append(f"{label} {mean:+.2f}{unit} ({counted} pairs)" if mean is not None else f"{label} –")
    return f"mean {what} change, Multiception vs standard: " + "; ".join(parts)


@register_summary("multiception_param_reduction")
def param_reduction(table) -> str:
    """Mean relative params change over the pairs, ours and from the paper's printed params."""
    return _describe("params", _pairs(table, "params"), _relative_change, "%")


@register_summary("multiception_error_change")
def error_change(table) -> str:
    """Mean error change in points over the pairs, ours (needs runs) and from the paper's printed errors."""
    return _describe("top-1 error", _pairs(table, "error"), _difference, " points")
