"""Held-out evaluation of a multi-turn agent: greedy episodes (and k sampled ones) on environment tasks.

    python -m launch.eval --task episodes CHECKPOINT_OR_RECIPE [--tasks FILE] [--num-tasks N] [--k 4]
        [--recipe RECIPE] [--engine vllm|hf] [--pool local|ray] [--pool-size 8] [--out results.json]

CHECKPOINT_OR_RECIPE is what ``launch.eval`` takes (a checkpoint, a run folder, a recipe, a model folder or
``builtin:NAME``). The game is played as the recipe plays it — environment and its options, chat turns, turn and
token budgets — read from the recipe's strategy (``options.episode_spec``: ``multiturn_grpo``, ``hpl``): the
checkpoint's run ``recipe.yaml``, the recipe given, or ``--recipe`` for a bare model (e.g. the base model on the
recipe's game). A model is judged on the turns it was trained with.

Tasks: ``--tasks``, else the strategy's held-out tasks, else ``test.jsonl`` beside its training tasks (the
split ``python -m rollout.envs.textworld_env make`` and ``... scienceworld_env make-tasks`` write). Each task is
played once greedily: ``env/success_rate``, ``env/return_mean``, invalid-action and truncation rates
(rollout/multiturn.episode_metrics). With ``--k K`` each task is also played K times at the recipe's sampling
temperature: ``env/success_avg@K`` (mean success of the samples) and ``env/success_pass@K`` (unbiased pass@K,
launch/passk.py). Episodes whose environment failed (raised, hung, died) are counted (``env/failures``) and
left out of the means, never scored as losses or wins.

The JSON (default ``runs/eval/<model>_episodes_<time>.json``) holds the resolved settings, git commit, package
versions, the metrics and every episode's transcript (actions, replies, observations, rewards, status), so a
number can be read back to what the agent did. Generation runs in this process (no Ray, no actors); the
environments in a local pool by default (``--pool ray``: one actor per slot, a hung step kills and replaces it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from launch.eval import (
    EvalError,
    LocalGenerator,
    Target,
    _default_out,
    _finite,
    environment,
    resolve_target,
)
from launch.passk import aggregate


def load_tasks(path: str | Path, max_tasks: int | None = None) -> list[Any]:
    """Task rows (``id``, ``text`` = the objective, env columns, ``expert_actions``) as Prompts."""
    from curricula.data import read_rows
    from rollout.types import Prompt

    p = Path(path)
    if not p.is_file():
        raise EvalError(f"task file not found: {p} (make the games or tasks first, see the recipe's header)")
    out = []
    for i, row in enumerate(read_rows(p)):
        for key in ("id", "text"):
            if key not in row:
                raise EvalError(f"{p} row {i}: no {key!r} field (fields: {sorted(row)})")
        extra = {k: v for k, v in row.items() if k != "id"}
        out.append(Prompt(str(row["id"]), str(row["text"]), None, None, extra))
    return out[:max_tasks] if max_tasks else out


def episode_spec(recipe: Any, origin: str) -> Any:
    """The recipe's :class:`~rollout.multiturn.EpisodeSpec`, from its strategy's options."""
    from launch.components import load_registries
    from launch.config import component_options

    name = recipe.strategy.name
    strategies = load_registries().strategies
    if name not in strategies:
        raise EvalError(f"{origin}: strategy.name {name!r} is not registered")
    opts = component_options(strategies[name].options, recipe.strategy.options, "strategy.options", origin)
    if not hasattr(opts, "episode_spec"):
        have = sorted(n for n, e in strategies.items() if hasattr(e.options, "episode_spec"))
        raise EvalError(
            f"{origin}: strategy {name!r} plays no environment episodes (strategies that do: {', '.join(have)})"
        )
    return opts.episode_spec(recipe)


def eval_tasks_path(spec: Any, given: str | None) -> Path:
    if given:
        return Path(given)
    if spec.eval_tasks:
        return Path(spec.eval_tasks)
    if spec.train_tasks:
        return Path(spec.train_tasks).with_name("test.jsonl")
    raise EvalError("no held-out tasks: pass --tasks FILE")


def evaluate_episodes(
    generator: Any,
    pool: Any,
    fmt: Any,
    limits: Any,
    tasks: list[Any],
    greedy: Any,
    sampling: Any = None,
    k: int = 0,
    progress: Any = print,
) -> tuple[dict[str, float], list[dict[str, Any]], list[dict[str, Any]]]:
    """Play every task once with ``greedy`` and, with ``k``, k times with ``sampling``.

    Returns (metrics, greedy episode records, sampled episode records)."""
    from rollout.multiturn import EpisodeRunner, EpisodeStart, episode_metrics

    t0 = time.perf_counter()
    eps = EpisodeRunner(pool, fmt, limits, greedy).run([EpisodeStart(p) for p in tasks], generator)
    metrics = episode_metrics(eps)
    progress(f"  greedy: {len(eps)} episodes in {time.perf_counter() - t0:.0f} s")
    sampled: list[dict[str, Any]] = []
    if k > 0:
        if sampling is None:
            raise ValueError("k > 0 needs sampling parameters")
        t0 = time.perf_counter()
        starts = [EpisodeStart(p) for p in tasks for _ in range(k)]
        seps = EpisodeRunner(pool, fmt, limits, sampling).run(starts, generator)
        counts = []
        for i in range(len(tasks)):
            played = [e for e in seps[i * k : (i + 1) * k] if e.status != "env_failure"]
            # pass@k needs k played samples: a task with a failed environment episode is left out (counted).
            if len(played) == k:
                counts.append((k, sum(e.won for e in played)))
        agg = aggregate(counts, k)
        ok = [e for e in seps if e.status != "env_failure"]
        metrics |= {
            f"env/success_avg@{k}": agg["avg@k"],
            f"env/success_pass@{k}": agg["pass@k"],
            f"env/return_mean@{k}": sum(e.episode_return for e in ok) / max(len(ok), 1),
            f"env/tasks_scored@{k}": float(agg["problems"]),
            f"env/failures@{k}": float(len(seps) - len(ok)),
        }
        sampled = [e.record() | {"sample": j % k} for j, e in enumerate(seps)]
        progress(f"  sampled: {len(seps)} episodes ({k} per task) in {time.perf_counter() - t0:.0f} s")
    return metrics, [e.record() for e in eps], sampled


def make_pool(spec: Any, kind: str, size: int | None) -> Any:
    from rollout.envs.base import absolute_paths
    from rollout.envs.pool import LocalEnvPool, RayEnvPool

    env_options = absolute_paths(spec.env_options)
    if kind == "ray":
        from launch.ray_utils import init_ray

        init_ray(None, 1, quiet=True)
        return RayEnvPool(spec.env, env_options, size or spec.pool_size, spec.step_timeout_s)
    return LocalEnvPool(spec.env, env_options, size or spec.pool_size, spec.step_timeout_s)


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m launch.eval --task episodes", description=__doc__.split("\n")[0]
    )
    ap.add_argument("target", metavar="CHECKPOINT_OR_RECIPE")
    ap.add_argument("--recipe", default=None, help="how to play, for a bare model (default: the target's)")
    ap.add_argument("--tasks", default=None, help="held-out task rows (default: the recipe's test split)")
    ap.add_argument("--num-tasks", type=int, default=None, help="the first N tasks")
    ap.add_argument("--k", type=int, default=0, help="sampled episodes per task (avg@k, pass@k)")
    ap.add_argument("--temperature", type=float, default=None, help="for --k (default: the recipe's)")
    ap.add_argument("--engine", choices=["vllm", "hf"], default=None, help="default: the recipe's")
    ap.add_argument("--pool", choices=["local", "ray"], default="local")
    ap.add_argument("--pool-size", type=int, default=None, help="episodes at once (default: the recipe's)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--kv-cache-gb", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=None, help="JSON (default runs/eval/<model>_episodes_<time>.json)")
    return ap.parse_args(argv)


def _recipe_of(args: argparse.Namespace, target: Target) -> tuple[Any, str]:
    from launch.config import load_recipe

    if args.recipe:
        return load_recipe(args.recipe), args.recipe
    if target.recipe is None:
        raise EvalError(
            f"{args.target}: no recipe to say how the game is played: pass a multi-turn recipe, a checkpoint of "
            "a run, or --recipe RECIPE"
        )
    return target.recipe, str(target.recipe_path)


def main(argv: list[str] | None = None) -> int:
    from launch.config import ConfigError

    args = parse_args(argv)
    try:
        if args.k < 0:
            raise EvalError(f"--k {args.k}: must be >= 0")
        target = resolve_target(args.target)
        recipe, origin = _recipe_of(args, target)
        spec = episode_spec(recipe, origin)
        tasks = load_tasks(eval_tasks_path(spec, args.tasks), args.num_tasks)
        if not tasks:
            raise EvalError("no tasks to play")
    except (EvalError, ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run(args, target, recipe, origin, spec, tasks)
    return 0


def run(
    args: argparse.Namespace, target: Target, recipe: Any, origin: str, spec: Any, tasks: list[Any]
) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from launch.components import ENGINES, import_object
    from launch.quiet import fd_redirect
    from launch.setup import bf16_is_fast
    from rollout.engines.base import EngineSpec
    from rollout.types import SamplingParams
    from rollout.worker import pin_threads

    t_start = time.perf_counter()
    model = target.model_path
    dtype = recipe.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if bf16_is_fast() else "float32"
    engine_name = args.engine or recipe.rollout.engine
    seed = args.seed if args.seed is not None else recipe.seed
    kv = args.kv_cache_gb or recipe.rollout.kv_cache_gb
    temperature = spec.temperature if args.temperature is None else args.temperature
    tokenizer = AutoTokenizer.from_pretrained(model)
    fmt = spec.turn_format(tokenizer)
    pin_threads(args.threads)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    out = Path(args.out) if args.out else _default_out(target, "_episodes")
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".engine.log")
    espec = EngineSpec(
        model, dtype, spec.limits.max_tokens, kv, recipe.rollout.enforce_eager, seed, args.threads
    )
    t0 = time.perf_counter()
    with fd_redirect(str(log)):  # the engine's start-up chatter
        engine = import_object(ENGINES[engine_name])(espec)
    engine_start_s = time.perf_counter() - t0
    a = spec.limits.max_action_tokens
    greedy = SamplingParams(a, 0.0)
    sampling = SamplingParams(a, temperature, recipe.rollout.top_p, recipe.rollout.top_k)
    pool = make_pool(spec, args.pool, args.pool_size)
    print(f"{len(tasks)} tasks ({spec.env}), greedy + {args.k} samples each, model {model}", flush=True)
    try:
        metrics, greedy_eps, sampled_eps = evaluate_episodes(
            LocalGenerator(engine, sampling), pool, fmt, spec.limits, tasks, greedy, sampling, args.k
        )
    finally:
        pool.close()
    settings = {
        "target": args.target,
        "kind": target.kind,
        "model_path": model,
        "recipe": origin,
        "tasks": str(eval_tasks_path(spec, args.tasks)),
        "num_tasks": len(tasks),
        "k": args.k,
        "temperature": temperature,
        "top_p": recipe.rollout.top_p,
        "top_k": recipe.rollout.top_k,
        "engine": engine_name,
        "dtype": dtype,
        "seed": seed,
        "pool": args.pool,
        "episode_spec": asdict(spec),
        "chat_template": bool(spec.use_chat_template and getattr(tokenizer, "chat_template", None)),
    }
    report = {
        "settings": settings,
        **environment(),
        "engine_start_s": engine_start_s,
        "wall_s": time.perf_counter() - t_start,
        "metrics": metrics,
        "episodes": greedy_eps,
        "sampled_episodes": sampled_eps,
    }
    line = f"success {metrics['env/success_rate']:.3f}, return {metrics['env/return_mean']:.3f}"
    if args.k:
        line += (
            f"; success avg@{args.k} {metrics[f'env/success_avg@{args.k}']:.3f}, "
            f"pass@{args.k} {metrics[f'env/success_pass@{args.k}']:.3f}"
        )
    print(
        f"{line}; invalid actions {metrics['env/invalid_action_frac']:.2f}, env failures "
        f"{metrics['env/failures']:.0f}"
    )
    out.write_text(json.dumps(_finite(report), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out} ({report['wall_s']:.0f} s)")
    return report


if __name__ == "__main__":
    sys.exit(main())
