"""GQR's CTR model (rewards/ctr_model.py): it learns a separable click log, its AUC is right by hand, the
checkpoint round-trips, the trainer CLI writes what the reward loads, and the ``gqr_ctr`` reward uses it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rewards.ctr_model import (
    CTRModel,
    CTRTrainConfig,
    auc,
    fit,
    hashed_features,
    lexical_features,
    load_cached,
    load_train_config,
    main,
    read_click_log,
    split_by_session,
)
from rewards.gqr import gqr_ctr

TOPICS = ["file", "list", "date", "string", "thread", "socket", "json", "regex", "enum", "map"]
VERBS = ["read", "write", "sort", "parse", "convert", "create", "delete", "copy"]


def toy_log(n_sessions: int, seed: int) -> list[dict]:
    """Clicked: a candidate about the query's topic; not clicked: one about another topic."""
    rng = random.Random(seed)
    rows = []
    for s in range(n_sessions):
        topic = rng.choice(TOPICS)
        q = f"java {rng.choice(VERBS)} {topic}"
        other = rng.choice([t for t in TOPICS if t != topic])
        for cand, y in (
            (f"{rng.choice(VERBS)} {topic} example", 1),
            (f"{rng.choice(VERBS)} {other} example", 0),
        ):
            rows.append(
                {"query": q, "candidate": cand, "clicked": y, "session": f"{seed}-{s}", "source": "toy"}
            )
    return rows


def _cfg(**kw) -> CTRTrainConfig:
    cfg = CTRTrainConfig(epochs=6, lr=1e-2, threads=1)
    cfg.model.buckets, cfg.model.dim, cfg.model.hidden = 4096, 16, 32
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_auc_matches_a_hand_example():
    # positives 0.8 and 0.4, negatives 0.6 and 0.2: of 4 (pos, neg) pairs 3 are ordered right -> 0.75
    assert auc([1, 0, 1, 0], [0.8, 0.6, 0.4, 0.2]) == pytest.approx(0.75)
    assert auc([1, 1, 0], [0.5, 0.5, 0.5]) == pytest.approx(0.5)  # ties count half
    assert auc([1, 1], [0.1, 0.2]) is None  # one class only


def test_features_are_stable_and_lexical_features_by_hand():
    assert hashed_features("Java Enum", 1000) == hashed_features("java  enum!", 1000)  # normalised, no salt
    assert hashed_features("", 1000) == [0]
    jw, _, extends, new, ratio, same = lexical_features("java enum", "java enum switch")
    assert jw == pytest.approx(2 / 3) and extends == 1.0 and same == 0.0 and new > 0 and ratio > 0
    assert lexical_features("java enum", "Java Enum")[-1] == 1.0


def test_learns_a_separable_click_log():
    model = fit(toy_log(60, seed=0), _cfg(), log=lambda *_: None)
    held = toy_log(30, seed=1)  # new sessions: other verb/topic combinations
    probs = model.predict([(r["query"], r["candidate"]) for r in held])
    assert auc([r["clicked"] for r in held], probs) > 0.9


def test_checkpoint_round_trip(tmp_path):
    model = fit(toy_log(20, seed=0), _cfg(epochs=1), log=lambda *_: None)
    pairs = [("java read file", "write file example"), ("java sort list", "parse json example")]
    model.save(tmp_path / "ckpt")
    again = CTRModel.load(tmp_path / "ckpt")
    assert again.predict(pairs) == pytest.approx(model.predict(pairs), abs=1e-7)
    assert load_cached(tmp_path / "ckpt") is load_cached(str(tmp_path / "ckpt"))  # once per process


def test_split_by_session_never_straddles():
    rows = toy_log(50, seed=0)
    train, test = split_by_session(rows, 0.2, seed=3)
    assert {r["session"] for r in train}.isdisjoint({r["session"] for r in test})
    assert len({r["session"] for r in test}) == 10 and len(train) + len(test) == len(rows)


def test_click_log_rows_are_checked(tmp_path):
    f = tmp_path / "log.jsonl"
    f.write_text('{"query": "a", "candidate": "b", "clicked": 1}\n{"query": "a", "clicked": 0}\n')
    with pytest.raises(ValueError, match="line 2: no field 'candidate'"):
        read_click_log(f)


def _write_log(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_trainer_cli_writes_a_checkpoint_the_reward_loads(tmp_path):
    train = _write_log(tmp_path / "train.jsonl", toy_log(60, seed=0))
    test = _write_log(tmp_path / "test.jsonl", toy_log(20, seed=1))
    yaml = tmp_path / "ctr.yaml"
    yaml.write_text(
        f"output_dir: {tmp_path / 'ctr'}\nepochs: 6\nlr: 0.01\nbatch_size: 16\nthreads: 1\n"
        f"data: {{train: {train}, test: {test}}}\nmodel: {{buckets: 4096, dim: 16, hidden: 32}}\n"
    )
    assert load_train_config(str(yaml), ["epochs=3"]).epochs == 3
    assert main(["train", str(yaml)]) == 0
    out = tmp_path / "ctr"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["heldout"]["auc"] > 0.9 and metrics["heldout"]["rows"] == 40
    assert metrics["heldout"]["auc/toy"] == metrics["heldout"]["auc"]
    assert (out / "model.safetensors").is_file() and "epochs: 6" in (out / "train_config.yaml").read_text()
    # the reward: one list about the query's topic beats one about another topic; malformed scores 0.0
    q = ["java read file"] * 3
    good, bad = "write file example\ncopy file example", "parse json example\nsort map example"
    scores = gqr_ctr([""] * 3, [good, bad, ""], query=q, ctr_model=str(out), n=2)
    assert scores[0] > scores[1] and scores[2] == 0.0
    assert gqr_ctr([""], [""], query=q[:1], ctr_model=str(out), malformed_score=-1.0) == [-1.0]
    # the list score is the aggregation of the per-query CTRs
    p = load_cached(out).predict([(q[0], "write file example"), (q[0], "copy file example")])
    assert scores[0] == pytest.approx(1 - (1 - p[0]) * (1 - p[1]))
    mean = gqr_ctr([""], [good], query=q[:1], ctr_model=str(out), n=4, aggregation="mean")
    assert mean[0] == pytest.approx(sum(p) / 4)


def test_trainer_refuses_a_leaking_split(tmp_path):
    rows = toy_log(10, seed=0)
    train = _write_log(tmp_path / "train.jsonl", rows)
    test = _write_log(tmp_path / "test.jsonl", rows[:2])
    cfg = _cfg(output_dir=str(tmp_path / "ctr"))
    cfg.data.train, cfg.data.test = str(train), str(test)
    from rewards.ctr_model import train as train_ctr

    with pytest.raises(ValueError, match="sessions are in both"):
        train_ctr(cfg, log=lambda *_: None)
