"""PPlug's side module (trainer/pplug.py), the side-module contract (trainer/side_modules.py), the encoder cache
(rollout/text_encoder.py), the next-query data (curricula/pplug_data.py) and the recipe checks.

Pure logic and the tiny model in-process; the real learners and the loop are in tests/test_pplug_loop.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rollout.types import Prompt, Sample
from trainer.side_modules import SideModuleSpec

ROOT = Path(__file__).resolve().parents[2]


def _lm(tiny_model: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()


def _features(B: int, H: int, e: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "history": torch.randn(B, H, e, generator=g),
        "history_mask": torch.ones(B, H),
        "query": torch.randn(B, e, generator=g),
    }


def test_side_module_logits_align_with_input_ids_and_only_side_params_train(tiny_model):
    from trainer import side_modules
    from trainer.learner import token_logprobs

    lm = _lm(tiny_model)
    e = lm.config.hidden_size
    m = side_modules.build(lm, SideModuleSpec("pplug", {"instruction_tokens": 2}))
    assert m.n_prefix == 3
    ids = torch.randint(4, 50, (3, 7))
    att = torch.ones_like(ids)
    att[2, 5:] = 0
    feats = _features(3, 4, e)
    out = m(ids, att, features=feats)
    assert out.logits.shape == (3, 7, lm.config.vocab_size)
    # the same numbers as the LM reading [I ; P_u ; Emb(x)] by hand, prefix positions cut off
    pre = m.prefix(3, feats, torch.float32)
    x = torch.cat([pre, lm.get_input_embeddings()(ids)], 1)
    full = lm(inputs_embeds=x, attention_mask=torch.cat([torch.ones(3, 3, dtype=att.dtype), att], 1)).logits
    assert torch.allclose(out.logits, full[:, 3:], atol=1e-5)

    lp, _ = token_logprobs(m, ids, att, features=feats)
    lp[:, 1:].sum().backward()
    trained = {n for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert trained == {"instruction", "input_proj.weight", "input_proj.bias"} | {
        f"mlp.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")
    }
    assert all(not p.requires_grad and p.grad is None for n, p in m.named_parameters() if n.startswith("lm."))


def test_user_embedding_attends_to_the_matching_item_and_ignores_padding(tiny_model):
    from trainer import side_modules

    lm = _lm(tiny_model)
    e = lm.config.hidden_size
    m = side_modules.build(lm, SideModuleSpec("pplug", {"tau": 0.01}))
    f = _features(2, 3, e, seed=1)
    f["query"] = f["history"][:, 1].clone()  # the input equals item 1: attention must pick it
    f["history"][0, 2] = f["query"][0]  # a padded slot holding the best match: must still get weight 0
    f["history_mask"][0, 2] = 0
    f["history_mask"][1] = 0  # a user with no history: P_u = 0
    p_u, w = m.user_embedding(f)
    assert w[0, 1] > 0.99 and w[0, 2] == 0
    assert torch.all(w[1] == 0) and torch.all(p_u[1] == 0)
    assert torch.allclose(w[0].sum(), torch.tensor(1.0))


def test_build_refuses_a_side_module_that_leaves_the_lm_trainable(tiny_model):
    from trainer import side_modules
    from trainer.side_modules import SIDE_MODULES, SideModuleEntry

    class Leaky(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm  # forgot lm.requires_grad_(False)

    SIDE_MODULES["leaky_test"] = SideModuleEntry(dict, lambda lm, o: Leaky(lm), "x:y")
    try:
        with pytest.raises(RuntimeError, match="left LM parameters trainable"):
            side_modules.build(_lm(tiny_model), SideModuleSpec("leaky_test"))
    finally:
        del SIDE_MODULES["leaky_test"]


def test_side_module_save_load_round_trip(tiny_model, tmp_path):
    from trainer import side_modules

    m = side_modules.build(_lm(tiny_model), SideModuleSpec("pplug", {"instruction_tokens": 1}))
    with torch.no_grad():
        m.instruction.add_(1.0)
    spec = SideModuleSpec("pplug", {"instruction_tokens": 1})
    state = side_modules.trainable_state(m, m.state_dict())
    assert state and not any(k.startswith("lm.") for k in state)
    side_modules.save(tmp_path / "side_module", spec, state, tiny_model)
    back = side_modules.load(tmp_path)
    assert torch.equal(back.instruction, m.instruction)
    ids = torch.randint(4, 50, (1, 5))
    f = _features(1, 2, m.lm.config.hidden_size)
    assert torch.allclose(back(ids, torch.ones_like(ids), f).logits, m(ids, torch.ones_like(ids), f).logits)
    with pytest.raises(FileNotFoundError, match=r"side_module\.json"):
        side_modules.load(tmp_path / "nowhere")


def test_encoder_cache_is_keyed_by_model_and_texts(tiny_model, tmp_path):
    from rollout.text_encoder import TextEncoder

    cache = tmp_path / "cache"
    a = TextEncoder(tiny_model, cache)
    pa = a.precompute(["alpha", "beta", "alpha"])
    assert pa.is_file() and not a.loaded_from_cache
    direct = a._encode_uncached(["beta"])[0]
    assert torch.allclose(a.encode(["beta"])[0], direct, atol=1e-6)

    b = TextEncoder(tiny_model, cache)
    assert b.precompute(["beta", "alpha"]) == pa and b.loaded_from_cache  # same model, same texts: loaded
    assert torch.equal(b.encode(["alpha"]), a.encode(["alpha"]))
    assert TextEncoder(tiny_model, cache).precompute(["alpha", "gamma"]) != pa  # other data: other file

    other = tmp_path / "other_model"
    shutil.copytree(tiny_model, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-5 if cfg.get("rms_norm_eps") != 1e-5 else 1e-6
    (other / "config.json").write_text(json.dumps(cfg))
    c = TextEncoder(str(other), cache)
    assert c.key != a.key and c.precompute(["alpha", "beta"]) != pa  # other model: other file


def _sample(uid: str, history, query: str = "q") -> Sample:
    p = Prompt(uid, f"Current query: {query}", None, None, {"history": history, "query": query})
    return Sample(p, [1], [2], [], "data", "r", uid)


def test_history_features_pad_per_batch_and_name_bad_rows(tiny_model, tmp_path):
    from trainer.pplug import PPlugOptions, history_features
    from trainer.side_modules import FeatureContext

    rows = [_sample("a", ["x1", "x2", "x3"]), _sample("b", [])]
    opts = PPlugOptions(input_field="query", cache_dir=str(tmp_path), max_history=2)
    build = history_features(opts, FeatureContext(tiny_model, [s.prompt for s in rows]))
    f = build(rows)
    assert f["history"].shape[:2] == (2, 2) and f["query"].shape[0] == 2
    assert f["history_mask"].tolist() == [[1.0, 1.0], [0.0, 0.0]]  # the last 2 items; an empty history
    with pytest.raises(ValueError, match=r"'c'.*no 'history' column"):
        history_features(opts, FeatureContext(tiny_model, [Prompt("c", "t", None, None, {})]))
    assert history_features(PPlugOptions(use_history=False), FeatureContext(tiny_model, []))(rows) == {}


def test_pplug_data_history_retrieval_and_session_split(tmp_path):
    from curricula.gqr_data import LoggedQuery, Session
    from curricula.pplug_data import history_before, rows, top_k

    s = Session(
        "7",
        [
            LoggedQuery("java read file", [2], {1: "t1", 2: "Reading a file in Java"}),
            LoggedQuery("java read file utf8", [], {1: "u1"}),
            LoggedQuery("java nio files", [1], {1: "NIO Files.readAllLines"}),
        ],
    )
    assert history_before(s, 0) == ["Reading a file in Java"]
    assert history_before(s, 1) == ["java read file", "Reading a file in Java"]
    r = rows([s], k=1)
    assert [x["response"] for x in r] == ["java read file utf8", "java nio files"]
    assert r[1]["history"] == ["java read file", "Reading a file in Java"]
    assert top_k("spring bean scope", ["maven build", "spring bean lifecycle", "jvm heap"], 1) == [
        "spring bean lifecycle"
    ]
    assert (
        "- (none)"
        in rows([Session("8", [LoggedQuery("a", [], {}), LoggedQuery("b", [], {})])], 3)[0][
            "prompt_retrieval"
        ]
    )

    shared = ROOT.parent / "shared" / "data" / "llm" / "cosobe_query_sessions" / "sessions.jsonl"
    if not shared.is_file():
        pytest.skip("shared CosoBe sessions not present")
    from curricula.pplug_data import build

    meta = build(shared, tmp_path / "d")
    train = {json.loads(x)["session"] for x in (tmp_path / "d" / "train.jsonl").read_text().splitlines()}
    test = {json.loads(x)["session"] for x in (tmp_path / "d" / "test.jsonl").read_text().splitlines()}
    assert train and test and not train & test  # a held-out user never reaches training
    assert meta["rows"]["train"] > 100 and meta["rows"]["test"] > 20


def test_recipe_checks_name_the_side_module_problem(tmp_path, monkeypatch):
    from launch.config import ConfigError, load_recipe

    monkeypatch.chdir(ROOT)
    recipe = ROOT / "recipes" / "pplug_tiny_cpu.yaml"
    stub = tmp_path / "m"
    stub.mkdir()
    (stub / "config.json").write_text("{}")
    (stub / "model.safetensors").write_bytes(b"")
    base = [f"model.path={stub}"]
    assert load_recipe(recipe, base).model.side_module.name == "pplug"
    cases = {
        "model.side_module.name=nope": "unknown side module 'nope'",
        "model.side_module.options.tau=0": "tau must be > 0",
        "model.side_module.options.colour=1": "colour",
        "model.lora.enabled=true": "cannot be combined",
        "strategy.name=grpo": "not given the side module's per-row soft prompts",
    }
    for override, msg in cases.items():
        with pytest.raises(ConfigError, match=r"model\.side_module") as e:
            load_recipe(recipe, [*base, override])
        assert msg in str(e.value), (override, str(e.value))
