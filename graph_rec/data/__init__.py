"""Dataset helpers shared by the graph_rec models.

``default_data_root()`` is the one place that decides where the benchmark data live, so the CLI, the
tests and every model agree: the ``GRAPH_REC_DATA`` environment variable if set, otherwise the
project's shared data folder ``<repo>/../shared/data/graph``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_data_root"]


def default_data_root() -> Path:
    """Folder that holds one sub-folder per dataset (``cora/``, ``citeseer/``, ...)."""
    env = os.environ.get("GRAPH_REC_DATA")
    if env:
        return Path(env).expanduser().resolve()
    # graph_rec/data/__init__.py -> parents[2] is the repository root.
    repo_root = Path(__file__).resolve().parents[2]
    return (repo_root / ".." / "shared" / "data" / "graph").resolve()
