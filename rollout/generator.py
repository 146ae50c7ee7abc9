"""The generator: fans generation requests out to rollout actors and pushes learner weights to them.

Driver-side object (no weights here). ``sync_weights`` moves the learners' full weights through the
Ray object store to every worker (one ``put`` by learner rank 0, zero-copy reads on the same node),
loads them in place, and then *proves* they landed: each worker's log-probs of a fixed probe sequence
must match the learner's within a dtype-dependent tolerance, and must have changed if the learner's
did. A silent no-op sync raises :class:`WeightSyncError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from launch.ray_utils import get_all, wait_all
from rollout.engines.base import EngineSpec
from rollout.types import Completion, GenerationRequest, SamplingParams

log = logging.getLogger(__name__)


class WeightSyncError(RuntimeError):
    pass


def _balance(requests: list[GenerationRequest], k: int) -> list[list[int]]:
    """Assign requests to k workers, largest first, to the least-loaded worker (by samples × prompt len)."""
    loads = [0.0] * k
    parts: list[list[int]] = [[] for _ in range(k)]
    order = sorted(
        range(len(requests)), key=lambda i: -requests[i].n * (1 + len(requests[i].prompt_ids) / 256)
    )
    for i in order:
        j = int(np.argmin(loads))
        parts[j].append(i)
        loads[j] += requests[i].n * (1 + len(requests[i].prompt_ids) / 256)
    return parts


@dataclass
class SyncCheck:
    tol: float

    def check(
        self,
        learner: list[float],
        before: list[float] | None,
        after: list[float],
        prev_learner: list[float] | None,
        worker: int,
    ) -> float:
        la, aa = np.asarray(learner), np.asarray(after)
        if la.shape != aa.shape:
            raise WeightSyncError(f"worker {worker}: probe lengths differ ({aa.shape} vs learner {la.shape})")
        diff = float(np.abs(la - aa).mean())
        if not np.isfinite(diff) or diff > self.tol:
            raise WeightSyncError(
                f"worker {worker}: after the weight sync the engine's probe log-probs differ from the learner's by "
                f"{diff:.4g} per token (tolerance {self.tol:g}): the new weights did not land"
            )
        learner_moved = prev_learner is not None and not np.array_equal(np.asarray(prev_learner), la)
        if learner_moved and before is not None and np.array_equal(np.asarray(before), aa):
            raise WeightSyncError(
                f"worker {worker}: the learner's weights changed but the engine's probe log-probs are bit-identical "
                "to before the sync: the update was a silent no-op"
            )
        return diff


class RolloutWorkerLost(RuntimeError):
    """A rollout worker kept dying: ``rollout.max_restarts`` restarts were spent within one call."""


class Generator:
    """The rollout workers: balanced generation, verified weight sync, and supervision.

    A worker that dies (its process killed, OOM, a crash in the engine) is restarted: a fresh actor, the
    weights of the last sync pushed into it and checked with the probe, then the dead worker's unfinished
    requests are issued again (``restarts`` counts them for the step's metrics). More than ``max_restarts``
    deaths within one call raise ``RolloutWorkerLost``."""

    def __init__(
        self,
        engine_path: str,
        spec: EngineSpec,
        num_workers: int,
        defaults: SamplingParams,
        probe_ids: list[int],
        sync_tol: float,
        gpus_per_worker: float = 0.0,
        log_files: list[str | None] | None = None,
        call_timeout_s: float | None = None,
        max_restarts: int = 3,
        placement=None,
        dispatch: str = "dynamic",
        chunks_per_worker: int = 4,
        weight_sync: str = "object_store",
        bucket_mb: float = 64.0,
    ) -> None:
        import ray

        from rollout.worker import RolloutWorker

        env = {
            "OMP_NUM_THREADS": str(spec.threads),
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
            "TOKENIZERS_PARALLELISM": "false",
            # vLLM logs every weight reload and prefix-cache reset at INFO: one line per step is enough.
            "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
        }
        self._actor = ray.remote(RolloutWorker)
        self._options = {
            "num_cpus": spec.threads,
            "num_gpus": gpus_per_worker,
            "runtime_env": {"env_vars": env},
        }
        self._args = (engine_path, spec)
        self._placement = placement  # launch.placement.Placement or None (bare resource counts)
        self._log_files = list(log_files or [None] * num_workers)
        self.workers = [self._spawn(i) for i in range(num_workers)]
        self.call_timeout_s = call_timeout_s
        self.max_restarts = max_restarts
        self.restarts = 0  # worker restarts since the last pop_restarts()/pop_metrics()
        self._stats: dict[int, list[float]] = {}  # worker -> [requests, tokens, seconds] since pop_metrics()
        self.dispatch = dispatch
        self.chunks_per_worker = chunks_per_worker
        self.weight_sync = weight_sync  # object_store | collective (trainer/weight_broadcast.py)
        self.bucket_mb = bucket_mb
        self.group_timeout_s = 120.0
        self._group: tuple[str, int] | None = None  # the weight group's rendezvous, once built
        self._group_ok = True
        self._learners = None
        self.start_s = max(self._get([w.ready.remote() for w in self.workers], "start"))
        self.defaults = defaults
        self.probe_ids = list(probe_ids)
        self.checker = SyncCheck(sync_tol)
        self._engine_probe: list[list[float] | None] = self._get(
            [w.probe_logprobs.remote(self.probe_ids) for w in self.workers], "probe"
        )
        self._initial_probe = self._engine_probe[0]
        self._learner_probe: list[float] | None = None
        self._blob_ref = None  # the weights of the last sync (kept in the object store for restarts)

    # ------------------------------------------------------------------ calls
    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        if len(self.workers) > 1 and self.dispatch == "dynamic":
            return self._generate_dispatched(requests)
        t0 = time.perf_counter()
        parts = _balance(requests, len(self.workers))
        busy = [w for w, part in enumerate(parts) if part]
        out = self._call_each(
            "generate",
            lambda w: self.workers[w].generate.remote([requests[i] for i in parts[w]], self.defaults),
            busy,
        )
        results: list[list[Completion]] = [[] for _ in requests]
        wall = time.perf_counter() - t0
        for w in busy:
            for i, comps in zip(parts[w], out[w]):
                results[i] = comps
            self._account(w, parts[w], out[w], wall)
        return results

    def _account(self, w: int, idx: list[int], comps: list[list[Completion]], seconds: float) -> None:
        st = self._stats.setdefault(w, [0.0, 0.0, 0.0])  # requests, generated tokens, seconds busy
        st[0] += len(idx)
        st[1] += sum(len(c.token_ids) for cs in comps for c in cs)
        st[2] += seconds

    def _generate_dispatched(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        """Least-outstanding-tokens dispatch over several workers: the requests are cut into chunks (largest
        first, ~``chunks_per_worker`` per worker); each chunk goes to the worker with the fewest estimated tokens
        in flight (prompt + n × max_new_tokens), one chunk per worker at a time, and the next one is sent as soon
        as a chunk returns (a Ray round trip, milliseconds, between a worker's chunks). A slow worker therefore
        serves fewer chunks and holds the call up by at most its own last chunk. A worker that dies is restarted and its chunks in flight are queued again."""
        import ray
        from ray.exceptions import RayActorError

        from launch.ray_utils import RemoteCallTimeout

        k = len(self.workers)

        def cost(i: int) -> float:
            r = requests[i]
            return r.n * (len(r.prompt_ids) + (r.params or self.defaults).max_new_tokens)

        order = sorted(range(len(requests)), key=lambda i: -cost(i))
        n_chunks = min(len(order), k * self.chunks_per_worker)
        chunks = [order[c::n_chunks] for c in range(n_chunks)]  # round-robin: chunks of similar cost
        queue = sorted(chunks, key=lambda ch: -sum(cost(i) for i in ch))
        outstanding = [0.0] * k
        inflight: dict[Any, tuple[int, list[int], float]] = {}  # ref -> (worker, chunk, sent at)
        results: list[list[Completion]] = [[] for _ in requests]
        deaths = 0

        def fill() -> None:
            while queue:
                free = [w for w in range(k) if all(v[0] != w for v in inflight.values())]
                if not free:
                    return
                w = min(free, key=lambda j: outstanding[j])
                chunk = queue.pop(0)
                ref = self.workers[w].generate.remote([requests[i] for i in chunk], self.defaults)
                inflight[ref] = (w, chunk, time.perf_counter())
                outstanding[w] += sum(cost(i) for i in chunk)

        fill()
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=self.call_timeout_s)
            if not ready:
                late = sorted({f"rollout worker {w}" for w, _, _ in inflight.values()})
                raise RemoteCallTimeout(
                    f"generate: no chunk returned within {self.call_timeout_s:g} s (ray.call_timeout_s); waiting "
                    f"on {', '.join(late)}"
                )
            w, chunk, sent = inflight.pop(ready[0])
            outstanding[w] -= sum(cost(i) for i in chunk)
            try:
                comps = ray.get(ready[0])
            except RayActorError as e:
                deaths += 1
                if deaths > self.max_restarts:
                    raise RolloutWorkerLost(
                        f"generate: rollout worker {w} died ({type(e).__name__}) and {deaths} deaths exceed "
                        f"rollout.max_restarts={self.max_restarts}; its log is in <output_dir>/logs/rollout_{w}.log"
                    ) from None
                lost = [chunk] + [c for r, (ww, c, _) in list(inflight.items()) if ww == w]
                for r in [r for r, (ww, _, _) in inflight.items() if ww == w]:
                    inflight.pop(r)
                outstanding[w] = 0.0
                queue[:0] = lost
                self._restart(w, "generate", e)
            else:
                for i, cs in zip(chunk, comps):
                    results[i] = cs
                self._account(w, chunk, comps, time.perf_counter() - sent)
            fill()
        return results

    def pop_metrics(self) -> dict[str, float]:
        """Per-step rollout metrics since the last call: worker restarts, and per worker the requests served,
        tokens generated and tokens/s (over the time its calls were in flight)."""
        out = {"rollout/worker_restarts": float(self.restarts)}
        self.restarts = 0
        for w, (reqs, toks, secs) in sorted(self._stats.items()):
            out[f"rollout/worker{w}/requests"] = reqs
            out[f"rollout/worker{w}/tokens"] = toks
            out[f"rollout/worker{w}/tokens_per_s"] = toks / secs if secs > 0 else 0.0
        self._stats = {}
        return out

    def sync_weights(self, learners) -> dict[str, float]:
        """Push the learners' weights to every worker and verify them with the probe."""
        if self.weight_sync == "collective" and self._group_ok:
            try:
                return self._sync_collective(learners)
            except RolloutWorkerLost:
                raise
            except Exception as e:  # the group broke (a worker died mid-broadcast): object store this time
                log.warning(
                    "collective weight sync failed (%s): object-store sync, group rebuilt next time", e
                )
                self._group_ok = False
        t0 = time.perf_counter()
        blob_ref, learner_probe = learners.export_weights(self.probe_ids)
        t_export = time.perf_counter() - t0
        self._blob_ref, prev_learner, self._learner_probe = blob_ref, self._learner_probe, learner_probe
        every = list(range(len(self.workers)))
        counts = self._call_each(
            "weight sync: load", lambda w: self.workers[w].update_weights.remote(blob_ref), every
        )
        t_load = time.perf_counter() - t0 - t_export
        if self.weight_sync == "collective":
            self._group_ok = True  # a fresh group (new port, every current worker) at the next sync
            self._group = None
        after = self._call_each(
            "weight sync: probe", lambda w: self.workers[w].probe_logprobs.remote(self.probe_ids), every
        )
        diffs = [
            self.checker.check(learner_probe, self._engine_probe[i], after[i], prev_learner, i) for i in every
        ]
        self._engine_probe = [after[i] for i in every]
        return {
            "sync/export_s": t_export,
            "sync/load_s": t_load,
            "sync/probe_diff": max(diffs),
            "sync/tensors": float(min(counts.values())),
        }

    def _sync_collective(self, learners) -> dict[str, float]:
        """Learner rank 0 broadcasts the weights to every worker over their own gloo/NCCL group, in buckets
        (trainer/weight_broadcast.py); the probe check is the same as the object-store path's."""
        import ray

        from launch.ray_utils import wait_all

        fn = "trainer.weight_broadcast:"
        t0 = time.perf_counter()
        if self._group is None:  # (re)build: every current worker joins with a fresh rendezvous
            host, port = learners.call("run", fn + "learner_address")[0]
            world = len(self.workers) + 1
            refs = learners.submit("run", fn + "learner_join", host, port, world, self.group_timeout_s)
            refs += [
                w.join_weight_group.remote(host, port, i + 1, world, self.group_timeout_s)
                for i, w in enumerate(self.workers)
            ]
            wait_all(
                refs,
                [f"weight group member {i}" for i in range(len(refs))],
                "weight group",
                self.call_timeout_s,
            )
            ray.get(refs)
            self._group = (host, port)
        t_join = time.perf_counter() - t0
        lrefs = learners.submit("run", fn + "learner_send", self.bucket_mb, self.probe_ids)
        wrefs = [w.receive_weights.remote(self.bucket_mb) for w in self.workers]
        names = [f"learner rank {i}" for i in range(len(lrefs))] + [
            f"rollout worker {i}" for i in range(len(wrefs))
        ]
        wait_all(lrefs + wrefs, names, "weight sync: broadcast", self.call_timeout_s)
        learner_probe, stats = ray.get(lrefs[0])
        counts = ray.get(wrefs)
        t_bcast = time.perf_counter() - t0 - t_join
        prev_learner, self._learner_probe = self._learner_probe, learner_probe
        self._blob_ref = None  # a restarted worker gets the weights from learners via the object store
        self._learners = learners
        every = list(range(len(self.workers)))
        after = self._call_each(
            "weight sync: probe", lambda w: self.workers[w].probe_logprobs.remote(self.probe_ids), every
        )
        diffs = [
            self.checker.check(learner_probe, self._engine_probe[i], after[i], prev_learner, i) for i in every
        ]
        self._engine_probe = [after[i] for i in every]
        return stats | {
            "sync/join_s": t_join,
            "sync/load_s": t_bcast,
            "sync/probe_diff": max(diffs),
            "sync/tensors": float(min(counts)),
            "sync/collective": 1.0,
        }

    def reseed(self, seed: int, step: int) -> None:
        """Every worker's sampling stream restarts from (seed, step): a resumed run draws the same samples as an
        uninterrupted one, and a step's samples do not depend on how many steps the engine has served."""
        self._call_each(
            "reseed",
            lambda w: self.workers[w].reseed.remote(seed * 1_000_003 + step),
            list(range(len(self.workers))),
        )

    def sleep(self) -> None:
        """Every worker releases its device memory (rollout.sleep_when_idle) until its next engine call."""
        self._call_each("sleep", lambda w: self.workers[w].sleep.remote(), list(range(len(self.workers))))

    def pop_restarts(self) -> int:
        """Worker restarts since the last call (a per-step metric)."""
        n, self.restarts = self.restarts, 0
        return n

    # ------------------------------------------------------------------ supervision
    def _spawn(self, i: int):
        # a restarted worker takes the dead one's bundle (its resources are released when the actor dies)
        pin = self._placement.options("rollout", i) if self._placement is not None else {}
        return self._actor.options(**self._options, **pin).remote(*self._args, self._log_files[i])

    def _call_each(self, what: str, make: Callable[[int], Any], workers: list[int]) -> dict[int, Any]:
        """``make(w)`` on each worker in ``workers``, with the deadline; a dead worker is restarted and its call
        issued again. Returns worker → result."""
        import ray
        from ray.exceptions import RayActorError

        results: dict[int, Any] = {}
        todo, deaths = list(workers), 0
        while todo:
            refs = [make(w) for w in todo]
            wait_all(refs, [f"rollout worker {w}" for w in todo], what, self.call_timeout_s)
            dead = []
            for w, ref in zip(todo, refs):
                try:
                    results[w] = ray.get(ref)
                except RayActorError as e:
                    dead.append((w, e))
            deaths += len(dead)
            if dead and deaths > self.max_restarts:
                w, e = dead[0]
                raise RolloutWorkerLost(
                    f"{what}: rollout worker {w} died ({type(e).__name__}) and {deaths} deaths exceed "
                    f"rollout.max_restarts={self.max_restarts}; its log is in <output_dir>/logs/rollout_{w}.log"
                )
            for w, e in dead:
                self._restart(w, what, e)
            todo = [w for w, _ in dead]
        return results

    def _restart(self, w: int, what: str, err: Exception) -> None:
        """A fresh actor for worker ``w`` with the current weights, probe-checked against the learner's."""
        import ray

        log.warning("rollout worker %d died during %s (%s): restarting it", w, what, type(err).__name__)
        with contextlib.suppress(Exception):
            ray.kill(self.workers[w])
        self.workers[w] = self._spawn(w)
        worker = self.workers[w]
        self._get_one(worker.ready.remote(), w, "restart")
        if self._blob_ref is None and self._learners is not None:  # collective mode keeps no blob: fetch one
            self._blob_ref, _ = self._learners.export_weights(self.probe_ids)
            self._group = None  # the new worker is not in the weight group: rebuild it at the next sync
        if self._blob_ref is not None:
            self._get_one(worker.update_weights.remote(self._blob_ref), w, "restart: load weights")
        probe = self._get_one(worker.probe_logprobs.remote(self.probe_ids), w, "restart: probe")
        expected = self._learner_probe if self._blob_ref is not None else self._initial_probe
        diff = self.checker.check(expected, None, probe, None, w)  # the weights the others serve, or raise
        self._engine_probe[w] = probe
        self.restarts += 1
        log.warning("rollout worker %d restarted with the current weights (probe diff %.3g)", w, diff)

    def _get_one(self, ref, w: int, what: str):
        return get_all([ref], [f"rollout worker {w}"], what, self.call_timeout_s)[0]

    def _get(self, refs: list, what: str) -> list:
        """One call on every worker, with the run's deadline."""
        return get_all(refs, [f"rollout worker {i}" for i in range(len(refs))], what, self.call_timeout_s)

    def shutdown(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []
