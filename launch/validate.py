"""Recipe checks that need more than types (sizes, files, registries, option combinations), run by
``launch.config.load_recipe`` before any actor starts. Each failure is one ``ConfigError`` line naming the key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from launch.config import ConfigError, LoraConfig, RecipeConfig, component_options
from launch.prepare_model import model_folder


def _check(cond: bool, origin: str, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{origin}: {key}: {msg}")


def _validate_roles(cfg: RecipeConfig, origin: str, losses: list[str]) -> None:
    from trainer.losses import LOSSES, required_roles

    for name in losses:
        _check(
            name in LOSSES, origin, "strategy", f"emits unknown loss {name!r}; registered: {sorted(LOSSES)}"
        )
    for role, loss in required_roles(losses).items():
        _check(
            role == "reference" or role in cfg.aux_models,
            origin,
            f"aux_models.{role}",
            f"the {loss!r} loss needs a frozen {role!r} model: set aux_models.{role}.path to an HF folder",
        )
    for role, aux in cfg.aux_models.items():
        p = Path(model_folder(aux.path))
        _check(
            aux.path == "policy" or (p.is_dir() and (p / "config.json").is_file()),
            origin,
            f"aux_models.{role}.path",
            f"{aux.path!r} is not a model folder with config.json (or 'policy' for the initial weights)",
        )


def _validate_eval_and_best(cfg: RecipeConfig, origin: str) -> None:
    import re

    k, best = cfg.eval.k, cfg.checkpoint.best_metric
    _check(k >= 0, origin, "eval.k", f"{k} must be >= 0 (0: greedy only)")
    _check(
        k == 0 or cfg.rollout.temperature > 0,
        origin,
        "eval.k",
        "samples need rollout.temperature > 0 (at 0 every sample is the greedy answer); or set eval.k: 0",
    )
    _check(
        cfg.checkpoint.best_mode in ("max", "min"),
        origin,
        "checkpoint.best_mode",
        f"{cfg.checkpoint.best_mode!r} is not max or min",
    )
    if best is None:
        return
    _check(
        best.startswith("eval/"),
        origin,
        "checkpoint.best_metric",
        f"{best!r} is not an eval metric; name one that evaluation logs, e.g. eval/accuracy",
    )
    _check(
        cfg.eval.num_prompts > 0,
        origin,
        "checkpoint.best_metric",
        "needs evaluation: set eval.num_prompts > 0 (and eval.every)",
    )
    m = re.fullmatch(r"eval/(?:pass|avg)@(\d+)", best)
    _check(
        m is None or int(m.group(1)) == k,
        origin,
        "checkpoint.best_metric",
        f"{best!r} needs eval.k: {m.group(1) if m else ''} (eval.k is {k})",
    )


def _validate_dynamic(cfg: RecipeConfig, origin: str, strategies: dict[str, Any]) -> None:
    ds = cfg.algorithm.dynamic_sampling
    if not ds.enabled:
        return
    key = "algorithm.dynamic_sampling"
    _check(
        ds.metric in ("reward", "accuracy"),
        origin,
        f"{key}.metric",
        f"{ds.metric!r} is not reward or accuracy",
    )
    _check(ds.max_rounds >= 1, origin, f"{key}.max_rounds", f"{ds.max_rounds} must be >= 1 (1: filter only)")
    _check(ds.target_groups >= 0, origin, f"{key}.target_groups", f"{ds.target_groups} must be >= 0")
    entry = strategies.get(cfg.strategy.name)
    _check(
        entry is None or entry.needs_generator,
        origin,
        key,
        f"strategy {cfg.strategy.name!r} trains on a fixed dataset (no rollouts to resample); disable it",
    )


def _validate_async(cfg: RecipeConfig, origin: str, strategies: dict[str, Any]) -> None:
    ar = cfg.algorithm.async_rollout
    if not ar.enabled:
        return
    key = "algorithm.async_rollout"
    _check(ar.max_staleness >= 0, origin, f"{key}.max_staleness", f"{ar.max_staleness} must be >= 0")
    _check(
        ar.stale in ("regenerate", "drop"), origin, f"{key}.stale", f"{ar.stale!r} is not regenerate or drop"
    )
    entry = strategies.get(cfg.strategy.name)
    _check(
        entry is None or entry.needs_generator,
        origin,
        key,
        f"strategy {cfg.strategy.name!r} trains on a fixed dataset (no rollout to overlap with training); "
        "disable it",
    )
    a = cfg.algorithm
    _check(
        a.logprobs_source == "engine" or a.tis_cap is not None or a.mismatch_seq_threshold is not None,
        origin,
        key,
        "samples from older weights need an importance correction against the engine that generated them: set "
        "algorithm.tis_cap (e.g. 2) or algorithm.mismatch_seq_threshold, or algorithm.logprobs_source: engine",
    )


def _validate_lora(lora: LoraConfig, origin: str) -> None:
    if not lora.enabled:
        return
    _check(lora.r >= 1, origin, "model.lora.r", f"{lora.r} must be >= 1")
    _check(lora.alpha > 0, origin, "model.lora.alpha", f"{lora.alpha} must be > 0")
    _check(0.0 <= lora.dropout < 1.0, origin, "model.lora.dropout", f"{lora.dropout} must be in [0, 1)")
    _check(
        len(lora.target_modules) > 0 and all(isinstance(m, str) and m for m in lora.target_modules),
        origin,
        "model.lora.target_modules",
        "list at least one Linear module name, e.g. [q_proj, v_proj]",
    )


def _validate_side_module(cfg: RecipeConfig, origin: str, strategies: dict) -> None:
    sm = cfg.model.side_module
    if sm.name is None:
        return
    from trainer.losses import LOSSES
    from trainer.side_modules import entry

    key = "model.side_module"
    try:
        e = entry(sm.name)
    except KeyError as err:
        raise ConfigError(f"{origin}: {key}.name: {err.args[0]}") from None
    component_options(e.options, sm.options, f"{key}.options", origin)
    s = strategies.get(cfg.strategy.name)
    _check(
        s is None or not s.needs_generator,
        origin,
        key,
        f"strategy {cfg.strategy.name!r} generates with the rollout engines, which are not given the side "
        "module's per-row soft prompts; use an offline strategy (sft, preference)",
    )
    _check(not cfg.model.lora.enabled, origin, key, "a side module and model.lora cannot be combined")
    if s is not None:
        opts = component_options(s.options, cfg.strategy.options, "strategy.options", origin)
        refs = [n for n in s.losses(opts, cfg.algorithm) if LOSSES[n].needs_ref]
        _check(
            not refs,
            origin,
            key,
            f"the {refs} loss needs a reference model, and a reference that reads the side module's "
            "features is not wired; use a reference-free loss (nll, simpo)",
        )


def validate(cfg: RecipeConfig, origin: str = "<recipe>") -> None:
    """Checks that need more than types. Imports only light registries (no ray/vllm/deepspeed)."""
    from launch.components import load_registries

    reg = load_registries()
    _check(
        cfg.model.dtype in ("bfloat16", "float32", "auto"),
        origin,
        "model.dtype",
        f"{cfg.model.dtype!r} is not bfloat16, float32 or auto",
    )
    if not cfg.model.path.startswith("builtin:"):
        p = Path(model_folder(cfg.model.path))
        _check(
            p.is_dir() and (p / "config.json").is_file(),
            origin,
            "model.path",
            f"{cfg.model.path!r} is not a model folder with config.json, a checkpoint or a run folder with "
            "checkpoints/latest (or use builtin:smollm2-135m-instruct)",
        )
        _check(
            any(p.glob("*.safetensors")),
            origin,
            "model.path",
            f"{cfg.model.path!r} has no .safetensors weights; pickled weights (.bin/.pt) are never loaded "
            "(convert once: AutoModelForCausalLM.from_pretrained(path).save_pretrained(path, safe_serialization=True))",
        )
    else:
        _check(
            cfg.model.path in reg.builtin_models,
            origin,
            "model.path",
            f"unknown builtin model {cfg.model.path!r}; known: {sorted(reg.builtin_models)}",
        )
    _validate_lora(cfg.model.lora, origin)
    _validate_side_module(cfg, origin, reg.strategies)
    _check(
        cfg.rollout.engine in reg.engines,
        origin,
        "rollout.engine",
        f"unknown engine {cfg.rollout.engine!r}; use one of {sorted(reg.engines)}",
    )
    _check(
        cfg.trainer.zero_stage in (0, 1, 2, 3),
        origin,
        "trainer.zero_stage",
        f"{cfg.trainer.zero_stage} is not 0-3",
    )
    _check(cfg.trainer.lr > 0, origin, "trainer.lr", "must be > 0")
    _check(cfg.trainer.num_learners >= 1, origin, "trainer.num_learners", "must be >= 1")
    _check(cfg.trainer.micro_batch_size >= 1, origin, "trainer.micro_batch_size", "must be >= 1")
    _check(cfg.rollout.num_workers >= 1, origin, "rollout.num_workers", "must be >= 1")
    _check(cfg.rollout.max_new_tokens >= 1, origin, "rollout.max_new_tokens", "must be >= 1")
    _check(
        cfg.rollout.max_model_len > cfg.rollout.max_new_tokens,
        origin,
        "rollout.max_model_len",
        f"{cfg.rollout.max_model_len} leaves no room for a prompt: it must exceed rollout.max_new_tokens "
        f"({cfg.rollout.max_new_tokens})",
    )
    _check(cfg.rollout.temperature >= 0, origin, "rollout.temperature", "must be >= 0 (0: greedy)")
    _check(0 < cfg.rollout.top_p <= 1, origin, "rollout.top_p", "must be in (0, 1]")
    _check(cfg.algorithm.kl_coef >= 0, origin, "algorithm.kl_coef", "must be >= 0")
    _check(cfg.eval.num_prompts >= 0, origin, "eval.num_prompts", "must be >= 0 (0: no eval)")
    _check(cfg.curriculum.prompts_per_step >= 1, origin, "curriculum.prompts_per_step", "must be >= 1")
    _check(cfg.curriculum.n_samples >= 1, origin, "curriculum.n_samples", "must be >= 1")
    _check(cfg.total_steps >= 0, origin, "total_steps", "must be >= 0")
    _validate_eval_and_best(cfg, origin)
    _check(
        cfg.algorithm.advantage in reg.advantages,
        origin,
        "algorithm.advantage",
        f"unknown estimator {cfg.algorithm.advantage!r}; registered: {sorted(reg.advantages)}",
    )
    _check(
        cfg.algorithm.loss_norm in ("token", "sequence", "constant"),
        origin,
        "algorithm.loss_norm",
        f"{cfg.algorithm.loss_norm!r} is not token, sequence or constant",
    )
    _check(
        cfg.algorithm.kl_estimator in ("k1", "k2", "k3"), origin, "algorithm.kl_estimator", "use k1, k2 or k3"
    )
    _check(
        cfg.algorithm.logprobs_source in ("recompute", "engine"),
        origin,
        "algorithm.logprobs_source",
        "use recompute or engine",
    )
    _check(
        cfg.algorithm.logprobs_source != "engine" or (cfg.rollout.top_p >= 1.0 and cfg.rollout.top_k <= 0),
        origin,
        "algorithm.logprobs_source",
        "engine log-probs under top_p < 1 or top_k > 0 are renormalised over the truncated vocabulary, which "
        "the learner's log-probs are not: the PPO ratio would be biased (use recompute; the mismatch is then "
        "corrected by algorithm.tis_cap)",
    )
    a = cfg.algorithm
    _check(
        a.tis_cap is None or a.tis_cap >= 1.0,
        origin,
        "algorithm.tis_cap",
        f"{a.tis_cap} must be >= 1 (or null)",
    )
    _check(
        a.mismatch_seq_threshold is None or a.mismatch_seq_threshold > 1.0,
        origin,
        "algorithm.mismatch_seq_threshold",
        f"{a.mismatch_seq_threshold} must be > 1 (or null)",
    )
    _check(
        cfg.algorithm.ppo_epochs >= 1 and cfg.algorithm.mini_batches >= 1,
        origin,
        "algorithm.ppo_epochs",
        "ppo_epochs and mini_batches must be >= 1",
    )
    _check(
        cfg.rollout.dispatch in ("dynamic", "static"),
        origin,
        "rollout.dispatch",
        f"{cfg.rollout.dispatch!r} is not dynamic or static",
    )
    _check(
        cfg.rollout.weight_sync in ("object_store", "collective"),
        origin,
        "rollout.weight_sync",
        f"{cfg.rollout.weight_sync!r} is not object_store or collective",
    )
    _check(cfg.rollout.sync_bucket_mb > 0, origin, "rollout.sync_bucket_mb", "must be > 0")
    pl = cfg.ray.placement
    _check(
        pl.mode in ("disaggregated", "colocated", "none"),
        origin,
        "ray.placement.mode",
        f"{pl.mode!r} is not disaggregated, colocated or none",
    )
    _check(
        pl.strategy in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
        origin,
        "ray.placement.strategy",
        f"{pl.strategy!r} is not PACK, SPREAD, STRICT_PACK or STRICT_SPREAD",
    )
    _check(
        pl.mode != "colocated" or cfg.rollout.num_workers <= cfg.trainer.num_learners,
        origin,
        "ray.placement.mode",
        f"colocated puts rollout worker j beside learner j: rollout.num_workers ({cfg.rollout.num_workers}) must "
        f"be <= trainer.num_learners ({cfg.trainer.num_learners})",
    )
    if cfg.rollout.sleep_when_idle:
        _check(cfg.rollout.engine == "vllm", origin, "rollout.sleep_when_idle", "needs rollout.engine: vllm")
        _check(
            pl.mode == "colocated",
            origin,
            "rollout.sleep_when_idle",
            f"frees device memory for learners sharing it: needs ray.placement.mode: colocated (not {pl.mode!r})",
        )
        _check(
            not cfg.algorithm.async_rollout.enabled,
            origin,
            "rollout.sleep_when_idle",
            "async rollout generates while the learners train: the engine cannot sleep then; disable one",
        )
    _validate_async(cfg, origin, reg.strategies)
    _validate_dynamic(cfg, origin, reg.strategies)
    _check(
        cfg.rewards.isolation in ("process", "inline"), origin, "rewards.isolation", "use process or inline"
    )
    _check(
        len(cfg.rewards.functions) > 0, origin, "rewards.functions", "at least one reward function is needed"
    )
    _check(
        cfg.strategy.name in reg.strategies,
        origin,
        "strategy.name",
        f"unknown strategy {cfg.strategy.name!r}; registered: {sorted(reg.strategies)}",
    )
    s_entry = reg.strategies[cfg.strategy.name]
    s_opts = component_options(s_entry.options, cfg.strategy.options, "strategy.options", origin)
    _validate_roles(cfg, origin, s_entry.losses(s_opts, cfg.algorithm))
    from curricula.formats import FORMATS

    _check(
        cfg.data.format in FORMATS,
        origin,
        "data.format",
        f"unknown format {cfg.data.format!r}; use one of {sorted(FORMATS)}",
    )
    _check(
        cfg.curriculum.name in reg.curricula,
        origin,
        "curriculum.name",
        f"unknown curriculum {cfg.curriculum.name!r}; registered: {sorted(reg.curricula)}",
    )
    component_options(
        reg.curricula[cfg.curriculum.name].options, cfg.curriculum.options, "curriculum.options", origin
    )
    plugin_keys = [(f"rewards.functions[{i}]", s) for i, s in enumerate(cfg.rewards.functions)]
    plugin_keys += [(f"rewards.monitors[{i}]", s) for i, s in enumerate(cfg.rewards.monitors)]
    for key, spec in [*plugin_keys, ("eval.answer_check", cfg.eval.answer_check)]:
        try:
            fn = reg.resolve_reward(spec.name)
        except Exception as e:  # the resolver's message names the path and the problem
            raise ConfigError(f"{origin}: {key}.name: {e}") from None
        check = getattr(fn, "check_kwargs", None)  # a plugin may check its recipe kwargs up front
        if check is not None:
            try:
                check(dict(spec.kwargs or {}))
            except (ValueError, TypeError) as e:
                raise ConfigError(f"{origin}: {key}.kwargs: {e}") from None
    src = cfg.data.source
    if src != "arithmetic" and not src.startswith("hf:"):
        _check(
            Path(os.path.expanduser(src)).is_file(),
            origin,
            "data.source",
            f"file {src!r} not found (use arithmetic, a .jsonl/.json/.parquet file, or hf:NAME)",
        )
    _check(
        cfg.data.prompt_field is not None or "{text}" not in cfg.prompt.template,
        origin,
        "prompt.template",
        f"{cfg.prompt.template!r} uses {{text}} but data.prompt_field is null: build the prompt from columns "
        "(e.g. 'Use {nums} to make {target}.') or name the text column in data.prompt_field",
    )
    _check(
        cfg.data.answer_extractor in reg.answer_extractors,
        origin,
        "data.answer_extractor",
        f"unknown extractor {cfg.data.answer_extractor!r}; use one of {sorted(reg.answer_extractors)}",
    )
