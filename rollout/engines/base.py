"""The engine interface every rollout backend implements (vLLM, HF transformers).

Engines live inside a rollout actor (rollout/worker.py) and are imported only there, so the driver and
the pure-logic modules never import vllm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rollout.types import Completion, GenerationRequest, SamplingParams


@dataclass(frozen=True)
class EngineSpec:
    model_path: str
    dtype: str = "bfloat16"
    max_model_len: int = 1024
    kv_cache_gb: float = 1.0
    enforce_eager: bool = True
    seed: int = 0
    threads: int = 2
    # vLLM sleep mode (GPU): release weights and KV cache while the colocated learners train (rollout.sleep_when_idle)
    sleep_when_idle: bool = False


class Engine(Protocol):
    def generate(self, requests: list[GenerationRequest], defaults: SamplingParams) -> list[list[Completion]]:
        """Per request, ``request.n`` completions, in request order."""
        ...

    def update_weights(self, blob: bytes) -> int:
        """Load a safetensors-serialised (partial) state dict in place; returns the number of tensors."""
        ...

    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        """log π(token_t | tokens_<t) for t = 1..len-1 (the weight-sync check)."""
        ...
