"""Model registry for the `python -m graph_rec train MODEL --dataset NAME` command.

A model module registers a runner with :func:`register_model`. A runner receives the parsed
command-line namespace, trains, evaluates and returns a flat dict of metrics (the CLI prints it
and writes it as JSON). Modules listed in ``MODEL_MODULES`` are imported lazily by the CLI so that
one model's heavy imports do not slow the others.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Runner = Callable[[argparse.Namespace], dict[str, Any]]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    runner: Runner
    help: str
    add_args: Callable[[argparse.ArgumentParser], None] | None = None


_MODELS: dict[str, ModelEntry] = {}

# One line per model family module; each module calls register_model at import time.
MODEL_MODULES: list[str] = [
    # issue 4: clustering and graph-transformer components
    "graph_rec.clustering.runner",
    "graph_rec.transformer.runner",
    # issue 5: hyperbolic recommendation and CTR
    "graph_rec.recsys.runners",
    "graph_rec.recsys.cross_runners",
    "graph_rec.ctr.runners",
]


def register_model(
    name: str, help: str = "", add_args: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Runner], Runner]:
    def deco(fn: Runner) -> Runner:
        if name in _MODELS:
            raise ValueError(f"graph_rec model {name!r} registered twice")
        _MODELS[name] = ModelEntry(name, fn, help, add_args)
        return fn

    return deco


def load_all() -> dict[str, ModelEntry]:
    for mod in MODEL_MODULES:
        importlib.import_module(mod)
    return dict(_MODELS)
