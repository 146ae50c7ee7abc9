"""Launch: `ray start --head` + `ray job submit` of a recipe on a local cluster (the multi-node path)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def _free_ports(k: int) -> list[int]:
    """k distinct free ports: every socket stays bound until all are chosen, so the OS cannot hand the same
    port out twice (picking them one by one once gave the dashboard and the agent's gRPC the same port)."""
    socks = [socket.socket() for _ in range(k)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_ray_job_submit_runs_a_recipe(tiny_model, tmp_path):
    ray_bin = str(Path(sys.executable).parent / "ray")
    temp = f"/tmp/frj_{os.getpid()}"
    gcs, dash, agent_http, agent_grpc, metrics, runtime_env = _free_ports(6)
    # Ray 2.60 clusters use token auth by default; the CLI client sends ~/.ray/auth_token only in token mode.
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS")
    subprocess.run(
        [
            ray_bin,
            "start",
            "--head",
            "--num-cpus",
            "4",
            "--port",
            str(gcs),
            "--dashboard-port",
            str(dash),
            "--include-dashboard",
            "true",
            "--temp-dir",
            temp,
            "--dashboard-agent-listen-port",
            str(agent_http),
            "--dashboard-agent-grpc-port",
            str(agent_grpc),
            "--metrics-export-port",
            str(metrics),
            "--runtime-env-agent-port",
            str(runtime_env),
            "--min-worker-port",
            "20000",
            "--max-worker-port",
            "20999",
            "--disable-usage-stats",
        ],
        check=True,
        env=env,
        cwd=ROOT,
        timeout=180,
    )
    try:
        # a relative output_dir, as a user writes it: resolved against FORGE_OUTPUT_ROOT (the job's cwd is a
        # temporary copy Ray deletes), so the outputs land where the user looks
        out = tmp_path / "job"
        overrides = " ".join(
            f"'{o}'"
            for o in tiny_overrides(
                tiny_model,
                Path("job"),
                total_steps=2,
                **{"curriculum.prompts_per_step": 2, "curriculum.n_samples": 2},
            )
        )
        entry = f"cd {ROOT} && {sys.executable} -m launch.train recipes/grpo_default.yaml {overrides}"
        runtime_env = json.dumps(
            {
                "env_vars": {
                    "PYTHONPATH": str(ROOT),
                    "TOKENIZERS_PARALLELISM": "false",
                    "FORGE_OUTPUT_ROOT": str(tmp_path),
                }
            }
        )
        submit = [
            ray_bin,
            "job",
            "submit",
            "--address",
            f"http://127.0.0.1:{dash}",
            "--runtime-env-json",
            runtime_env,
            "--",
            "bash",
            "-c",
            entry,
        ]
        for _ in range(12):  # the head's dashboard agent may not be up yet right after `ray start`
            proc = subprocess.run(submit, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
            if "No available agent" not in proc.stdout + proc.stderr:
                break
            time.sleep(5)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "succeeded" in (proc.stdout + proc.stderr).lower()
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if "reward_mean" in r] == [0, 1]
        assert f"outputs: {out}" in proc.stdout + proc.stderr  # the driver says where they are
    finally:
        # Stop only this cluster (its processes carry the temp dir): `ray stop` would also kill the
        # session's local Ray that other tests share.
        subprocess.run(["pkill", "-9", "-f", temp], timeout=60)
        time.sleep(2)
        shutil.rmtree(temp, ignore_errors=True)


def test_output_dir_is_absolute_persistent_or_refused(tmp_path, monkeypatch):
    from launch.config import ConfigError
    from launch.train import resolve_output_dir

    for k in ("FORGE_OUTPUT_ROOT", "RAY_JOB_ID", "RAY_SUBMISSION_ID", "RAY_JOB_CONFIG_JSON_ENV_VAR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_output_dir("/data/runs/a") == "/data/runs/a"
    assert resolve_output_dir("runs/a") == str(tmp_path / "runs/a")  # a local run: the current directory
    monkeypatch.setenv("RAY_SUBMISSION_ID", "raysubmit_1")  # inside `ray job submit`: cwd is Ray's temp copy
    with pytest.raises(ConfigError, match="FORGE_OUTPUT_ROOT"):
        resolve_output_dir("runs/a")
    monkeypatch.setenv("FORGE_OUTPUT_ROOT", str(tmp_path / "shared"))
    assert resolve_output_dir("runs/a") == str(tmp_path / "shared" / "runs/a")


def test_a_recipe_the_cluster_cannot_hold_fails_at_once_with_the_numbers(ray_cluster):
    """Ray would queue unplaceable actors forever in silence; the check names asked vs available."""
    from launch.ray_utils import ClusterTooSmall, check_cluster_fits

    check_cluster_fits([("rollout worker", 2, 0), ("learner", 2, 0)])  # the session cluster has 8 CPUs
    with pytest.raises(ClusterTooSmall, match=r"asks for 10 CPUs and 0 GPUs .*has 8 CPUs and 0 GPUs"):
        check_cluster_fits([("rollout worker", 2, 0)] + [("learner", 4, 0)] * 2)
    with pytest.raises(ClusterTooSmall, match=r"1 learner × 1 CPU \+ 1 GPU.*ray start --head --num-cpus"):
        check_cluster_fits([("learner", 1, 1)])
