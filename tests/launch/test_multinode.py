"""A two-node Ray cluster on one machine (a head and a worker raylet, each with its own CPUs and a custom
resource naming it, the way Ray's own tests simulate clusters): the run's placement group spans both nodes,
every actor lands on the node its bundle names, and the loop runs two steps — from a driver that connects to
the cluster, then through `ray job submit`. Placement planning itself is unit-tested without Ray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch.placement import plan_bundles
from tests.conftest import tiny_overrides
from tests.launch.test_job_submit import _free_ports

ROOT = Path(__file__).resolve().parents[2]


def test_plan_bundles_disaggregated_and_colocated():
    bundles, rb, lb = plan_bundles("disaggregated", 2, (2, 0), 3, (4, 1))
    assert bundles == [{"CPU": 2.0}] * 2 + [{"CPU": 4.0, "GPU": 1.0}] * 3
    assert rb == [0, 1] and lb == [2, 3, 4]
    bundles, rb, lb = plan_bundles("colocated", 1, (2, 0.5), 2, (4, 0.5))
    assert bundles == [
        {"CPU": 6.0, "GPU": 1.0},
        {"CPU": 4.0, "GPU": 0.5},
    ]  # worker 0 shares learner 0's bundle
    assert rb == [0] and lb == [0, 1]
    with pytest.raises(ValueError, match="at least as many learners"):
        plan_bundles("colocated", 3, (1, 0), 2, (1, 0))
    with pytest.raises(ValueError, match="unknown placement mode"):
        plan_bundles("spread", 1, (1, 0), 1, (1, 0))


def test_placement_keys_are_validated(tiny_model, tmp_path):
    from launch.config import ConfigError, load_recipe

    recipe = ROOT / "recipes/grpo_default.yaml"
    with pytest.raises(ConfigError, match=r"ray\.placement\.strategy"):
        load_recipe(recipe, [*tiny_overrides(tiny_model, tmp_path), "ray.placement.strategy=EVERYWHERE"])
    with pytest.raises(ConfigError, match=r"rollout.num_workers \(2\) must be <= trainer.num_learners \(1\)"):
        load_recipe(
            recipe,
            [*tiny_overrides(tiny_model, tmp_path), "ray.placement.mode=colocated", "rollout.num_workers=2"],
        )


def test_sleep_when_idle_is_validated_and_refused_where_vllm_has_no_sleep_mode(tiny_model, tmp_path):
    """rollout.sleep_when_idle frees device memory for colocated learners: it needs colocation and a synchronous
    loop, and vLLM's sleep mode exists on GPUs only, so on this CPU the engine refuses it naming the key."""
    from launch.config import ConfigError, load_recipe
    from rollout.engines.vllm_engine import check_sleep_mode

    recipe = ROOT / "recipes/grpo_default.yaml"
    base = [*tiny_overrides(tiny_model, tmp_path), "rollout.sleep_when_idle=true"]
    with pytest.raises(ConfigError, match=r"rollout\.sleep_when_idle.*colocated \(not 'disaggregated'\)"):
        load_recipe(recipe, base)
    colocated = [*base, "ray.placement.mode=colocated"]
    with pytest.raises(ConfigError, match=r"rollout\.sleep_when_idle.*async rollout"):
        load_recipe(
            recipe,
            [*colocated, "algorithm.async_rollout.enabled=true", "algorithm.tis_cap=2"],
        )
    assert load_recipe(recipe, colocated).rollout.sleep_when_idle  # valid: the engine decides at start
    import torch

    if not torch.cuda.is_available():  # on a GPU machine the check passes (and the engine sleeps)
        with pytest.raises(ValueError, match=r"rollout\.sleep_when_idle: vLLM's sleep mode needs a CUDA"):
            check_sleep_mode()


def test_unplaceable_group_fails_at_once_with_the_numbers(ray_cluster):
    """The session cluster has 8 CPUs on one node: STRICT_SPREAD over two nodes can never be placed."""
    from launch.placement import reserve
    from launch.ray_utils import ClusterTooSmall

    t = time.perf_counter()
    with pytest.raises(ClusterTooSmall, match=r"could not be placed within 3 s; the cluster has .*8 CPU"):
        reserve("disaggregated", "STRICT_SPREAD", 1, (1, 0), 1, (1, 0), ready_timeout_s=3)
    assert time.perf_counter() - t < 30
    ok = reserve("disaggregated", "PACK", 1, (1, 0), 1, (1, 0), ready_timeout_s=30)
    assert ok.node_of("rollout", 0) == ok.node_of("learner", 0)
    ok.remove()


def _ray(ray_bin: str, args: list[str], env: dict) -> None:
    subprocess.run([ray_bin, *args], check=True, env=env, cwd=ROOT, timeout=180, capture_output=True)


def _ports_args() -> list[str]:
    agent_http, agent_grpc, metrics, runtime_env, node_mgr, obj_mgr = _free_ports(6)
    return [
        "--dashboard-agent-listen-port",
        str(agent_http),
        "--dashboard-agent-grpc-port",
        str(agent_grpc),
        "--metrics-export-port",
        str(metrics),
        "--runtime-env-agent-port",
        str(runtime_env),
        "--node-manager-port",
        str(node_mgr),
        "--object-manager-port",
        str(obj_mgr),
        "--disable-usage-stats",
    ]


def _check_run(out: Path, console: str) -> None:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "reward_mean" in r] == [0, 1], console[-3000:]
    where = json.loads((out / "placement.json").read_text())
    actors = where["actors"]
    assert {a["role"] for a in actors} == {"rollout", "learner"}
    assert all(a["node"] == a["bundle_node"] for a in actors)  # each actor on the node its bundle names
    assert len({a["node"] for a in actors}) == 2  # STRICT_SPREAD: rollout and learner on different nodes
    assert "placement: disaggregated (STRICT_SPREAD), 2 actors on 2 node(s)" in console


@pytest.mark.slow
def test_two_node_cluster_driver_and_job_submit(tiny_model, tmp_path):
    ray_bin = str(Path(sys.executable).parent / "ray")
    temp = f"/tmp/frm_{os.getpid()}"
    gcs, dash = _free_ports(2)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    try:
        head = ["start", "--head", "--num-cpus", "2", "--resources", '{"node_head": 1}', "--port", str(gcs)]
        head += ["--dashboard-port", str(dash), "--include-dashboard", "true", "--temp-dir", temp]
        _ray(
            ray_bin, [*head, "--min-worker-port", "21000", "--max-worker-port", "21499", *_ports_args()], env
        )
        node = [
            "start",
            "--address",
            f"127.0.0.1:{gcs}",
            "--num-cpus",
            "2",
            "--resources",
            '{"node_worker": 1}',
        ]
        _ray(
            ray_bin, [*node, "--min-worker-port", "21500", "--max-worker-port", "21999", *_ports_args()], env
        )
        # one rollout worker and one learner, 1 CPU each, on different nodes (each node has 2 CPUs)
        extra = {
            "total_steps": 2,
            "curriculum.prompts_per_step": 2,
            "curriculum.n_samples": 2,
            "ray.placement.strategy": "STRICT_SPREAD",
        }
        # 1. a driver on the head that connects to the cluster
        out = tmp_path / "driver"
        overrides = tiny_overrides(tiny_model, out, **extra)
        proc = subprocess.run(
            [sys.executable, "-m", "launch.train", "recipes/grpo_default.yaml", *overrides],
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{gcs}", "TOKENIZERS_PARALLELISM": "false"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        _check_run(out, proc.stdout + proc.stderr)

        # 2. the same recipe through `ray job submit` to that cluster
        out = tmp_path / "job"
        quoted = " ".join(f"'{o}'" for o in tiny_overrides(tiny_model, Path("job"), **extra))
        entry = f"cd {ROOT} && {sys.executable} -m launch.train recipes/grpo_default.yaml {quoted}"
        runtime_env = {"env_vars": {"PYTHONPATH": str(ROOT), "FORGE_OUTPUT_ROOT": str(tmp_path)}}
        submit = [ray_bin, "job", "submit", "--address", f"http://127.0.0.1:{dash}"]
        submit += ["--runtime-env-json", json.dumps(runtime_env), "--", "bash", "-c", entry]
        for _ in range(12):  # the dashboard agent may not be up yet right after `ray start`
            proc = subprocess.run(submit, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
            if "No available agent" not in proc.stdout + proc.stderr:
                break
            time.sleep(5)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        _check_run(out, proc.stdout + proc.stderr)
    finally:
        # Stop only this cluster (its processes carry the temp dir or its GCS port); `ray stop` would also kill
        # the session's local Ray that other tests share.
        subprocess.run(["pkill", "-9", "-f", temp], timeout=60)
        subprocess.run(["pkill", "-9", "-f", f"127.0.0.1:{gcs}"], timeout=60)
        time.sleep(2)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_rank_that_cannot_rendezvous_stops_with_the_address(tiny_model, ray_cluster):
    """Rank 1 of 2 whose rank 0 never comes: the group cannot form, and the error names the address and the
    deadline (instead of DeepSpeed's default 10-minute wait)."""
    import ray

    from trainer.learner import Learner, LearnerSpec

    (port,) = _free_ports(1)
    spec = LearnerSpec(model_path=tiny_model, dtype="float32", threads=1)
    actor = ray.remote(Learner).options(num_cpus=1).remote(1, 2, "127.0.0.1", port, spec, None, 5.0)
    t = time.perf_counter()
    with pytest.raises(
        Exception, match=rf"learner rank 1/2 could not join .* at 127\.0\.0\.1:{port} within 5 s"
    ):
        ray.get(actor.__ray_ready__.remote(), timeout=120)
    assert time.perf_counter() - t < 90
    ray.kill(actor)
