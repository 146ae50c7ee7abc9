"""PPlug on the real learners (DeepSpeed on gloo in Ray actors) and through the real loop.

(a) LearnerGroup with a side module: the optimizer holds exactly the side module's parameters, the frozen LM's
    weights stay bit-identical while the side module moves, the checkpoint holds side_module/ and no model/,
    and loading it gives back the trained weights. 2 ranks (ZeRO-2): ranks agree on the update.
(b) ``recipes/pplug_tiny_cpu.yaml`` with the tiny model: the driver encodes every history once (disk cache),
    the SFT strategy attaches the features, the held-out NLL is logged and falls, and the checkpoint loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from launch.config import load_recipe
from launch.train import train
from tests.conftest import tiny_overrides
from trainer.batch import LossTerm, TrainBatch, collate
from trainer.side_modules import SideModuleSpec

ROOT = Path(__file__).resolve().parents[1]


def _optimizer_params(learner) -> tuple[int, int, int]:
    """(parameters the optimizer holds, of them side-module ones, LM parameters requiring grad) on this rank."""
    opt = getattr(learner.optimizer, "optimizer", learner.optimizer)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    module = learner.engine.module
    side = {id(p) for n, p in module.named_parameters() if not n.startswith("lm.")}
    lm_trainable = sum(p.requires_grad for n, p in module.named_parameters() if n.startswith("lm."))
    return len(held), len(held & side), lm_trainable


def _batch(tok, e: int) -> TrainBatch:
    prompts = [list(tok(f"<user>{q}\n<assistant>", add_special_tokens=False)["input_ids"]) for q in "abcd"]
    resp = [list(tok(t, add_special_tokens=False)["input_ids"]) for t in ["[P] x", "[J] y", "[P] z", "[J] w"]]
    col = collate(prompts, resp, pad_id=0)
    g = torch.Generator().manual_seed(0)
    feats = {
        "history": torch.randn(4, 3, e, generator=g),
        "history_mask": torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0]]),
        "query": torch.randn(4, e, generator=g),
    }
    return TrainBatch(
        col.input_ids, col.attention_mask, [LossTerm("nll", 1.0, col.response_mask)], features=feats
    )


@pytest.mark.parametrize("world,stage", [(1, 0), (2, 2)])
def test_side_module_learner_trains_only_the_side_module(tiny_model, ray_cluster, tmp_path, world, stage):
    from transformers import AutoConfig, AutoTokenizer

    from trainer import side_modules
    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec

    tok = AutoTokenizer.from_pretrained(tiny_model)
    batch = _batch(tok, AutoConfig.from_pretrained(tiny_model).hidden_size)
    spec = LearnerSpec(
        model_path=tiny_model,
        dtype="float32",
        zero_stage=stage,
        lr=1e-2,
        micro_batch_size=2,
        threads=1,
        side_module=SideModuleSpec("pplug", {"instruction_tokens": 2}),
    )
    group = LearnerGroup(spec, num_learners=world)
    try:
        held, side, lm_trainable = group.call("run", "tests.test_pplug_loop:_optimizer_params")[0]
        assert lm_trainable == 0
        if stage == 0:  # ZeRO-1/2 hold flattened partitions instead of the parameters themselves
            assert held == side == 1 + 2 + 4  # I; input_proj w, b; MLP 2 × (w, b)
        before = group.call("_gathered_state_dict")[0]
        first = group.train(batch, pad_id=0)
        for _ in range(3):
            last = group.train(batch, pad_id=0)
        assert last["nan_skipped"] == 0 and last["loss/nll"] < first["loss/nll"]
        after = group.call("_gathered_state_dict")[0]
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert any(k.startswith("mlp.") for k in changed) and "instruction" in changed
        assert not any(k.startswith("lm.") for k in changed), sorted(changed)[:4]

        group.save(str(tmp_path / "ckpt"))
        assert (tmp_path / "ckpt" / "side_module" / "side_module.json").is_file()
        assert not (tmp_path / "ckpt" / "model").exists()  # the frozen LM is never copied
        back = side_modules.load(tmp_path / "ckpt")
        assert torch.equal(back.instruction, after["instruction"])
        group.load(str(tmp_path / "ckpt"))  # resume path: DeepSpeed state without the frozen LM
    finally:
        group.shutdown()


def test_pplug_recipe_runs_and_lowers_heldout_nll(tiny_model, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "pplug"
    over = tiny_overrides(
        tiny_model,
        out,
        **{
            "total_steps": 6,
            "trainer.lr": 1e-2,
            "trainer.micro_batch_size": 4,
            "eval.num_prompts": 8,
            "eval.every": 3,
            "eval.at_start": True,
            "model.side_module.options.cache_dir": str(tmp_path / "enc"),
            "checkpoint.every": 0,
        },
    )
    train(load_recipe(ROOT / "recipes" / "pplug_tiny_cpu.yaml", over))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    nll = [r["eval/loss/nll"] for r in rows if "eval/loss/nll" in r]
    assert len(nll) == 3 and nll[-1] < nll[0], nll
    assert len(list((tmp_path / "enc").glob("encodings-*.pt"))) == 1  # histories encoded once, cached
    from launch.checkpoint import CheckpointManager
    from trainer import side_modules

    ckpt = CheckpointManager(str(out)).latest()
    assert (ckpt / "side_module" / "side_module.safetensors").is_file() and not (ckpt / "model").exists()
    module = side_modules.load(ckpt)
    f = {"history": torch.randn(2, 2, 128), "history_mask": torch.ones(2, 2), "query": torch.randn(2, 128)}
    batch = module.generate([[5, 6, 7], [8, 9]], f, max_new_tokens=4, eos=-1)  # greedy, left-padded
    assert len(batch) == 2 and all(len(r) == 4 for r in batch)
    alone = module.generate([[8, 9]], {k: v[1:] for k, v in f.items()}, max_new_tokens=4, eos=-1)
    assert alone[0] == batch[1]  # padding changes nothing
