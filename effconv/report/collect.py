"""Find a table's runs (results.json, or failed.json for a run that failed) and give each row its runs (one per
seed). A failed run is a dict with ``status: failed`` and its one-line ``reason``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from effconv.report.spec import Row, TableSpec, override_key


def load_results(roots: list[Path]) -> list[dict]:
    found = []
    for root in roots:
        if root.name in ("results.json", "failed.json"):
            paths = [root]
        else:
            paths = sorted(Path(root).rglob("results.json")) + sorted(Path(root).rglob("failed.json"))
        for path in paths:
            if path.name == "results.json" and (path.parent / "failed.json").exists():
                continue  # the run was started again and failed: its results.json is an earlier attempt's
            try:
                result = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            result["_path"] = str(path)
            found.append(result)
    return found


def failed(result: dict) -> bool:
    return result.get("status") == "failed"


def _values(overrides: list[str], keys: list[str]) -> dict[str, str | None]:
    given = {override_key(o): o.split("=", 1)[1] if "=" in o else None for o in overrides}
    return {k: given.get(k) for k in keys}


def runs_of(row: Row, spec: TableSpec, results: list[dict]) -> list[dict]:
    """Runs of this experiment whose values for the table's row keys equal this row's (seeds pooled)."""
    wanted = _values(row.overrides, spec.sweep_keys)
    return [
        r
        for r in results
        if r.get("experiment") == spec.experiment and _values(r.get("overrides", []), spec.sweep_keys) == wanted
    ]


def metric_of(result: dict, metric: str, column: str) -> float | None:
    """top1/top5 of one run at its best or last epoch (EMA weights when the run kept an EMA)."""
    ema = result.get("ema")
    if metric == "best":
        return result.get(column)
    return result.get(f"last_ema_{column}" if ema else f"last_{column}")


def mean_std(values: list[float]) -> tuple[float | None, float | None, int]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)
