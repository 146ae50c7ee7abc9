"""Reward plugins written the way TRL users write them, and datasets without a text column (countdown rows).

The contract: plugins are called with keywords (prompts=, completions=, completion_ids=, answer= and every
dataset column), a plugin's signature is checked against what will be supplied before any actor starts, and
``data.prompt_field: null`` builds the problem text from columns with ``prompt.template``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curricula.data import load_prompts
from launch.config import ConfigError, DataConfig, RewardSpec, load_recipe
from rewards.registry import RewardPluginError, call_reward, check_signature, resolve_reward
from rewards.scorer import RewardScorer
from rollout.types import Prompt, Sample

PLUGINS = '''
def trl_style(completions, **kwargs):
    """TRL's documented form: completions first, everything else as keywords."""
    assert kwargs["prompts"][0].startswith("Use")
    return [1.0 if c.strip() == str(t) else 0.0 for c, t in zip(completions, kwargs["target"])]

def countdown(completions, nums, target, **kwargs):
    """Right when the expression uses each number once and evaluates to the target."""
    out = []
    for c, ns, t in zip(completions, nums, target):
        used = sorted(int(x) for x in __import__("re").findall(r"\\d+", c))
        try:
            ok = used == sorted(ns) and abs(eval(c, {"__builtins__": {}}) - t) < 1e-9
        except Exception:
            ok = False
        out.append(1.0 if ok else 0.0)
    return out

def no_kwargs(completions, target):
    """No **kwargs: receives exactly the names it declares."""
    return [float(len(completions) == len(target))] * len(completions)

def misnamed(completion, **kwargs):
    return [0.0] * len(completion)

def wants_column(completions, difficulty, **kwargs):
    return [0.0] * len(completions)

def positional_only(completions, /, **kwargs):
    return [0.0] * len(completions)
'''

ROWS = [
    {"target": 98, "nums": [44, 19, 35]},
    {"target": 10, "nums": [2, 5]},
]


@pytest.fixture
def plugin_file(tmp_path: Path) -> str:
    path = tmp_path / "my_rewards.py"
    path.write_text(PLUGINS)
    return str(path)


@pytest.fixture
def countdown_file(tmp_path: Path) -> Path:
    path = tmp_path / "countdown_train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def countdown_cfg(path: Path) -> DataConfig:
    return DataConfig(source=str(path), prompt_field=None, answer_field="target")


TEMPLATE = "Use {nums} to make {target}."


def test_column_only_dataset_builds_its_text_from_the_template(countdown_file: Path) -> None:
    ds = load_prompts(countdown_cfg(countdown_file), "train", TEMPLATE)
    assert [p.text for p in ds] == ["Use [44, 19, 35] to make 98.", "Use [2, 5] to make 10."]
    assert ds[0].answer == "98" and ds[0].columns == {"target": 98, "nums": [44, 19, 35]}
    with pytest.raises(ValueError, match=r"cannot use \{text\}"):
        load_prompts(countdown_cfg(countdown_file), "train", "{text}")
    with pytest.raises(
        ValueError, match=r"row 0: prompt.template uses \{numbers\} but the row has no such column"
    ):
        load_prompts(countdown_cfg(countdown_file), "train", "Use {numbers} to make {target}.")


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_trl_style_plugins_score_a_column_only_dataset(plugin_file, countdown_file, isolation) -> None:
    ds = load_prompts(countdown_cfg(countdown_file), "train", TEMPLATE)
    completions = ["98", "44 + 19 + 35", "2 * 5", "12"]
    prompts = [ds[0], ds[0], ds[1], ds[1]]
    samples = [Sample(p, [1], [2, 3], [0.0, 0.0], "stop", c, p.uid) for p, c in zip(prompts, completions)]
    specs = [
        RewardSpec(name=f"{plugin_file}:trl_style", weight=1.0),
        RewardSpec(name=f"{plugin_file}:countdown", weight=1.0),
        RewardSpec(name=f"{plugin_file}:no_kwargs", weight=0.0),
    ]
    with RewardScorer(specs, "countdown", 30.0, isolation, []) as scorer:
        metrics = scorer.score(samples)
    assert metrics["reward_failures"] == 0.0
    assert [s.reward_details["trl_style"] for s in samples] == [1.0, 0.0, 0.0, 0.0]
    assert [s.reward_details["countdown"] for s in samples] == [0.0, 1.0, 1.0, 0.0]
    assert [s.reward_details["no_kwargs"] for s in samples] == [1.0] * 4
    assert [s.correct for s in samples] == [False, True, True, False]


def test_call_reward_passes_keywords_and_filters_for_functions_without_kwargs() -> None:
    seen = {}

    def strict(completions, answer):
        seen.update(completions=completions, answer=answer)
        return [1.0]

    assert call_reward(strict, ["p"], ["c"], {"answer": ["a"], "other": [1]}) == [1.0]
    assert seen == {"completions": ["c"], "answer": ["a"]}


def test_signature_check_names_plugin_and_parameter(plugin_file) -> None:
    cols = {"target", "nums"}
    check_signature("ok", resolve_reward(f"{plugin_file}:countdown"), cols)
    check_signature("builtin", resolve_reward("math"), set())  # built-ins take the keyword form too
    with pytest.raises(
        RewardPluginError, match=r"misnamed'.*required parameter 'completion' is not supplied"
    ):
        check_signature(f"{plugin_file}:misnamed", resolve_reward(f"{plugin_file}:misnamed"), cols)
    with pytest.raises(RewardPluginError, match="'difficulty' is not supplied"):
        check_signature("x", resolve_reward(f"{plugin_file}:wants_column"), cols)
    check_signature(
        "x", resolve_reward(f"{plugin_file}:wants_column"), cols | {"difficulty"}
    )  # a kwarg counts
    with pytest.raises(RewardPluginError, match="positional-only"):
        check_signature("x", resolve_reward(f"{plugin_file}:positional_only"), cols)


def test_a_misnamed_parameter_fails_before_any_actor_starts(plugin_file, countdown_file, tmp_path) -> None:
    """build_run checks plugin signatures right after loading the data, before Ray or any actor starts."""
    from launch.setup import check_reward_signatures

    overrides = [
        f"data.source={countdown_file}",
        "data.prompt_field=null",
        "data.answer_field=target",
        f"prompt.template='{TEMPLATE}'",
        f"rewards.functions=[{{name: '{plugin_file}:wants_column'}}]",
    ]
    cfg = load_recipe(None, overrides)
    train = load_prompts(cfg.data, "train", cfg.prompt.template)
    with pytest.raises(
        ConfigError, match=r"rewards.functions\[0\]: .*wants_column.*'difficulty' is not supplied"
    ):
        check_reward_signatures(cfg, train, None)
    ok = load_recipe(None, [*overrides[:-1], f"rewards.functions=[{{name: '{plugin_file}:countdown'}}]"])
    check_reward_signatures(ok, train, None)


def test_template_with_text_and_no_prompt_field_is_a_config_error(countdown_file) -> None:
    with pytest.raises(ConfigError, match=r"prompt.template: .*uses \{text\} but data.prompt_field is null"):
        load_recipe(None, [f"data.source={countdown_file}", "data.prompt_field=null"])


def test_builtin_math_reward_gets_the_extracted_answer_not_the_raw_column() -> None:
    p = Prompt(
        "g", "Natalia sold clips ...", "72", columns={"question": "Natalia ...", "answer": "... #### 72"}
    )
    s = Sample(p, [1], [2], [0.0], "stop", "The answer is 72.", "g")
    with RewardScorer([RewardSpec(name="math")], None, 30.0, "inline", []) as scorer:
        scorer.score([s])
    assert s.reward == 1.0
