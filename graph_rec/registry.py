"""Model registry for the `python -m graph_rec train MODEL --dataset NAME` command.

A model module registers a runner with :func:`register_model`. A runner receives the parsed
command-line namespace, trains, evaluates and returns a flat dict of metrics (the CLI prints it
and writes it as JSON). ``MODEL_HOME`` names the module that registers each model, so that
``train MODEL`` imports that module only: one model's heavy imports (PyG, geoopt) do not slow the
others (they cost 1.5 s of a GraphLearner run). A test keeps the table equal to what the modules register.
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

# Model name -> the module whose import registers it (each module calls register_model at import time).
MODEL_HOME: dict[str, str] = {
    # issue 4: clustering and graph-transformer components
    "graphlearner": "graph_rec.clustering.runner",
    "graph_transformer": "graph_rec.transformer.runner",
    # issue 5: hyperbolic recommendation and CTR
    "lightgcn": "graph_rec.recsys.runners",
    "hgformer": "graph_rec.recsys.runners",
    "hcts": "graph_rec.recsys.cross_runners",
    "bitgcf": "graph_rec.recsys.cross_runners",
    "gmt": "graph_rec.ctr.runners",
    "fm": "graph_rec.ctr.runners",
}
MODEL_MODULES: list[str] = list(dict.fromkeys(MODEL_HOME.values()))


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


def load_model(name: str) -> ModelEntry:
    """Import only the module that registers ``name``; unknown names raise KeyError listing the valid ones."""
    if name not in MODEL_HOME:
        raise KeyError(f"unknown graph_rec model {name!r}; choose one of {sorted(MODEL_HOME)}")
    importlib.import_module(MODEL_HOME[name])
    return _MODELS[name]
