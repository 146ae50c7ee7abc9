"""Bad inputs, table-driven: every malformed recipe, override, plugin, model folder or data row makes
``python -m launch.train`` exit 2 with one stderr line naming the key or file:row, before any actor starts.

Run with ``-s`` to see the table of cases and outcomes (it is printed either way on failure)."""

from __future__ import annotations

import json

import pytest

import launch.ray_utils
from launch.train import main

GOOD_ROW = {"question": "What is 1 + 1?", "answer": "2"}

# (case, recipe text (None: no recipe file), overrides, data rows or raw text (None: arithmetic), expected text)
CASES: list[tuple[str, str | None, list[str], list | str | None, str]] = [
    ("recipe file missing", "MISSING", [], None, "recipe file not found"),
    ("recipe YAML syntax", "trainer: [lr: 1\n", [], None, "r.yaml"),
    ("unknown top-level key", "foo: 1\n", [], None, "foo"),
    ("unknown nested key", "trainer:\n  lrr: 1e-5\n", [], None, "trainer.lrr"),
    ("wrong type", "trainer:\n  lr: fast\n", [], None, "trainer.lr"),
    ("override not key=value", None, ["total_steps"], None, "not key=value"),
    ("override wrong type", None, ["rollout.max_new_tokens=lots"], None, "rollout.max_new_tokens"),
    ("negative steps", None, ["total_steps=-1"], None, "total_steps"),
    ("zero prompts per step", None, ["curriculum.prompts_per_step=0"], None, "curriculum.prompts_per_step"),
    ("zero samples", None, ["curriculum.n_samples=0"], None, "curriculum.n_samples"),
    ("zero new tokens", None, ["rollout.max_new_tokens=0"], None, "rollout.max_new_tokens"),
    ("negative temperature", None, ["rollout.temperature=-1"], None, "rollout.temperature"),
    ("negative lr", None, ["trainer.lr=-1e-5"], None, "trainer.lr"),
    ("zero micro-batch", None, ["trainer.micro_batch_size=0"], None, "trainer.micro_batch_size"),
    ("ZeRO stage 4", None, ["trainer.zero_stage=4"], None, "trainer.zero_stage"),
    ("no rollout workers", None, ["rollout.num_workers=0"], None, "rollout.num_workers"),
    ("no learners", None, ["trainer.num_learners=0"], None, "trainer.num_learners"),
    ("negative KL", None, ["algorithm.kl_coef=-0.1"], None, "algorithm.kl_coef"),
    (
        "new tokens over context",
        None,
        ["rollout.max_model_len=16", "rollout.max_new_tokens=64"],
        None,
        "max_model_len",
    ),
    ("missing data file", None, ["data.source=nowhere/train.jsonl"], None, "data.source"),
    ("unsupported data file type", None, ["data.source=DATA_CSV"], None, "unsupported file type"),
    ("missing model folder", None, ["model.path=/no/such/model"], None, "model.path"),
    ("unknown builtin model", None, ["model.path=builtin:gpt-9"], None, "model.path"),
    ("folder that is not a model", None, ["model.path=NOT_A_MODEL"], [GOOD_ROW], "cannot load a tokenizer"),
    ("pickled weights only", None, ["model.path=PICKLED"], None, "has no .safetensors weights"),
    (
        "unknown reward module",
        None,
        ["rewards.functions=[{name: 'no_such_mod.x:fn'}]"],
        None,
        "rewards.functions[0].name",
    ),
    (
        "missing reward file",
        None,
        ["rewards.functions=[{name: 'missing/file.py:score'}]"],
        None,
        "missing/file.py",
    ),
    (
        "reward file without the function",
        None,
        ["rewards.functions=[{name: 'PLUGIN:nope'}]"],
        None,
        "has no attribute 'nope'",
    ),
    (
        "reward that is not callable",
        None,
        ["rewards.functions=[{name: 'PLUGIN:CONSTANT'}]"],
        None,
        "is not callable",
    ),
    (
        "reward parameter nothing supplies",
        None,
        ["rewards.functions=[{name: 'PLUGIN:needs_level'}]"],
        [GOOD_ROW],
        "'level' is not supplied",
    ),
    (
        "reward kwargs a plugin rejects",
        None,
        ["rewards.functions=[{name: overlong}]"],
        None,
        "rewards.functions[0].kwargs",
    ),
    ("unknown strategy", None, ["strategy.name=nope"], None, "strategy.name"),
    ("unknown strategy option", None, ["strategy.options.bogus=1"], None, "strategy.options"),
    ("unknown curriculum", None, ["curriculum.name=nope"], None, "curriculum.name"),
    (
        "bad curriculum option value",
        None,
        ["curriculum.name=cures", "curriculum.options.sigma_estimator=magic"],
        None,
        "sigma_estimator",
    ),
    ("unknown advantage", None, ["algorithm.advantage=ppo_gae"], None, "algorithm.advantage"),
    ("unknown answer extractor", None, ["data.answer_extractor=nope"], None, "data.answer_extractor"),
    ("template needs text, no prompt field", None, ["data.prompt_field=null"], [GOOD_ROW], "prompt.template"),
    ("negative eval prompts", None, ["eval.num_prompts=-1"], None, "eval.num_prompts"),
    (
        "data row missing its field",
        None,
        [],
        [GOOD_ROW, {"answer": "3"}],
        "train.jsonl row 1: no field 'question'",
    ),
    (
        "data field of the wrong type",
        None,
        [],
        [GOOD_ROW, {"question": ["a", "list"], "answer": "3"}],
        "train.jsonl row 1: field 'question'",
    ),
    (
        "empty problem text",
        None,
        [],
        [GOOD_ROW, {"question": "  ", "answer": "3"}],
        "train.jsonl row 1: field 'question' is empty",
    ),
    ("bad JSON line", None, [], json.dumps(GOOD_ROW) + "\n{not json\n", "train.jsonl line 2: invalid JSON"),
    (
        "row that is not an object",
        None,
        [],
        json.dumps(GOOD_ROW) + "\n[1, 2]\n",
        "train.jsonl row 1: expected a JSON object",
    ),
    (
        "duplicate row ids",
        None,
        [],
        [{**GOOD_ROW, "id": "a"}, {**GOOD_ROW, "id": "a"}],
        "train.jsonl row 1: duplicate id 'a'",
    ),
]

PLUGIN = """
CONSTANT = 3

def needs_level(completions, level, **kwargs):
    return [float(x) for x in level]
"""


@pytest.fixture(scope="module")
def table():
    rows: list[tuple[str, str, str]] = []
    yield rows
    width = max(len(c) for c, _, _ in rows) if rows else 10
    print("\n\nbad input cases (exit code 2, one stderr line, no actor started):")
    for case, outcome, line in rows:
        print(f"  {case:<{width}}  {outcome:<4}  {line}")


@pytest.mark.parametrize(
    ("case", "recipe", "overrides", "data", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input(case, recipe, overrides, data, expected, tiny_model, tmp_path, capsys, monkeypatch, table):
    def no_actors(*a, **k):
        raise AssertionError(f"{case}: Ray was started (an actor would have been created)")

    monkeypatch.setattr(launch.ray_utils, "init_ray", no_actors)
    plugin = tmp_path / "plugins.py"
    plugin.write_text(PLUGIN)
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "config.json").write_text("{}")
    (tmp_path / "not_a_model" / "model.safetensors").write_bytes(b"")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text("{}")
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"")
    (tmp_path / "data.csv").write_text("question,answer\n")
    subst = {
        "PLUGIN": str(plugin),
        "NOT_A_MODEL": str(tmp_path / "not_a_model"),
        "PICKLED": str(tmp_path / "pickled"),
        "DATA_CSV": str(tmp_path / "data.csv"),
    }
    base = [f"model.path={tiny_model}", f"output_dir={tmp_path / 'run'}", "eval.num_prompts=0"]
    if data is not None:
        path = tmp_path / "train.jsonl"
        path.write_text(data if isinstance(data, str) else "".join(json.dumps(r) + "\n" for r in data))
        base.append(f"data.source={path}")
    args = list(base)
    for o in overrides:
        for k, v in subst.items():
            o = o.replace(k, v)
        args.append(o)
    if recipe == "MISSING":
        argv = [str(tmp_path / "missing.yaml"), *args]
    elif recipe is not None:
        (tmp_path / "r.yaml").write_text(recipe)
        argv = [str(tmp_path / "r.yaml"), *args]
    else:
        argv = args
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    table.append((case, "ok" if rc == 2 and expected in err else "FAIL", err[:160]))
    assert rc == 2, f"{case}: exit {rc}"
    assert err.startswith("config error:") and "\n" not in err, err
    assert expected in err, err
