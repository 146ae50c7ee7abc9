"""LearnerGroup: the Ray actor group of learners forming one torch.distributed group.

Driver-side handle; every method fans out to all ranks (the DeepSpeed calls are collectives) and
merges the results. Methods prefixed ``async_`` return Ray object refs instead of blocking.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from trainer.batch import TrainBatch
from trainer.learner import Learner, LearnerSpec


class _Rank0Address:
    """Tiny actor placed like rank 0 to pick the rendezvous address on rank 0's node."""

    def address(self) -> tuple[str, int]:
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port


class LearnerLost(RuntimeError):
    """A learner rank died: the run stops (resume from the last checkpoint)."""


class LearnerGroup:
    def __init__(
        self,
        spec: LearnerSpec,
        num_learners: int,
        gpus_per_learner: float = 0.0,
        log_files: list[str | None] | None = None,
        call_timeout_s: float | None = None,
        placement=None,
        rendezvous_timeout_s: float = 300.0,
    ) -> None:
        import ray

        def pin(rank: int) -> dict:  # launch.placement.Placement: each rank on its own bundle
            return placement.options("learner", rank) if placement is not None else {}

        # The rendezvous address is picked on rank 0's own bundle, i.e. on the node where rank 0 will listen.
        addr_actor = ray.remote(_Rank0Address).options(num_cpus=0, **pin(0)).remote()
        master_addr, master_port = ray.get(addr_actor.address.remote())
        ray.kill(addr_actor)
        env = {"OMP_NUM_THREADS": str(spec.threads), "TOKENIZERS_PARALLELISM": "false"}
        actor = ray.remote(Learner)
        self.actors = [
            actor.options(
                num_cpus=spec.threads, num_gpus=gpus_per_learner, runtime_env={"env_vars": env}, **pin(rank)
            ).remote(
                rank,
                num_learners,
                master_addr,
                master_port,
                spec,
                (log_files or [None] * num_learners)[rank],
                rendezvous_timeout_s,
            )
            for rank in range(num_learners)
        ]
        self.spec = spec
        self.world = num_learners
        # Every fan-out is submitted to all ranks under this lock, so calls from two driver threads (the
        # training loop and an async rollout producer's curriculum, launch/pipeline.py) reach every rank in
        # the same order: their collectives cannot interleave differently on different ranks.
        self._submit = threading.Lock()
        self.call_timeout_s = call_timeout_s
        self._get([a.__ray_ready__.remote() for a in self.actors], "start")

    def train(self, batch: TrainBatch, pad_id: int) -> dict[str, float]:
        import ray

        # Every rank must run the same number of micro-batches (ZeRO collectives), so pad rows evenly.
        per = self.world * self.spec.mini_batches
        batch = batch.pad_rows(per, pad_id)
        ref = ray.put(batch)
        results = self._get(self._fanout(lambda a: a.train.remote(ref)), "train")
        keys = set().union(*results)
        return {k: sum(r.get(k, 0.0) for r in results) / sum(k in r for r in results) for k in keys}

    def evaluate(self, batch: TrainBatch, pad_id: int) -> dict[str, float]:
        """Loss-term metrics on ``batch`` without an update (held-out preference accuracy, NLL, ...)."""
        import ray

        batch = batch.pad_rows(self.world, pad_id)
        ref = ray.put(batch)
        results = self._get(self._fanout(lambda a: a.evaluate.remote(ref)), "evaluate")
        keys = set().union(*results)
        return {k: sum(r.get(k, 0.0) for r in results) / sum(k in r for r in results) for k in keys}

    def reference_logprobs(self, batch: TrainBatch):
        """Reference log-probs of every row, computed by rank 0 (other ranks idle): fills offline caches."""

        if self.spec.zero_stage == 3 and self.world > 1:
            # a ZeRO-3 reference is partitioned: every rank must run the same forwards
            return self._get(
                self._fanout(lambda a: a.reference_logprobs.remote(batch)), "reference log-probs"
            )[0]
        return self._get([self.actors[0].reference_logprobs.remote(batch)], "reference log-probs")[0]

    def export_weights(self, probe_ids: list[int]):
        """(object ref of rank 0's safetensors bytes, rank 0's probe log-probs). The bytes stay in the store."""
        import ray

        pairs = self._fanout(lambda a: a.export_weights.options(num_returns=2).remote(probe_ids))
        blob_ref, probe_ref = pairs[0]
        # wait for every rank's part of the collective (rank 0's probe included)
        self._get([probe_ref] + [p[1] for p in pairs[1:]], "weight sync: export")
        return blob_ref, ray.get(probe_ref)

    def save(self, path: str, save_optimizer: bool = True) -> None:

        self._get(self._fanout(lambda a: a.save.remote(path, save_optimizer)), "checkpoint save")

    def load(self, path: str) -> None:

        self._get(self._fanout(lambda a: a.load.remote(path)), "checkpoint load")

    def call(self, method: str, *args, **kwargs) -> list:
        """Run any learner method on every rank (e.g. strategy-specific estimators)."""

        return self._get(
            self._fanout(lambda a: getattr(a, method).remote(*args, **kwargs)), f"learner call {method}"
        )

    def submit(self, method: str, *args, **kwargs) -> list:
        """Object refs of ``method`` on every rank, without waiting (e.g. to run beside other actors' calls)."""
        return self._fanout(lambda a: getattr(a, method).remote(*args, **kwargs))

    def _fanout(self, submit) -> list:
        """``submit(actor)`` for every rank, atomically with respect to other driver threads."""
        with self._submit:
            return [submit(a) for a in self.actors]

    def _get(self, refs: list, what: str) -> list:
        """One call on every rank, with the run's deadline (RemoteCallTimeout names the late ranks); a dead rank
        is a LearnerLost naming it (learners hold the optimizer state: they are not restarted mid-run)."""
        import ray
        from ray.exceptions import RayActorError

        from launch.ray_utils import wait_all

        wait_all(refs, [f"learner rank {i}" for i in range(len(refs))], what, self.call_timeout_s)
        out = []
        for rank, ref in enumerate(refs):
            try:
                out.append(ray.get(ref))
            except RayActorError as e:
                cause = next((ln for ln in str(e).splitlines() if "could not join" in ln), "")
                raise LearnerLost(
                    f"{what}: learner rank {rank} died ({type(e).__name__}{': ' + cause.strip() if cause else ''}); "
                    "the run stops. Its log is in "
                    f"<output_dir>/logs/learner_{rank}.log; resume=true restarts from the last checkpoint"
                ) from None
        return out

    def shutdown(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.get([a.shutdown.remote() for a in self.actors], timeout=60)
        for a in self.actors:
            ray.kill(a)
        self.actors = []
