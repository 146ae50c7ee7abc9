"""The generator: fans generation requests out to rollout actors and pushes learner weights to them.

Driver-side object (no weights here). ``sync_weights`` moves the learners' full weights through the
Ray object store to every worker (one ``put`` by learner rank 0, zero-copy reads on the same node),
loads them in place, and then *proves* they landed: each worker's log-probs of a fixed probe sequence
must match the learner's within a dtype-dependent tolerance, and must have changed if the learner's
did. A silent no-op sync raises :class:`WeightSyncError`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from launch.ray_utils import get_all
from rollout.engines.base import EngineSpec
from rollout.types import Completion, GenerationRequest, SamplingParams


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


class Generator:
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
        actor = ray.remote(RolloutWorker)
        self.workers = [
            actor.options(
                num_cpus=spec.threads, num_gpus=gpus_per_worker, runtime_env={"env_vars": env}
            ).remote(engine_path, spec, (log_files or [None] * num_workers)[i])
            for i in range(num_workers)
        ]
        self.call_timeout_s = call_timeout_s
        self.start_s = max(self._get([w.ready.remote() for w in self.workers], "start"))
        self.defaults = defaults
        self.probe_ids = list(probe_ids)
        self.checker = SyncCheck(sync_tol)
        self._engine_probe: list[list[float] | None] = self._get(
            [w.probe_logprobs.remote(self.probe_ids) for w in self.workers], "probe"
        )
        self._learner_probe: list[float] | None = None

    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:

        parts = _balance(requests, len(self.workers))
        refs = [
            w.generate.remote([requests[i] for i in part], self.defaults)
            for w, part in zip(self.workers, parts)
            if part
        ]
        results: list[list[Completion]] = [[] for _ in requests]
        names = [f"rollout worker {i}" for i, part in enumerate(parts) if part]
        for part, out in zip([p for p in parts if p], get_all(refs, names, "generate", self.call_timeout_s)):
            for i, comps in zip(part, out):
                results[i] = comps
        return results

    def sync_weights(self, learners) -> dict[str, float]:
        """Push the learners' weights to every worker and verify them with the probe."""

        t0 = time.perf_counter()
        blob_ref, learner_probe = learners.export_weights(self.probe_ids)
        t_export = time.perf_counter() - t0
        counts = self._get([w.update_weights.remote(blob_ref) for w in self.workers], "weight sync: load")
        t_load = time.perf_counter() - t0 - t_export
        after = self._get(
            [w.probe_logprobs.remote(self.probe_ids) for w in self.workers], "weight sync: probe"
        )
        diffs = [
            self.checker.check(learner_probe, self._engine_probe[i], after[i], self._learner_probe, i)
            for i in range(len(self.workers))
        ]
        self._engine_probe = after
        self._learner_probe = learner_probe
        return {
            "sync/export_s": t_export,
            "sync/load_s": t_load,
            "sync/probe_diff": max(diffs),
            "sync/tensors": float(min(counts)),
        }

    def _get(self, refs: list, what: str) -> list:
        """One call on every worker, with the run's deadline."""
        return get_all(refs, [f"rollout worker {i}" for i in range(len(refs))], what, self.call_timeout_s)

    def shutdown(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []
