"""ScienceWorld adapter on the real simulator (scienceworld 1.2.3's bundled jar), task files, and the
ALFWorld/WebShop stand-ins.

One simulator (JVM) serves every simulator test, as one env actor would; it is pinned to one core because
these machines have two. Tests of row parsing, sampling and the stand-ins need neither Java nor the package.
"""

from __future__ import annotations

import json
import shutil

import pytest

from rollout.envs.base import SPLIT_FILES, EnvError, make_env, parse_action
from rollout.envs.scienceworld_env import (
    ScienceWorldEnv,
    _stratified_sample,
    _task_key,
    gold_actions,
    main,
    make_tasks,
    scienceworld_data_dir,
)

# An easy ScienceWorld task: the gold path is ~10 actions and its generation takes seconds, not tens.
EASY = {"uid": "t-find-plant", "task_name": "task-3-find-plant", "variation": 3}
ROW_KEYS = {"id", "text", "task_name", "variation", "env", "expert_actions", "max_steps"}


@pytest.fixture(scope="module")
def sim():
    pytest.importorskip("scienceworld", reason="scienceworld not installed (pip install scienceworld==1.2.3)")
    if shutil.which("java") is None:
        pytest.skip("ScienceWorld's simulator needs Java 17+ on PATH")
    env = ScienceWorldEnv(simplification="easy", java_options="-XX:ActiveProcessorCount=1 -XX:+UseSerialGC")
    yield env
    env.close()


@pytest.mark.slow
def test_gold_actions_win_with_reward_one(sim):
    actions = gold_actions(EASY["task_name"], EASY["variation"], "easy", env=sim)
    assert actions and all(isinstance(a, str) and a for a in actions)
    obs = sim.reset(EASY)
    assert obs.info["max_score"] == 100
    # The task description first, then the simulator's initial look around.
    assert obs.info["objective"] and obs.text.index(obs.info["objective"]) < obs.text.index("the agent")
    results = []
    for action in actions:  # gold paths may carry a trailing "wait1" after the win: stop at done
        results.append(sim.step(parse_action(action)))
        if results[-1].done:
            break
    for r in results:
        assert 0.0 <= r.reward <= 1.0
        assert r.info["valid"], r.observation
    assert [r.done for r in results] == [False] * (len(results) - 1) + [True]
    last = results[-1]
    assert last.reward == 1.0 and last.info["won"] and not last.info["lost"] and not last.info["truncated"]
    with pytest.raises(EnvError, match="after the episode ended"):
        sim.step("look around")


@pytest.mark.slow
def test_invalid_failing_and_capped_actions(sim):
    sim.reset({**EASY, "max_steps": 4})
    r = sim.step("xyzzy plugh")  # the simulator's own reply, not an exception
    assert r.observation == "No known action matches that input."
    assert r.info["valid"] is False and not r.done and 0.0 <= r.reward <= 1.0
    r = sim.step("")
    assert r.info["valid"] is False and r.observation
    r = sim.step("look around")
    assert r.info["valid"] is True and not r.done
    r = sim.step("look around")  # the row's max_steps (4) ends the episode as truncated, not won
    assert r.done and r.info["truncated"] and not r.info["won"]

    sim.reset(EASY)
    r = sim.step("focus on agent")  # focusing on the wrong thing fails the task: ScienceWorld scores it -100
    assert r.info["score"] < 0 and r.reward == 0.0
    assert r.done and r.info["lost"] and not r.info["won"]


@pytest.mark.slow
def test_make_tasks_rows_and_disjoint_splits(sim, tmp_path):
    data = scienceworld_data_dir()
    if not (data / "eto_train_indices.json").is_file():
        pytest.skip(f"ETO ScienceWorld splits not found under {data} (set FORGE_SHARED_DATA)")
    split = make_tasks(
        tmp_path,
        n_train=2,
        n_heldout=1,
        seed=3,
        task_names=["task-3-find-plant", "task-3-find-animal"],
        env=sim,
    )
    rows = {
        part: [json.loads(x) for x in (tmp_path / SPLIT_FILES[part]).read_text().splitlines()]
        for part in split
    }
    assert len(rows["train"]) == 2 and len(rows["heldout"]) == 1
    assert {r["task_name"] for r in rows["train"]} == {
        "task-3-find-plant",
        "task-3-find-animal",
    }  # stratified
    for r in rows["train"] + rows["heldout"]:
        assert set(r) >= ROW_KEYS
        assert r["env"] == "scienceworld" and r["text"].startswith("Your task is to")
        assert r["expert_actions"] and r["max_steps"] == 15  # ETO's cap for the find tasks
        # Replayed under ETO's cap: a gold path wins unless it is longer than the cap (find-animal's can be).
        assert r["expert_return"] == 1.0 or len(r["expert_actions"]) >= r["max_steps"]
    eto_train = {tuple(p) for p in json.loads((data / "eto_train_indices.json").read_text())}
    eto_test = {tuple(p) for p in json.loads((data / "eto_test_indices.json").read_text())}
    train = {(r["task_name"], r["variation"]) for r in rows["train"]}
    held = {(r["task_name"], r["variation"]) for r in rows["heldout"]}
    assert train <= eto_train and held <= eto_test and not train & held
    assert len({r["id"] for r in rows["train"] + rows["heldout"]}) == 3


def test_stratified_sample_cycles_task_types_and_is_seeded():
    import random

    pairs = [("a", v) for v in range(50)] + [("b", v) for v in range(3)] + [("c", 7)]
    one = _stratified_sample(pairs, 5, random.Random(0))
    assert one == _stratified_sample(pairs, 5, random.Random(0))
    assert {t for t, _ in one[:3]} == {"a", "b", "c"} and len(set(one)) == 5
    with pytest.raises(EnvError, match="only 54"):
        _stratified_sample(pairs, 60, random.Random(0))


def test_make_tasks_names_missing_data_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FORGE_SHARED_DATA", str(tmp_path))
    assert main(["make-tasks", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "llm" / "scienceworld" / "eto_train_indices.json") in err


def test_bad_rows_name_the_key():
    with pytest.raises(EnvError, match=r"no 'task_name'.*row uid 'r1'"):
        _task_key({"uid": "r1", "variation": 0})
    with pytest.raises(EnvError, match=r"no 'variation'"):
        _task_key({"task_name": "boil"})
    with pytest.raises(EnvError, match=r"'variation' must be an integer, got 'x'"):
        _task_key({"task_name": "boil", "variation": "x"})
    assert _task_key({"task_name": "task-1-boil", "variation": "21"}) == ("task-1-boil", 21)


def test_bad_rows_on_the_simulator(sim):
    with pytest.raises(EnvError, match=r"no 'task_name'"):
        sim.reset({"uid": "r2", "variation": 1})
    with pytest.raises(EnvError, match=r"unknown task_name 'task-99-fly'.*row uid 'r3'"):
        sim.reset({"uid": "r3", "task_name": "task-99-fly", "variation": 0})
    with pytest.raises(EnvError, match=r"variation 100000 out of range 0\.\.299"):
        sim.reset({"task_name": "task-3-find-plant", "variation": 100000})
    with pytest.raises(EnvError, match="before reset"):
        sim.step("look around")  # a failed reset leaves no episode to step


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("rollout.envs.unavailable:AlfWorldEnv", "alfworld-download"),
        ("rollout.envs.unavailable:WebShopEnv", "webshop"),
    ],
)
def test_unavailable_envs_raise_with_install_hint(target, needle):
    with pytest.raises(EnvError, match=needle):
        make_env(target, {"max_steps": 10})


def test_registry_names_scienceworld():
    from rollout.envs.base import ENVIRONMENTS

    assert ENVIRONMENTS["scienceworld"] == f"{ScienceWorldEnv.__module__}:{ScienceWorldEnv.__name__}"
