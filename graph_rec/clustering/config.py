"""GraphLearner settings, one JSON file per dataset in ``graph_rec/configs/graphlearner/``.

Each field is documented once, here. Files are validated before any compute: unknown keys, wrong
types and out-of-range values are reported with the key name and what to set instead.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "graphlearner"


@dataclass
class GraphLearnerConfig:
    n_clusters: int  # number of clusters k (= number of classes for the benchmark datasets)
    pca_dim: int = 500  # PCA output dimension d'; must be <= the raw feature count
    smooth_steps: int = 4  # t: powers of the normalised adjacency / learned filter applied to a view
    attr_hidden: int = 1000  # hidden width of the (linear) attribute augmentor
    struct_hidden: int = 128  # projection width of the attention structure augmentor
    embed_dim: int = 500  # output width of the shared encoder
    epochs: int = 400
    lr_encoder: float = 1e-4
    lr_attr: float = 1e-4  # attribute augmentor learning rate
    lr_struct: float = 1e-5  # structure augmentor learning rate (released code: 1e-5, wd 1e-5)
    wd_struct: float = 1e-5
    alpha: float = 0.5  # weight of the augmentation (diversity) loss L_a
    temperature: float = 1.0  # InfoNCE temperature
    objective: str = "adversarial"  # "adversarial" (paper min-max) or "joint" (released code)
    # The released train.py never calls zero_grad, so each Adam step sees the sum of every gradient so far.
    # true reproduces those dynamics (the gradient of each step is still computed cleanly, then summed).
    accumulate_grads: bool = False
    tau: float = 0.95  # confidence quantile: nodes above it are "high confidence" in stage 2
    refine_start: int = 200  # stage 2 begins after this epoch
    refine_every: int = 20  # refinement period (epochs) in stage 2
    eval_every: int = 10  # k-means evaluation period (epochs) for the best-epoch protocol
    monitor_n_init: int = 5  # k-means restarts for the periodic evaluations / pseudo labels
    final_n_init: int = 20  # k-means restarts for the final embedding
    seeds: int = 10  # number of seeds 0..seeds-1 for mean +- std
    bf16: bool = False  # bf16 n x n InfoNCE matrix (products, exp) and linear layers (5x faster, AVX512-BF16)

    def validate(self, num_features: int | None = None) -> None:
        if self.objective not in ("adversarial", "joint"):
            raise ValueError(f"objective={self.objective!r}: set 'adversarial' (paper) or 'joint' (code)")
        if not 0.0 < self.tau < 1.0:
            raise ValueError(f"tau={self.tau}: must be in (0, 1), e.g. 0.95")
        for key in ("n_clusters", "pca_dim", "smooth_steps", "embed_dim", "epochs", "seeds"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)}: must be >= 1")
        if num_features is not None and self.pca_dim > num_features:
            raise ValueError(
                f"pca_dim={self.pca_dim} exceeds the {num_features} input features: set pca_dim <= {num_features}"
            )


def config_path(dataset: str) -> Path:
    return CONFIG_DIR / f"{dataset.lower()}.json"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> GraphLearnerConfig:
    raw = json.loads(Path(path).read_text())
    raw.pop("_comment", None)
    return config_from_dict(raw, str(path), overrides)


def config_from_dict(
    raw: dict[str, Any], source: str, overrides: dict[str, Any] | None = None
) -> GraphLearnerConfig:
    """Build and type-check a config; ``source`` names the file (or flag) in every error message."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    raw = {**raw, **overrides}

    def where(*keys: str) -> str:  # blame the command-line override, not the file, when it is at fault
        return f"{source} (overridden by --set)" if any(k in overrides for k in keys) else source

    known = {f.name: f for f in fields(GraphLearnerConfig)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{where(*unknown)}: unknown keys {unknown}; valid keys are {sorted(known)}")
    for name, f in known.items():
        if name not in raw and f.default is MISSING:
            raise ValueError(f"{source}: required key {name!r} is missing")
        if name in raw:
            expected = type(f.default) if f.default is not MISSING else int
            if expected is float and isinstance(raw[name], int) and not isinstance(raw[name], bool):
                raw[name] = float(raw[name])
            # bool is a subclass of int: reject True for an int field, accept it for a bool field
            if not isinstance(raw[name], expected) or (isinstance(raw[name], bool) and expected is not bool):
                raise ValueError(f"{where(name)}: {name}={raw[name]!r} should be {expected.__name__}")
    return GraphLearnerConfig(**raw)


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["lr_encoder=5e-4", "objective=joint"]`` -> values parsed as JSON (bare words stay strings)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: write KEY=VALUE, e.g. --set smooth_steps=3")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
