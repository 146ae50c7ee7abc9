"""A tiny HPL run through the real stack: recipes/hpl_textworld_tiny_cpu.yaml with the tiny model on the scripted
corridor game (tests/support/envs.py) — expert replay, BC through launch.train (Ray + DeepSpeed learner), π_ref
trajectories, Monte-Carlo step values, groups with negatives by prefix replay, the HPL arm with all four terms and
the dual-layer curriculum, held-out evaluation; then a rerun that resumes (every stage skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from launch.hpl import main as hpl_main
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _recipe(tmp_path: Path) -> Path:
    """The shipped recipe with the corridor game in place of TextWorld (everything else as shipped)."""
    cfg = yaml.safe_load((ROOT / "recipes" / "hpl_textworld_tiny_cpu.yaml").read_text())
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for split, n in (("train", 3), ("test", 2)):
        rows = [
            {"id": f"{split}{i}", "text": "Reach room 2.", "expert_actions": ["go east", "go east"]}
            for i in range(n)
        ]
        (tasks / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    b = cfg["strategy"]["options"]["build"]
    b.update(
        tasks=str(tasks / "train.jsonl"),
        env="tests.support.envs:Corridor",
        env_options={},
        pool_size=8,
        max_turns=4,
        max_action_tokens=6,
        bc_steps=2,
        traj_samples=1,
        step_mc=2,
        segment_k=1,
        negative_samples=2,
        negatives=2,
        group_mc=2,
    )
    out = tmp_path / "hpl.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.mark.slow
def test_hpl_pipeline_tiny(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    recipe = _recipe(tmp_path)
    work = tmp_path / "work"
    over = tiny_overrides(
        tiny_model,
        work,
        **{
            "total_steps": 3,
            "curriculum.prompts_per_step": 4,
            "curriculum.options.phase_steps": "[1,2]",
            "trainer.micro_batch_size": 4,
            "rollout.max_model_len": 512,
            "strategy.options.system_prompt": "null",
            "ray.num_cpus": 4,
        },
    )
    # Two groupings: fixed length, and the LLM judge (here π_ref itself through the judge role: the random tiny
    # model writes no usable [[start, end]] list, so every trajectory falls back to fixed length, counted).
    args = [str(recipe), "--work", str(work), "--arms", "hpl", "--engine", "hf"]
    args += ["--segmentations", "fixed_length,judge", "-o", "aux_models.judge.path=policy"]
    for o in over:
        args += ["-o", o]
    assert hpl_main(args) == 0
    log = capsys.readouterr().out
    assert "[hpl] judge: 3/3 replies unusable" in log
    data = work / "data"
    expert = [json.loads(x) for x in (data / "expert.jsonl").read_text().splitlines()]
    assert len(expert) == 3 and all(e["won"] and len(e["turns"]) == 2 for e in expert)
    kinds = {}
    for f in ("units_bc", "traj", "step", "group_fixed_length"):
        rows = [json.loads(x) for x in (data / f"{f}.jsonl").read_text().splitlines()]
        kinds[f] = rows
    assert len(kinds["units_bc"]) == 3
    # The random tiny model never wins the corridor: every π_ref trajectory pairs with the expert's.
    assert len(kinds["traj"]) == 3 and all(
        u["chosen_value"] == 1.0 > u["rejected_value"] for u in kinds["traj"]
    )
    # Step pairs keep gap > 0.3; group pairs also need the expert group's value ≥ 0.8 (only the last group,
    # which wins, reaches it: after the first "go east" the random policy ends with return 0.5).
    assert kinds["step"] and all(u["gap"] > 0.3 for u in kinds["step"])
    assert kinds["group_fixed_length"]
    for u in kinds["group_fixed_length"]:
        assert u["span"] == [1, 2] and u["chosen_value"] >= 0.8 and u["gap"] > 0.3
        assert u["bucket"] == [0, 0 if u["gap"] >= 0.7 else 1]
        assert [t["action"] for t in u["chosen"]] == ["go east", "go east"]
        assert u["rejected"][0]["action"] == "go east" and u["rejected"][1]["action"] != "go east"
    # The HPL arm trained all four terms from π_ref (the BC checkpoint) through the real learner.
    rows = [json.loads(x) for x in (work / "hpl-fixed_length" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss/bc" in r]
    assert len(steps) == 3
    seen = set().union(*steps)
    for key in ("loss/traj", "loss/step", "loss/group", "traj/pref/accuracy", "hpl/phase"):
        assert key in seen, key
    assert [r["hpl/phase"] for r in steps] == [1.0, 2.0, 3.0]
    recipe_used = yaml.safe_load((work / "hpl-fixed_length" / "recipe.yaml").read_text())
    assert recipe_used["model"]["path"].startswith(str(work / "bc" / "checkpoints"))
    judged = [json.loads(x) for x in (data / "group_judge.jsonl").read_text().splitlines()]
    assert judged and all(u["segmentation"] == "judge" for u in judged)
    assert (work / "hpl-judge" / "checkpoints" / "latest").is_file()
    # Held-out evaluation of π_ref and the arms, with transcripts and provenance.
    for name in ("ref", "hpl-fixed_length", "hpl-judge"):
        rep = json.loads((work / "eval" / f"{name}.json").read_text())
        assert rep["eval_tasks"] == 2 and len(rep["episodes"]) == 2 and rep["git_commit"]
        assert 0.0 <= rep["metrics"]["env/success_rate"] <= 1.0
    # Resumable: a second run finds every stage's output and redoes nothing.
    assert hpl_main(args) == 0
    log = capsys.readouterr().out
    assert "[hpl] train" not in log and "[hpl] eval ref:" not in log
    assert log.count("skipped") >= 10
