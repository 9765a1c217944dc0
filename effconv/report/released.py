"""Released weights in a paper table: evaluate.py's measurements of the authors' checkpoints as "ours" cells.

``python evaluate.py checkpoint=<authors' file> model=<name> [model.<knob>=...] data=<dataset>`` converts the
file (effconv.models.formats) and writes ``eval.json`` with ``"released": true`` (weights that no train.py run
of ours wrote) under ``outputs/released/<model>-<data>-<file>/``. The report reads every such ``eval.json``
under ``<output-root>/released/`` and the ``--runs`` directories, and gives each to the rows whose composed
model config (name and knobs) and dataset (name and image size) are the evaluation's. A row's own training runs
take precedence; a row without any shows the released weights' accuracy, marked ``†`` and named in a footnote.
An evaluation fills one row, the first that matches (DiCENet Table 4 lists each width under two recipes; the
model zoo's weights are the first, E150-B512).
"""

from __future__ import annotations

import json
from pathlib import Path

from effconv.config import model_knobs

MARK = "†"


def load_released(roots: list[Path]) -> list[dict]:
    """Evaluations of released weights, as run-like records (their accuracy is both 'best' and 'last')."""
    found = []
    for root in roots:
        for path in sorted(Path(root).rglob("eval.json")) if Path(root).is_dir() else []:
            try:
                result = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if not result.get("released") or "model_cfg" not in result:
                continue
            accuracy = {f"last_{k}": result.get(k) for k in ("top1", "top5")}
            found.append({**result, **accuracy, "ema": None, "_path": str(path)})
    return found


def released_for(cfg, evaluations: list[dict]) -> list[dict]:
    """The evaluations of the network and dataset a row's composed config ``cfg`` describes."""
    model = model_knobs(cfg.model)
    return [
        e
        for e in evaluations
        if e["model_cfg"] == model and e.get("data") == cfg.data.name and e.get("img_size") == cfg.data.img_size
    ]


def footnote(rows: dict[str, list[dict]]) -> str:
    sources = "; ".join(f"{row}: {', '.join(Path(e['checkpoint']).name for e in evals)}" for row, evals in rows.items())
    return (
        f"{MARK} accuracy of the authors' released weights evaluated here (python evaluate.py checkpoint=<file> "
        f"model=... data=...; docs/weights.md), not of a training run: {sources}"
    )
