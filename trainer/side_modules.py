"""Side modules: a small trainable network around a frozen causal LM (PPlug's user embedder, soft prompts).

A side module wraps the HF model on the learners before ``deepspeed.initialize``. The LM is frozen — its
parameters do not require grad, so they get no gradient and no optimizer state (the optimizer only receives
parameters that require grad, as under LoRA) — and the side module feeds it through ``inputs_embeds``. Its
forward takes the batch's token ids plus per-row ``features`` (tensors the driver computed from the data
rows: ``TrainBatch.features``) and returns logits aligned with ``input_ids``: the prefix positions it
prepends are cut off, so every loss, mask and reducer works unchanged.

A registered entry names the options dataclass, the module factory (learner side) and the feature builder
(driver side, ``"module:function"``, imported lazily because it may load a frozen encoder).

Side modules run with the offline strategies (sft, preference): per-row soft prompts are not passed to the
rollout engines, so online strategies are refused at validation. Checkpoints write ``side_module/``
(the trainable weights in safetensors + ``side_module.json`` naming the module, its options and the base
model); the frozen LM is rebuilt from the recipe's model path, never copied.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

SideModuleFactory = Callable[[Any, Any], torch.nn.Module]  # (HF causal LM, options) -> wrapped module


@dataclass(frozen=True)
class SideModuleEntry:
    options: type
    factory: SideModuleFactory
    features: str  # "module:function": (options, FeatureContext) -> FeatureFn, run on the driver


SIDE_MODULES: dict[str, SideModuleEntry] = {}
# Modules register on import; add a method's module here (imported by ``entry``).
SIDE_MODULE_MODULES = ["trainer.pplug"]


def register_side_module(
    name: str, options: type, features: str
) -> Callable[[SideModuleFactory], SideModuleFactory]:
    def deco(factory: SideModuleFactory) -> SideModuleFactory:
        SIDE_MODULES[name] = SideModuleEntry(options, factory, features)
        return factory

    return deco


def entry(name: str) -> SideModuleEntry:
    import importlib

    for mod in SIDE_MODULE_MODULES:
        importlib.import_module(mod)
    if name not in SIDE_MODULES:
        raise KeyError(f"unknown side module {name!r}; registered: {sorted(SIDE_MODULES)}")
    return SIDE_MODULES[name]


@dataclass(frozen=True)
class SideModuleSpec:
    """What the learners get: a registered name and its options (a plain dict, so the spec pickles)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def build_options(self) -> Any:
        return entry(self.name).options(**self.options)


@dataclass
class FeatureContext:
    """What a feature builder may use on the driver."""

    model_path: str  # the frozen LM (HF folder)
    prompts: list[Any]  # every data row the run will see (train + eval): what to precompute
    seed: int = 0


FeatureFn = Callable[[list[Any]], dict[str, torch.Tensor]]  # samples -> per-row tensors (first dim = rows)


def build(model: Any, spec: SideModuleSpec) -> torch.nn.Module:
    """``model`` wrapped by the side module; afterwards only the side module's parameters require grad."""
    module = entry(spec.name).factory(model, spec.build_options())
    frozen = [n for n, p in module.named_parameters() if n.startswith("lm.") and p.requires_grad]
    if frozen:  # the contract every side module must keep (and what the tests check)
        raise RuntimeError(f"side module {spec.name!r} left LM parameters trainable: {frozen[:3]}")
    return module


def feature_builder(spec: SideModuleSpec, ctx: FeatureContext) -> FeatureFn:
    from launch.components import import_object

    return import_object(entry(spec.name).features)(spec.build_options(), ctx)


def trainable_state(module: torch.nn.Module, full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The side module's own weights out of a full state dict (everything outside the frozen ``lm.``)."""
    return {k: v.contiguous() for k, v in full.items() if not k.startswith("lm.")}


def save(path: Path, spec: SideModuleSpec, state: dict[str, torch.Tensor], base_model: str) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path / "side_module.safetensors"))
    meta = {"name": spec.name, "options": spec.options, "base_model": base_model}
    (path / "side_module.json").write_text(json.dumps(meta, indent=2))


def load(path: str | Path, base_model: str | None = None, dtype: torch.dtype = torch.float32) -> Any:
    """A saved side module around its frozen LM (``base_model`` overrides the saved path), in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    p = Path(path)
    if (p / "side_module").is_dir():
        p = p / "side_module"
    meta_file = p / "side_module.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{p}: no side_module.json (a checkpoint's side_module/ folder holds one)")
    meta = json.loads(meta_file.read_text())
    spec = SideModuleSpec(meta["name"], meta["options"])
    lm = AutoModelForCausalLM.from_pretrained(
        base_model or meta["base_model"], dtype=torch.float32, use_safetensors=True
    )
    module = build(lm, spec)
    missing, unexpected = module.load_state_dict(load_file(str(p / "side_module.safetensors")), strict=False)
    missing = [k for k in missing if not k.startswith("lm.")]
    if missing or unexpected:
        raise ValueError(f"{p}: side module weights do not match: missing {missing}, unexpected {unexpected}")
    return module.to(dtype).eval()


def describe(spec: SideModuleSpec) -> dict[str, Any]:
    return {"name": spec.name, "options": asdict(spec.build_options())}
