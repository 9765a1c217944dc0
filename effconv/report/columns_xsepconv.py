"""XSepConv tables: the paper quotes changes, not absolute numbers (its Table 1-3 values are missing from the
text, reference-architectures §3.1), so its figures are compared as changes against a reference row.

A row's ``paper`` may hold ``madds_change`` (percent) and ``top1_change`` (points) against its
``relative_to`` row; ``table.tolerances.madds_change`` is the allowed gap in percentage points.
"""

from __future__ import annotations

from effconv.report.summaries import register_summary


def _quoted(value: float | None, paper: float | None, unit: str, tolerance: float | None) -> str:
    text = "–" if value is None else f"{value:+.2f}{unit}"
    if paper is not None:
        text += f" (paper {paper:+.2f}{unit}"
        if value is not None and tolerance is not None:
            text += " ✓" if abs(value - paper) <= tolerance else " ✗"
        text += ")"
    return text


@register_summary("changes_vs_reference")
def changes_vs_reference(table) -> str:
    """One line per row with a reference: MAdds change (%) and top-1 change (points), beside the paper's."""
    spec, lines = table.spec, []
    for row in spec.rows:
        if not row.relative_to:
            continue
        parts = []
        if "madds" in table.cells[row.name]:
            madds = table.change_vs_reference(row, "madds")
            tolerance = spec.tolerances.get("madds_change")
            parts.append("MAdds " + _quoted(madds, row.paper.get("madds_change"), "%", tolerance))
        if "top1" in table.cells[row.name]:
            top1 = table.change_vs_reference(row, "top1", relative=False)
            parts.append("top-1 " + _quoted(top1, row.paper.get("top1_change"), " pt", None))
        lines.append(f"{row.name} vs {row.relative_to}: {', '.join(parts)}")
    if not lines:
        return "changes vs reference rows: no rows with relative_to"
    return "changes vs reference rows:" + "".join(f"\n  - {line}" for line in lines)  # a nested list
