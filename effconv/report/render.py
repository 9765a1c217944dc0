"""A paper table with our numbers beside the paper's: Markdown, CSV and a top-1 vs MAdds plot."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from effconv.errors import UserError
from effconv.report.collect import failed, runs_of
from effconv.report.columns import COLUMNS, Cell, RowContext, cell, change
from effconv.report.released import MARK, footnote, released_for
from effconv.report.spec import TableSpec
from effconv.report.summaries import SUMMARIES


@dataclass
class Table:
    spec: TableSpec
    static_only: bool
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)  # row name -> column -> cell
    runs: dict[str, int] = field(default_factory=dict)  # row name -> finished runs found
    failures: dict[str, list[str]] = field(default_factory=dict)  # row name -> reasons of its failed runs
    released: dict[str, list[dict]] = field(default_factory=dict)  # row name -> released weights' evaluations

    @property
    def columns(self):
        return [COLUMNS[c] for c in self.spec.columns]

    def change_vs_reference(self, row, column: str, relative: bool = True, side: str = "ours") -> float | None:
        """``row``'s ``column`` against its ``relative_to`` row: percent (relative) or points; ``side`` picks
        our numbers or the paper's cells. None without a reference row or a value on either side."""
        if not row.relative_to or column not in self.cells[row.name]:
            return None
        value, reference = self.cells[row.name][column], self.cells[row.relative_to][column]
        return change(getattr(value, side), getattr(reference, side), relative)


def build_table(spec: TableSpec, results: list[dict], static_only: bool, released: list[dict] = ()) -> Table:
    unknown = [c for c in spec.columns if c not in COLUMNS]
    if unknown:
        raise UserError(f"table {spec.experiment}: unknown columns {unknown}; known: {sorted(COLUMNS)}")
    table = Table(spec, static_only)
    for row in spec.rows:
        ctx = RowContext(spec, row)
        found = [] if static_only else runs_of(row, spec, results)
        runs = [r for r in found if not failed(r)]
        table.runs[row.name] = len(runs)
        table.failures[row.name] = [r.get("reason", "no reason recorded") for r in found if failed(r)]
        if not static_only and not runs and released:  # effconv.report.released: each fills its first row
            runs = released_for(ctx.cfg, [e for e in released if not any(e in v for v in table.released.values())])
            if runs:
                table.released[row.name] = runs
        table.cells[row.name] = {c.name: cell(c, ctx, runs, spec.metric) for c in table.columns}
    return table


def _num(value, digits):
    return "–" if value is None else f"{value:.{digits}f}"


def _ours(c: Cell, digits: int, failures: list[str] = ()) -> str:
    """Our value (mean ± std over seeds); a run column whose row's runs failed says so."""
    if c.ours is None:
        return "failed: " + failures[0].replace("|", "\\|") if failures else "–"
    text = f"{c.ours:.{digits}f}"
    if c.std is not None:
        text += f" ± {c.std:.{digits}f}"
    text += f" (n={c.n})" if c.n > 1 else ""
    return text + (f" ({len(failures)} failed)" if failures else "")


def _delta(c: Cell, column, tolerance: float | None) -> str:
    d = c.delta(column.relative_delta)
    if d is None:
        return ""
    text = f"{d:+.2f}%" if column.relative_delta else f"{d:+.2f}"
    if tolerance is not None and column.relative_delta:
        text += " ✓" if abs(d) <= 100 * tolerance else " ✗"
    return text


def _relative(table: Table, row) -> str:
    changes = [(name, table.change_vs_reference(row, name)) for name in ("params", "madds")]
    return ", ".join(f"{name} {value:+.2f}%" for name, value in changes if value is not None)


def header(table: Table) -> list[str]:
    cols = ["Row"]
    for c in table.columns:
        cols += [f"{c.header} ours", "paper", "Δ"]
    if any(r.relative_to for r in table.spec.rows):
        cols.append("vs reference")
    return cols


def body(table: Table) -> list[list[str]]:
    lines = []
    with_relative = any(r.relative_to for r in table.spec.rows)
    for row in table.spec.rows:
        line = [row.name]
        for c in table.columns:
            x = table.cells[row.name][c.name]
            failures = table.failures.get(row.name, []) if c.from_run else []
            ours = _ours(x, c.digits, failures)
            if row.name in table.released and c.from_run is not None and x.ours is not None:
                ours += f" {MARK}"
            line += [ours, _num(x.paper, c.digits), _delta(x, c, table.spec.tolerances.get(c.name))]
        if with_relative:
            line.append(f"{_relative(table, row)} vs {row.relative_to}" if row.relative_to else "")
        lines.append(line)
    return lines


def _failed_runs(table: Table) -> str:
    count = sum(len(reasons) for reasons in table.failures.values())
    return f" (and {count} failed)" if count else ""


def to_markdown(table: Table) -> str:
    spec = table.spec
    out = [
        f"### {spec.title}",
        "",
        f"`{spec.experiment}`: "
        + (
            "static columns only (no runs read)."
            if table.static_only
            else f"accuracy is the {spec.metric} epoch of each run, mean ± std over seeds; runs found: "
            f"{sum(table.runs.values())}"
            + _failed_runs(table)
            + (f"; rows from released weights ({MARK}): {len(table.released)}." if table.released else ".")
        ),
        "",
    ]
    cols = header(table)
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "|".join("---" for _ in cols) + "|")
    out += ["| " + " | ".join(line) + " |" for line in body(table)]
    notes = list(spec.notes) + [SUMMARIES[name](table) for name in spec.summaries]
    notes += [f"{row.name}: {row.note}" for row in spec.rows if row.note]
    if table.released:
        notes.append(footnote(table.released))
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = [c.name for c in table.columns]
    writer.writerow(["row", "runs"] + [f"{n}_{k}" for n in names for k in ("ours", "std", "paper")])
    for row in table.spec.rows:
        cells = table.cells[row.name]
        writer.writerow(
            [row.name, table.runs[row.name]] + [v for n in names for v in (cells[n].ours, cells[n].std, cells[n].paper)]
        )
    return buffer.getvalue()


def plot(table: Table, path: Path) -> bool:
    """Top-1 (or error) vs MAdds: our runs filled, the paper's numbers hollow. False if nothing to plot."""
    acc = next((c for c in ("top1", "error") if c in table.spec.columns), None)
    if acc is None or "madds" not in table.spec.columns:
        return False
    points = [(r.name, table.cells[r.name]["madds"], table.cells[r.name][acc]) for r in table.spec.rows]
    if not any(a.ours is not None or a.paper is not None for _, _, a in points):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, madds, a in points:
        if madds.ours is None:
            continue
        if a.ours is not None:
            ax.errorbar(madds.ours, a.ours, yerr=a.std or 0, fmt="o", color="C0", capsize=3)
            ax.annotate(name, (madds.ours, a.ours), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if a.paper is not None:
            ax.plot(madds.paper if madds.paper is not None else madds.ours, a.paper, "o", mfc="none", color="C1")
    ax.plot([], [], "o", color="C0", label="ours")
    ax.plot([], [], "o", mfc="none", color="C1", label="paper")
    ax.set_xlabel("MAdds (M)")
    ax.set_ylabel(COLUMNS[acc].header)
    ax.set_title(table.spec.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
