"""Model registry for the `python -m graph_rec train MODEL --dataset NAME` command.

A model module registers one :class:`graph_rec.experiment.ModelSpec` with :func:`register_model`; the shared
runner (:func:`graph_rec.experiment.run_experiment`) gives every model the same flags, seeds, device handling
and result file. ``MODEL_HOME`` names the module that registers each model, so that ``train MODEL`` imports
that module only: one model's heavy imports (PyG, geoopt) do not slow the others (they cost 1.5 s of a
GraphLearner run). A test keeps the table equal to what the modules register.
"""

from __future__ import annotations

import importlib

from graph_rec.experiment import ModelSpec

_MODELS: dict[str, ModelSpec] = {}

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


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _MODELS:
        raise ValueError(f"graph_rec model {spec.name!r} registered twice")
    _MODELS[spec.name] = spec
    return spec


def load_all() -> dict[str, ModelSpec]:
    for mod in MODEL_MODULES:
        importlib.import_module(mod)
    return dict(_MODELS)


def load_model(name: str) -> ModelSpec:
    """Import only the module that registers ``name``; unknown names raise KeyError listing the valid ones."""
    if name not in MODEL_HOME:
        raise KeyError(f"unknown graph_rec model {name!r}; choose one of {sorted(MODEL_HOME)}")
    importlib.import_module(MODEL_HOME[name])
    return _MODELS[name]
