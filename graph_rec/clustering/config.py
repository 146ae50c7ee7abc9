"""GraphLearner settings, one JSON file per dataset in ``graph_rec/configs/graphlearner/``.

Each field is documented once, here. Files are validated before any compute: unknown keys, wrong
types and out-of-range values are reported with the key name and what to set instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graph_rec import config as config_lib
from graph_rec.config import ConfigError, parse_assignments

__all__ = [
    "CONFIG_DIR",
    "GraphLearnerConfig",
    "config_from_dict",
    "config_path",
    "load_config",
    "parse_assignments",
]

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
    # "joint" (released code, default) or "adversarial" (our reading of the paper's min-max; it degrades the
    # clustering as training goes on, see clustering/objectives.py and RESULTS_clustering.md)
    objective: str = field(default="joint", metadata={"choices": ("adversarial", "joint")})
    # The released train.py never calls zero_grad, so each Adam step sees the sum of every gradient so far.
    # true reproduces those dynamics (the gradient of each step is still computed cleanly, then summed).
    accumulate_grads: bool = False
    tau: float = 0.95  # confidence quantile: nodes above it are "high confidence" in stage 2
    refine_start: int = 200  # stage 2 begins after this epoch
    refine_every: int = 20  # refinement period (epochs) in stage 2
    eval_every: int = 10  # k-means evaluation period (epochs) for the best-epoch protocol
    monitor_n_init: int = 5  # k-means restarts for the periodic evaluations / pseudo labels
    final_n_init: int = 20  # k-means restarts for the final embedding
    bf16: bool = False  # bf16 n x n InfoNCE matrix (products, exp) and linear layers (5x faster, AVX512-BF16)

    def validate(self, num_features: int | None = None) -> None:
        if self.objective not in ("adversarial", "joint"):
            raise ConfigError(f"objective={self.objective!r}: set 'joint' (code, default) or 'adversarial'")
        if not 0.0 < self.tau < 1.0:
            raise ConfigError(f"tau={self.tau}: must be in (0, 1), e.g. 0.95")
        for key in ("n_clusters", "pca_dim", "smooth_steps", "embed_dim", "epochs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)}: must be >= 1")
        if num_features is not None and self.pca_dim > num_features:
            raise ConfigError(
                f"pca_dim={self.pca_dim} exceeds the {num_features} input features: set pca_dim <= {num_features}"
            )


def config_path(dataset: str) -> Path:
    return CONFIG_DIR / f"{dataset.lower()}.json"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> GraphLearnerConfig:
    raw = json.loads(Path(path).read_text())
    return config_from_dict(raw, str(path), overrides)


def config_from_dict(
    raw: dict[str, Any], source: str, overrides: dict[str, Any] | None = None
) -> GraphLearnerConfig:
    """Build and type-check a config; ``source`` names the file (or flag) in every error message."""
    return config_lib.config_from_dict(GraphLearnerConfig, raw, source, overrides)
