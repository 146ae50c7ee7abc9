"""Recipes are data validated before any compute: every shipped YAML loads, bad input fails in one line."""

from pathlib import Path

import pytest

from launch.config import ConfigError, RecipeConfig, load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def _model_override(path: Path, tmp_path: Path) -> list[str]:
    """GPU-scale recipes name model folders that do not exist here: point them at a stub folder."""
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    model = (data.get("model") or {}).get("path", "builtin:smollm2-135m-instruct")
    if str(model).startswith("builtin:") or Path(str(model)).expanduser().is_dir():
        return []
    stub = tmp_path / "stub_model"
    stub.mkdir(exist_ok=True)
    (stub / "config.json").write_text("{}")
    (stub / "model.safetensors").write_bytes(b"")  # the recipe check only looks for safetensors weights
    return [f"model.path={stub}"]


# Files GQR recipes read that a command builds (curricula/gqr_data.py, rewards/ctr_model.py) or a user supplies:
# validated against ones built here from the shared CosoBe sessions.
COSOBE = ROOT.parent / "shared" / "data" / "llm" / "cosobe_query_sessions" / "sessions.jsonl"
GQR_BUILT = {"runs/gqr/data/": "data/", "data/gqr/": "data/", "runs/gqr/ctr": "ctr", "models/gqr_ctr": "ctr"}


@pytest.fixture(scope="module")
def gqr_built(tmp_path_factory) -> Path:
    from curricula.gqr_data import build
    from rewards.ctr_model import load_train_config, train

    if not COSOBE.is_file():
        pytest.skip("shared CosoBe sessions not present: GQR recipes cannot be validated")
    out = tmp_path_factory.mktemp("gqr")
    build(COSOBE, out / "data")
    over = [f"output_dir={out / 'ctr'}", f"data.train={out / 'data/ctr_train.jsonl'}", "epochs=1"]
    train(
        load_train_config(str(ROOT / "recipes" / "gqr_ctr_cpu.yaml"), [*over, "data.test=null"]),
        lambda *_: None,
    )
    return out


@pytest.fixture(scope="module")
def pplug_built(tmp_path_factory) -> Path:
    """The next-query data recipes/pplug_cosobe_cpu.yaml reads (curricula/pplug_data.py), built from CosoBe."""
    from curricula.pplug_data import build

    if not COSOBE.is_file():
        pytest.skip("shared CosoBe sessions not present: the PPlug CosoBe recipe cannot be validated")
    out = tmp_path_factory.mktemp("pplug")
    build(COSOBE, out / "data")
    return out


def _gqr_recipe(recipe: Path, built: Path, tmp_path: Path) -> Path:
    """A copy of a GQR recipe whose built or user-supplied paths point at ``built``."""
    text = recipe.read_text()
    for src, dst in GQR_BUILT.items():
        text = text.replace(src, f"{built / dst}{'/' if dst.endswith('/') else ''}")
    copy = tmp_path / recipe.name
    copy.write_text(text)
    return copy


def test_ctr_trainer_config_loads():
    from rewards.ctr_model import load_train_config

    cfg = load_train_config(str(ROOT / "recipes" / "gqr_ctr_cpu.yaml"))
    assert cfg.epochs >= 1 and cfg.data.train.endswith("ctr_train.jsonl")
    with pytest.raises(Exception, match="epoch"):
        load_train_config(str(ROOT / "recipes" / "gqr_ctr_cpu.yaml"), ["epoch=3"])


# Trainer configs of auxiliary models (not launch.train recipes): checked by their own loader above.
NOT_RECIPES = {"gqr_ctr_cpu.yaml"}


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_loads(recipe: Path, tmp_path: Path, monkeypatch, request):
    if recipe.name in NOT_RECIPES:
        pytest.skip(f"{recipe.name} configures an auxiliary model's trainer (test_ctr_trainer_config_loads)")
    monkeypatch.chdir(ROOT)  # recipes name data files relative to the project root
    if recipe.name.startswith("gqr_"):
        recipe = _gqr_recipe(recipe, request.getfixturevalue("gqr_built"), tmp_path)
    if recipe.name == "pplug_cosobe_cpu.yaml":
        built = request.getfixturevalue("pplug_built")
        copy = tmp_path / recipe.name
        copy.write_text(recipe.read_text().replace("runs/pplug/data/", f"{built / 'data'}/"))
        recipe = copy
    overrides = _model_override(recipe, tmp_path)
    data = __import__("yaml").safe_load(recipe.read_text()) or {}
    src = str((data.get("data") or {}).get("source", "arithmetic"))
    if src not in ("arithmetic",) and not src.startswith("hf:") and not (ROOT / src).is_file():
        # GPU-scale recipes name user-supplied files: validate them against the shared copies of that data
        shared = ROOT.parent / "shared" / "data" / "llm"
        fmt = (data.get("data") or {}).get("format", "prompt")
        stand_in = (
            shared / "ultrafeedback_binarized_500" / "train_prefs.jsonl"
            if fmt == "preference"
            else shared / "gsm8k" / "train.jsonl"
        )
        if not stand_in.is_file():
            pytest.skip(f"{recipe.name}: data file {src} is supplied by the user")
        overrides.append(f"data.source={stand_in}")
    cfg = load_recipe(recipe, overrides)
    assert isinstance(cfg, RecipeConfig)
    assert cfg.total_steps >= 1


def test_default_recipe_exists():
    assert (ROOT / "recipes" / "grpo_default.yaml").is_file()
    assert (ROOT / "recipes" / "grpo_gsm8k.yaml").is_file()


def _err(tmp_path: Path, text: str, *overrides: str) -> str:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_recipe(p, list(overrides))
    msg = str(e.value)
    assert "\n" not in msg, "errors are one line"
    return msg


def test_unknown_key_named(tmp_path):
    msg = _err(tmp_path, "trainer:\n  lrr: 1e-5\n")
    assert "trainer.lrr" in msg and "r.yaml" in msg


def test_wrong_type_named(tmp_path):
    assert "trainer.lr" in _err(tmp_path, "trainer:\n  lr: fast\n")


def test_override_errors(tmp_path):
    assert "rollout.max_new_tokens" in _err(tmp_path, "", "rollout.max_new_tokens=lots")
    assert "not key=value" in _err(tmp_path, "", "total_steps")


def test_missing_files_named(tmp_path):
    assert "data.source" in _err(tmp_path, "data:\n  source: nowhere/train.jsonl\n")
    assert "model.path" in _err(tmp_path, "model:\n  path: /no/such/model\n")
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_bad_reward_plugin_named(tmp_path):
    msg = _err(tmp_path, "rewards:\n  functions:\n    - {name: 'no_such_module.x:fn'}\n")
    assert "rewards.functions[0].name" in msg and "no_such_module" in msg
    msg = _err(tmp_path, "rewards:\n  functions:\n    - {name: 'missing/file.py:score'}\n")
    assert "missing/file.py" in msg


def test_bad_component_and_options_named(tmp_path):
    assert "strategy.name" in _err(tmp_path, "strategy: {name: nope}\n")
    assert "strategy.options" in _err(tmp_path, "strategy: {name: grpo, options: {bogus: 1}}\n")
    assert "curriculum.name" in _err(tmp_path, "curriculum: {name: nope}\n")
    assert "algorithm.advantage" in _err(tmp_path, "algorithm: {advantage: ppo_gae}\n")
    assert "trainer.zero_stage" in _err(tmp_path, "trainer: {zero_stage: 4}\n")


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    from launch.train import main

    assert main([str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("config error:") and "nope.yaml" in err and "\n" not in err


def test_engine_logprobs_with_truncated_sampling_and_bad_mismatch_options_are_refused(tmp_path):
    """Engine log-probs under top-p/top-k are renormalised over the kept tokens: the learner cannot reproduce
    them, so the PPO ratio against them would be biased; the mismatch options have sane ranges."""
    msg = _err(tmp_path, "algorithm: {logprobs_source: engine}\nrollout: {top_p: 0.9}\n")
    assert "algorithm.logprobs_source" in msg and "top_p" in msg
    assert "algorithm.logprobs_source" in _err(
        tmp_path, "algorithm: {logprobs_source: engine}\nrollout: {top_k: 20}\n"
    )
    assert "algorithm.tis_cap" in _err(tmp_path, "algorithm: {tis_cap: 0.5}\n")
    assert "algorithm.mismatch_seq_threshold" in _err(tmp_path, "algorithm: {mismatch_seq_threshold: 1.0}\n")
    p = tmp_path / "ok.yaml"
    p.write_text("algorithm: {logprobs_source: engine}\nrollout: {temperature: 0.7}\n")
    assert (
        load_recipe(p).algorithm.logprobs_source == "engine"
    )  # temperature alone is fine: processed log-probs
