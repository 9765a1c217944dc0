"""Render paper tables, or a list of runs.

    python -m effconv.report <paper>/<table> [...] [--static] [--runs DIR ...] [--out DIR]
    python -m effconv.report <paper>/<table> --status                each job of the table's sweep and its state
    python -m effconv.report --all --static --out docs/results      every table, static columns
    python -m effconv.report outputs/<run> [...]                     a plain table of runs

Params/MAdds are computed from the models (no training needed); accuracy comes from the results.json files
of the table's runs under ``outputs/<paper>/<table>/`` (and ``--runs``); a row whose runs failed shows
``failed: <reason>`` (their failed.json); a row without runs shows the evaluation of the authors' released weights
under ``outputs/released/`` (and ``--runs``) when there is one, marked † (effconv/report/released.py). Markdown
goes to stdout and, with the CSV and a top-1 vs MAdds plot, to ``--out`` (default ``outputs/reports``).
``--status`` lists every job of the table's sweep (rows x ``hydra.sweeper.params``) as done / running / failed /
stopped / not started, with its run directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from effconv.config import CONF_DIR, group_options
from effconv.errors import UserError


def _tables() -> list[str]:
    """Experiments that define a table (found through the package, whatever the working directory)."""
    return [e for e in group_options("experiment") if "table:" in (CONF_DIR / "experiment" / f"{e}.yaml").read_text()]


def render_experiment(name: str, static: bool, roots: list[Path], out: Path) -> str:
    from effconv.report.collect import load_results
    from effconv.report.released import load_released
    from effconv.report.render import build_table, plot, to_csv, to_markdown
    from effconv.report.spec import load_spec

    spec = load_spec(name)
    results = [] if static else load_results([r / name for r in roots] + roots[1:])
    released = [] if static else load_released([roots[0] / "released", *roots[1:]])
    table = build_table(spec, results, static, released)
    markdown = to_markdown(table)
    stem = out / name.replace("/", "_")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(markdown)
    stem.with_suffix(".csv").write_text(to_csv(table))
    if spec.plot and plot(table, stem.with_suffix(".png")):
        markdown += f"\n![{spec.title}]({stem.with_suffix('.png').name})\n"
        stem.with_suffix(".md").write_text(markdown)
    return markdown


def write_index(names: list[str], out: Path) -> Path:
    """``<out>/README.md``: every rendered table, by paper, under the title its markdown starts with."""
    lines = [
        "# Paper tables, static columns",
        "",
        "Regenerate: `python -m effconv.report --all --static --out docs/results`.",
        "",
    ]
    for paper in sorted({n.split("/")[0] for n in names}):
        lines += [f"## {paper}", ""]
        for name in sorted(n for n in names if n.split("/")[0] == paper):
            stem = name.replace("/", "_")
            title = (out / f"{stem}.md").read_text().splitlines()[0].lstrip("# ").strip()
            lines.append(f"- [{name}]({stem}.md): {title} ([csv]({stem}.csv))")
        lines.append("")
    index = out / "README.md"
    index.write_text("\n".join(lines))
    return index


def render_runs(paths: list[Path]) -> str:
    from effconv.engine.results import format_table
    from effconv.report.collect import failed, load_results

    found = load_results(paths)
    if not found:
        raise UserError(f"no results.json under {', '.join(map(str, paths))}")
    results = [r for r in found if not failed(r)]
    failures = [f"failed: {Path(r['_path']).parent}: {r.get('reason')}" for r in found if failed(r)]
    header = ["run", "model", "data", "params (M)", "MAdds (M)", "top-1", "top-5", "epochs"]
    rows = [
        [
            Path(r["_path"]).parent.name,
            r["model"],
            r["data"],
            f"{r['params_m']:.4f}",
            f"{r['madds_m']:.2f}",
            f"{r['top1']:.2f}" if r.get("top1") is not None else "–",
            f"{r['top5']:.2f}" if r.get("top5") is not None else "–",
            f"{r['epochs_done']}/{r['epochs']}",
        ]
        for r in results
    ]
    return "\n".join([format_table(rows, header)] * bool(rows) + failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m effconv.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", nargs="*", help="<paper>/<table> experiment names, or run directories")
    parser.add_argument("--static", action="store_true", help="params/MAdds only; read no runs")
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="more directories to search for runs")
    parser.add_argument("--output-root", type=Path, default=Path("outputs"), help="where train.py wrote runs")
    parser.add_argument("--out", type=Path, default=Path("outputs/reports"), help="where .md/.csv/.png go")
    parser.add_argument("--all", action="store_true", help="every experiment that has a table")
    parser.add_argument("--status", action="store_true", help="each job of the table's sweep: done, failed, ...")
    args = parser.parse_args(argv)
    try:
        targets = _tables() if args.all else args.targets
        if not targets:
            raise UserError(
                "name a table (<paper>/<table>), a run directory, or pass --all; tables: " + ", ".join(_tables())
            )
        run_dirs = [Path(t) for t in targets if Path(t).is_dir()]
        if run_dirs:
            print(render_runs(run_dirs))
            return 0
        for name in targets:
            if args.status:
                from effconv.report.spec import load_spec
                from effconv.report.status import status_lines

                print(status_lines(load_spec(name), args.output_root))
                continue
            print(render_experiment(name, args.static, [args.output_root, *args.runs], args.out))
        if args.all and not args.status:
            write_index(targets, args.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
