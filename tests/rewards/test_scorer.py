"""RewardScorer: weighted sums, accuracy, and surviving plugins that raise, hang or return garbage."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pytest

from launch.config import RewardSpec
from rewards.scorer import RewardScorer
from rollout.types import Prompt, Sample

PLUGINS = """
import math, time

def half(prompts, completions, **columns):
    return [0.5] * len(completions)

def boom(prompts, completions, **columns):
    raise RuntimeError("plugin exploded")

def short(prompts, completions, **columns):
    return [1.0] * (len(completions) - 1)

def nan(prompts, completions, **columns):
    return [math.nan] + [1.0] * (len(completions) - 1)

def text(prompts, completions, **columns):
    return ["yes"] * len(completions)

def arr(prompts, completions, **columns):
    import numpy as np
    return np.array([True] * len(completions))

def hog(prompts, completions, **columns):
    block = bytearray(6 << 30)  # 6 GiB: over the worker's cap
    return [1.0] * len(completions)

def crash(prompts, completions, **columns):
    import os
    os._exit(3)

def hang(prompts, completions, seconds=30, **columns):
    time.sleep(seconds)
    return [1.0] * len(completions)

def echo(prompts, completions, level=None, scale=1.0, **columns):
    # proves columns and recipe kwargs arrive as documented
    assert columns["answer"] == ["5", "6", None]
    return [None if lv is None else lv * scale for lv in level]
"""


def _samples(responses: list[str], answers: list[str | None] | None = None) -> list[Sample]:
    answers = answers or ["5"] * len(responses)
    out = []
    for i, (r, a) in enumerate(zip(responses, answers)):
        p = Prompt(uid=f"p{i}", text="What is 2 + 3?", answer=a, columns={"level": i + 1})
        out.append(Sample(p, [1], [2], [0.0], "stop", r, group_id=p.uid))
    return out


@pytest.fixture
def plugins(tmp_path: Path) -> str:
    f = tmp_path / "plugins.py"
    f.write_text(PLUGINS)
    return str(f)


def test_weighted_sum_and_accuracy() -> None:
    specs = [RewardSpec("math", 1.0), RewardSpec("format", 0.5)]
    scorer = RewardScorer(specs, timeout_s=30, isolation="inline")
    samples = _samples(["\\boxed{5}", "5", "\\boxed{4}", "5"], ["5", "5", "5", None])
    m = scorer.score(samples)
    assert [s.reward for s in samples] == [1.5, 1.0, 0.5, None]
    assert [s.correct for s in samples] == [True, True, False, None]
    assert samples[0].reward_details == {"math": 1.0, "format": 1.0}
    assert m["reward_mean"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["reward/math_mean"] == pytest.approx(2 / 3)
    assert m["reward/format_mean"] == pytest.approx(0.5)
    assert m["reward_failures"] == 0 and m["reward_time_s"] >= 0


def test_accuracy_from_and_kwargs(plugins: str) -> None:
    specs = [RewardSpec(f"{plugins}:half", 2.0), RewardSpec(f"{plugins}:echo", 1.0, {"scale": 0.1})]
    scorer = RewardScorer(specs, accuracy_from="echo", isolation="inline")
    samples = _samples(["a", "b", "c"], ["5", "6", None])
    m = scorer.score(samples)
    assert [s.reward_details["echo"] for s in samples] == pytest.approx([0.1, 0.2, 0.3])
    assert [s.reward for s in samples] == pytest.approx([1.1, 1.2, 1.3])
    assert [s.correct for s in samples] == [False, False, False]
    assert m["accuracy"] == 0.0
    with pytest.raises(ValueError, match="accuracy_from: 'nope'"):
        RewardScorer(specs, accuracy_from="nope", isolation="inline")


@pytest.mark.parametrize("bad", ["boom", "short", "text"])
def test_failing_plugin_gives_no_signal(plugins: str, bad: str, caplog) -> None:
    scorer = RewardScorer([RewardSpec("format"), RewardSpec(f"{plugins}:{bad}")], isolation="inline")
    samples = _samples(["\\boxed{5}", "5"])
    with caplog.at_level(logging.WARNING):
        m = scorer.score(samples)
    assert [s.reward for s in samples] == [None, None]
    assert [s.correct for s in samples] == [True, False]  # the accuracy plugin (format) still gave verdicts
    assert m["reward_failures"] == 2
    assert math.isnan(m["reward_mean"])
    assert f"{bad}.py" not in caplog.text and f":{bad}'" in caplog.text  # the warning names the plugin


def test_numpy_result_is_accepted(plugins: str) -> None:
    scorer = RewardScorer([RewardSpec(f"{plugins}:arr")], isolation="inline")
    samples = _samples(["a", "b"])
    assert scorer.score(samples)["reward_failures"] == 0 and [s.reward for s in samples] == [1.0, 1.0]


def test_nan_fails_only_that_sample(plugins: str) -> None:
    scorer = RewardScorer([RewardSpec(f"{plugins}:nan")], isolation="inline")
    samples = _samples(["a", "b", "c"])
    m = scorer.score(samples)
    assert [s.reward for s in samples] == [None, 1.0, 1.0]
    assert m["reward_failures"] == 1 and m["reward_mean"] == 1.0


def test_process_isolation_survives_a_hang(plugins: str) -> None:
    specs = [RewardSpec("math"), RewardSpec(f"{plugins}:hang", 1.0, {"seconds": 30})]
    scorer = RewardScorer(specs, timeout_s=2.0, isolation="process")
    try:
        samples = _samples(["\\boxed{5}", "4"])
        t0 = time.perf_counter()
        m = scorer.score(samples)
        assert time.perf_counter() - t0 < 25  # did not wait for the 30 s sleep
        assert m["reward_failures"] == 2 and [s.reward for s in samples] == [None, None]
        assert [s.correct for s in samples] == [True, False]  # math ran in the worker before the hang
        # the next call gets a fresh worker and works again
        scorer.plugins[1] = scorer.plugins[1].__class__("hang", specs[1].name, 1.0, {"seconds": 0})
        samples = _samples(["\\boxed{5}", "4"])
        m = scorer.score(samples)
        assert m["reward_failures"] == 0 and [s.reward for s in samples] == [2.0, 1.0]
    finally:
        scorer.close()


def test_process_isolation_raising_plugin(plugins: str) -> None:
    with RewardScorer([RewardSpec("format"), RewardSpec(f"{plugins}:boom")], timeout_s=30) as scorer:
        samples = _samples(["\\boxed{5}"])
        m = scorer.score(samples)
        assert m["reward_failures"] == 1 and samples[0].reward is None and samples[0].correct is True


def test_process_isolation_worker_crash(plugins: str) -> None:
    with RewardScorer([RewardSpec("format"), RewardSpec(f"{plugins}:crash")], timeout_s=30) as scorer:
        samples = _samples(["\\boxed{5}"])
        assert scorer.score(samples)["reward_failures"] == 1 and samples[0].reward is None
        scorer.plugins.pop()  # without the crashing plugin a fresh worker scores again
        samples = _samples(["\\boxed{5}"])
        assert scorer.score(samples)["reward_failures"] == 0 and samples[0].reward == 1.0


def test_process_isolation_memory_hog_is_contained(plugins: str) -> None:
    """A plugin that tries to allocate past rewards.memory_limit_gb gets a MemoryError in the worker: its
    samples get no signal, the other plugin still scores, and the worker keeps serving."""
    specs = [RewardSpec("format"), RewardSpec(f"{plugins}:hog")]
    with RewardScorer(specs, timeout_s=60, memory_limit_gb=2.0) as scorer:
        samples = _samples(["\\boxed{5}", "4"])
        m = scorer.score(samples)
        assert m["reward_failures"] == 2 and [s.reward for s in samples] == [None, None]
        assert [s.correct for s in samples] == [True, False]  # format scored in the same worker
        scorer.plugins.pop()
        samples = _samples(["\\boxed{5}"])
        assert scorer.score(samples)["reward_failures"] == 0 and samples[0].reward == 1.0


def test_unknown_plugin_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="not a registered reward"):
        RewardScorer([RewardSpec("nope")], isolation="inline")


SANDBOX_PLUGINS = """
import os

def writes_to(prompts, completions, target, **columns):
    with open(target[0], "w") as f:
        f.write("overwritten by a reward plugin")
    return [1.0] * len(completions)

def writes_scratch(prompts, completions, **columns):
    path = os.path.join(os.environ["FORGE_REWARD_SCRATCH"], "note.txt")
    with open(path, "w") as f:
        f.write("ok")
    with open("relative.txt", "w") as f:  # the worker's cwd is the scratch folder
        f.write("ok")
    return [1.0] * len(completions)
"""


def test_sandboxed_reward_worker_cannot_write_into_the_run(tmp_path: Path) -> None:
    from rewards.sandbox import landlock_abi

    if landlock_abi() < 1:
        pytest.skip("the kernel has no Landlock")
    plugins = tmp_path / "sb.py"
    plugins.write_text(SANDBOX_PLUGINS)
    ckpt = tmp_path / "run" / "checkpoints" / "step_000001"
    ckpt.mkdir(parents=True)
    (ckpt / "state.pt").write_text("the real checkpoint")
    p = Prompt("p0", "What is 2 + 3?", "5", columns={"target": str(ckpt / "state.pt")})
    samples = [Sample(p, [1], [2], [0.0], "stop", "5", "p0")]
    specs = [
        RewardSpec("format"),
        RewardSpec(f"{plugins}:writes_to"),
        RewardSpec(f"{plugins}:writes_scratch"),
    ]
    with RewardScorer(specs, timeout_s=60, sandbox=True) as scorer:
        m = scorer.score(samples)
    assert (ckpt / "state.pt").read_text() == "the real checkpoint"  # the write was refused
    assert m["reward_failures"] == 1 and samples[0].reward is None  # writes_to failed (PermissionError)
    assert samples[0].reward_details["writes_scratch"] == 1.0  # its scratch folder stays writable
    # Without the sandbox the same plugin overwrites the file: the test can fail.
    with RewardScorer(specs[1:2], timeout_s=60, sandbox=False) as scorer:
        scorer.score([Sample(p, [1], [2], [0.0], "stop", "5", "p0")])
    assert (ckpt / "state.pt").read_text() == "overwritten by a reward plugin"
