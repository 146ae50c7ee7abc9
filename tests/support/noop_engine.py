"""A vLLM engine whose weight update silently does nothing: the sync check must catch it."""

from __future__ import annotations

from rollout.engines.vllm_engine import VLLMEngine


class NoopSyncVLLMEngine(VLLMEngine):
    def update_weights(self, blob: bytes) -> int:
        return 999  # claims success, loads nothing
