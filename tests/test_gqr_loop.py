"""GQR through the real loop (Ray actors, DeepSpeed learners, vLLM, the process-isolated reward worker): the SFT
recipe on logged lists, then the list-wise alignment recipe from the SFT checkpoint with the frozen CTR reward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch.config import load_recipe
from launch.train import train
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["file", "list", "date", "string", "enum", "map", "json", "thread"]


def _sessions(path: Path) -> Path:
    """Toy CosoBe-format sessions: a query, then two refinements; the last one gets a click."""
    rows = []
    for i in range(24):
        t, u = TOPICS[i % len(TOPICS)], TOPICS[(i + 3) % len(TOPICS)]
        qs = [f"java {t}", f"java {t} {u}", f"java {t} {u} example"]
        its = [
            {
                "query": q,
                "results": [{"rank": 1, "title": f"Q: how to {q}"}],
                "clicks": [{"rank": 1}] if j else [],
            }
            for j, q in enumerate(qs)
        ]
        rows.append({"session_num": i, "iterations": its})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(name: str, data: Path, ctr: Path, tmp_path: Path) -> Path:
    text = (ROOT / "recipes" / name).read_text()
    text = text.replace("runs/gqr/data/", f"{data}/").replace("runs/gqr/ctr", str(ctr))
    out = tmp_path / name
    out.write_text(text)
    return out


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_gqr_sft_then_listwise_alignment(tiny_model, ray_cluster, tmp_path, monkeypatch):
    from curricula.gqr_data import build
    from rewards.ctr_model import load_train_config
    from rewards.ctr_model import train as train_ctr

    monkeypatch.chdir(ROOT)
    data, ctr = tmp_path / "data", tmp_path / "ctr"
    build(_sessions(tmp_path / "sessions.jsonl"), data, n=2, k=2, heldout=0.25)
    over = [
        f"output_dir={ctr}",
        f"data.train={data / 'ctr_train.jsonl'}",
        f"data.test={data / 'ctr_test.jsonl'}",
    ]
    train_ctr(
        load_train_config(str(ROOT / "recipes" / "gqr_ctr_cpu.yaml"), [*over, "epochs=2"]), lambda *_: None
    )
    assert (ctr / "metrics.json").is_file()

    sft_out = tmp_path / "sft"
    sft = tiny_overrides(
        tiny_model,
        sft_out,
        **{"total_steps": 2, "rollout.max_model_len": 1024, "eval.num_prompts": 4, "eval.every": 0},
    )
    train(load_recipe(_recipe("gqr_sft_tiny_cpu.yaml", data, ctr, tmp_path), sft))
    sft_steps = [r for r in _rows(sft_out) if "loss/nll" in r]
    assert len(sft_steps) == 2 and not any("time/weight_sync" in r for r in sft_steps)
    sft_model = sft_out / "checkpoints" / "step_000002" / "model"
    assert (sft_model / "config.json").is_file()

    out = tmp_path / "align"
    over = tiny_overrides(
        str(sft_model),
        out,
        **{
            "total_steps": 2,
            "rollout.max_new_tokens": 24,
            "rollout.max_model_len": 1024,
            "curriculum.prompts_per_step": 3,
            "curriculum.n_samples": 4,
            "trainer.lr": 1e-3,
            "eval.num_prompts": 4,
            "eval.every": 2,
            "rewards.isolation": "process",  # the CTR model loads inside the sandboxed reward worker
        },
    )
    train(load_recipe(_recipe("gqr_tiny_cpu.yaml", data, ctr, tmp_path), over))
    rows = _rows(out)
    steps = [r for r in rows if "reward_mean" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["reward_failures"] == 0  # the CTR reward ran in the worker process
        assert 0.0 <= r["reward/gqr_ctr_mean"] <= 1.0
        assert 0.0 <= r["monitor/gqr_malformed"] <= 1.0 and 0.0 <= r["monitor/gqr_short"] <= 1.0
        assert r["pref/lists"] + r["pref/uniform_dropped"] == 3
        assert r["sync/probe_diff"] < 0.01  # weights pushed to vLLM and verified
    assert any("loss/plackett_luce" in r for r in steps)
    evals = [r for r in rows if "eval/accuracy" in r]  # hit@4 at the start and after step 2
    assert len(evals) == 2
    for r in evals:
        assert 0.0 <= r["eval/accuracy"] <= 1.0 and 0.0 <= r["eval/monitor/gqr_ctr"] <= 1.0
        assert "eval/monitor/gqr_malformed" in r and "eval/monitor/gqr_hit" in r
