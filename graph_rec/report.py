"""``python -m graph_rec report RUNS...``: the markdown table a README shows, from result files.

One row per result file: model, dataset, variant, each metric as mean ± std over the seeds, the number of
seeds and the budget (optimisation steps per seed, and epochs), and the settings that differ from the model's
defaults (a tuned run adds the grid's size and its selection metric; ``sel. on test`` where test labels chose). Columns default to the union of the runs'
headline metrics (in order of first appearance); ``--metrics`` picks others. A run without a metric shows "–".
Files that are not graph_rec results (no ``schema`` key) are skipped with a note on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from graph_rec.experiment import SCHEMA


def load_runs(paths: list[str]) -> list[dict[str, Any]]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such result file or folder")
    runs = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            print(f"report: skipping {f} (not a {SCHEMA} file)", file=sys.stderr)
            continue
        runs.append(data)
    return sorted(runs, key=lambda r: (r["dataset"], r["model"], r["variant"]))


def fmt(mean: float, std: float) -> str:
    digits = 2 if abs(mean) >= 1 else 4  # percentages vs. rates/AUCs
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def settings(run: dict[str, Any]) -> str:
    """Non-default settings, e.g. ``lr=0.002, steps=600``; a tuned run adds ``tuned: 6 points on valid/x``."""
    parts = [f"{k}={v}" for k, v in sorted(run.get("overrides", {}).items())]
    t = run.get("tuning")
    if t:
        where = " (sel. on test)" if t["on_test"] else ""
        parts.append(f"tuned: {len(t['points'])} points on {t['select']}{where}")
    return ", ".join(parts) or "defaults"


def render(runs: list[dict[str, Any]], metrics: list[str] | None = None) -> str:
    cols = metrics or list(dict.fromkeys(k for r in runs for k in r["headline"]))
    head = ["model", "dataset", "variant", *cols, "seeds", "steps/seed", "epochs", "settings"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(cols) + 3) + "---|"]
    for r in runs:
        cells = [r["model"], r["dataset"], r["variant"]]
        for k in cols:
            m = r["metrics"].get(k)
            cells.append(fmt(m["mean"], m["std"]) if m else "–")
        budget = r.get("budget", {})
        cells += [
            str(len(r["run"]["seeds"])),
            str(budget.get("steps_per_seed", "–")),
            str(budget.get("epochs")),
            settings(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
