"""A first run a person can read: the default recipe (tiny model, 2 steps) as a subprocess, like a newcomer runs
it. Its console output stays short (our lines only), third-party output lands in the run's logs/, and the
run ends with PNG plots it names."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_default_run_prints_a_few_lines_and_writes_logs_and_plots(tiny_model, tmp_path):
    from tests.conftest import tiny_overrides

    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_model,
        out,
        **{
            "total_steps": 2,
            "logging.progress": True,
            "rewards.isolation": "process",  # the default: a reward worker process that logs to logs/ too
            "eval.num_prompts": 8,
        },
    )
    proc = subprocess.run(
        [sys.executable, "-m", "launch.train", "recipes/grpo_default.yaml", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    console = (proc.stdout + proc.stderr).replace("\r", "\n")
    lines = [ln for ln in console.splitlines() if ln.strip()]
    assert proc.returncode == 0, console[-3000:]
    assert len(lines) <= 30, "\n".join(lines)  # progress bar refreshes included
    assert any(ln.startswith("step 1 |") for ln in lines), console
    logs = out / "logs"
    rollout_log = (logs / "rollout_0.log").read_text()
    assert "vllm" in rollout_log.lower() or "WARNING" in rollout_log  # vLLM's start-up went to the file
    assert (logs / "learner_0.log").is_file() and (logs / "driver.log").is_file()
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == ["response_length.png", "reward_accuracy.png", "step_time.png"]
    print(f"console ({len(lines)} lines):", *lines, sep="\n")
    assert "plots:" in proc.stdout and str(out / "plots") in proc.stdout
