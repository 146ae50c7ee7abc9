"""Offline row formats: preference / ranked / sft rows become prompts, bad rows fail naming file and row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curricula.data import load_prompts
from launch.config import ConfigError, DataConfig, load_recipe

ROOT = Path(__file__).resolve().parents[2]
CHAT = [{"role": "user", "content": "Name a colour."}]


def _write(tmp_path: Path, rows: list[dict], name: str = "train.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _cfg(path: Path, fmt: str, **kw) -> DataConfig:
    return DataConfig(source=str(path), format=fmt, **kw)


def test_preference_chat_rows(tmp_path):
    rows = [
        {
            "chosen": [*CHAT, {"role": "assistant", "content": "Blue."}],
            "rejected": [*CHAT, {"role": "assistant", "content": "Seven."}],
        }
    ]
    ds = load_prompts(_cfg(_write(tmp_path, rows), "preference"))
    p = ds[0]
    assert p.text == "Name a colour." and p.uid == "train-0"
    assert p.columns["responses"] == ["Blue.", "Seven."] and p.columns["scores"] == [1.0, 0.0]
    assert p.columns["messages"] == CHAT


def test_preference_string_rows_and_ranked_order(tmp_path):
    pref = _write(tmp_path, [{"question": "q1", "chosen": "good", "rejected": "bad"}])
    p = load_prompts(_cfg(pref, "preference", prompt_field="question"))[0]
    assert p.text == "q1" and p.columns["responses"] == ["good", "bad"] and "messages" not in p.columns
    ranked = _write(
        tmp_path, [{"question": "q", "responses": ["b", "a", "c"], "scores": [0.5, 0.9, 0.1]}], "r.jsonl"
    )
    p = load_prompts(_cfg(ranked, "ranked", prompt_field="question"))[0]
    assert p.columns["responses"] == ["a", "b", "c"] and p.columns["scores"] == [0.9, 0.5, 0.1]
    sft = _write(tmp_path, [{"question": "q", "response": "r"}], "s.jsonl")
    assert load_prompts(_cfg(sft, "sft", prompt_field="question"))[0].columns["responses"] == ["r"]


BAD = [
    ({"chosen": "x"}, "preference", "row 1: missing field 'rejected'"),
    (
        {"question": "q", "chosen": "   ", "rejected": "y"},
        "preference",
        "row 1: field 'chosen': empty response",
    ),
    ({"question": "q", "responses": ["only"], "scores": [1]}, "ranked", "at least 2 responses, got 1"),
    ({"question": "q", "responses": ["a", "b"], "scores": [1]}, "ranked", "2 responses but 1 scores"),
    (
        {
            "chosen": [*CHAT, {"role": "assistant", "content": "a"}],
            "rejected": [{"role": "user", "content": "Other."}, {"role": "assistant", "content": "b"}],
        },
        "preference",
        "its prompt messages differ",
    ),
    (
        {
            "chosen": [*CHAT, {"role": "user", "content": "a"}],
            "rejected": [*CHAT, {"role": "assistant", "content": "b"}],
        },
        "preference",
        "not 'assistant'",
    ),
]


@pytest.mark.parametrize(("row", "fmt", "message"), BAD)
def test_bad_rows_name_file_and_row(tmp_path, row, fmt, message):
    good = {"question": "q", "chosen": "a", "rejected": "b", "responses": ["a", "b"], "scores": [1, 0]}
    path = _write(tmp_path, [good, row])
    with pytest.raises(ValueError, match=r"train\.jsonl row 1") as e:
        load_prompts(_cfg(path, fmt, prompt_field="question"))
    assert message in str(e.value)
    ds = load_prompts(_cfg(path, fmt, prompt_field="question", skip_invalid=True))
    assert len(ds) == 1 and ds.skipped == 1  # skipped and counted, never dropped silently


def test_missing_role_fails_at_validation(tmp_path):
    # a loss that needs a role the recipe does not give fails before any actor starts, naming the key
    stub = tmp_path / "ref"
    stub.mkdir()
    (stub / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"aux_models\.oracle\.path: .*is not a model folder"):
        load_recipe(ROOT / "recipes" / "sft_tiny_cpu.yaml", ["aux_models={oracle: {path: nowhere}}"])
    with pytest.raises(ConfigError, match=r"strategy\.options\.loss: unknown loss 'dpoo'"):
        load_recipe(ROOT / "recipes" / "online_dpo_tiny_cpu.yaml", ["strategy.options.loss=dpoo"])
    with pytest.raises(ConfigError, match=r"data\.format: unknown format 'pairs'"):
        load_recipe(ROOT / "recipes" / "grpo_default.yaml", ["data.format=pairs"])
    cfg = load_recipe(
        ROOT / "recipes" / "online_dpo_tiny_cpu.yaml", [f"aux_models={{reference: {{path: {stub}}}}}"]
    )
    from launch.config import needed_roles

    assert needed_roles(cfg) == {"reference": str(stub)}
    assert needed_roles(load_recipe(ROOT / "recipes" / "grpo_default.yaml")) == {}  # kl_coef 0: no reference


def test_loss_needing_an_unset_role_names_the_key():
    from trainer.losses import LOSSES, register_loss

    @register_loss("_needs_oracle", roles=("oracle",))
    def _loss(inp, term, reduce):  # pragma: no cover - never run
        raise AssertionError

    try:
        with pytest.raises(
            ConfigError, match=r"aux_models\.oracle: the '_needs_oracle' loss needs a frozen 'oracle'"
        ):
            load_recipe(
                ROOT / "recipes" / "online_dpo_tiny_cpu.yaml", ["strategy.options.loss=_needs_oracle"]
            )
    finally:
        del LOSSES["_needs_oracle"]
