"""The driver: ``python -m launch.train RECIPE.yaml [key=value ...] [--verbose]``.

The console gets one line per step (and the eval lines); vLLM, DeepSpeed and Ray output goes to
``<output_dir>/logs/`` unless ``--verbose``; PNG plots of the run land in ``<output_dir>/plots/`` at the end.

Reads top to bottom as the algorithm. With no cluster address it starts an embedded local Ray;
under ``ray job submit`` it joins that cluster. Everything that varies between methods sits behind the
curriculum, strategy, reward and loss registries (launch/components.py).
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from launch.config import ConfigError, RecipeConfig, recipe_cli


class StepTimer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.t0 = time.perf_counter()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.times[f"time/{name}"] = self.times.get(f"time/{name}", 0.0) + time.perf_counter() - t

    def metrics(self, reward_s: float, produce_s: float) -> dict[str, float]:
        """``time/generate``: generation of the step's batch (its rollout time minus scoring); with async rollout
        it overlapped the previous step's update, and ``time/rollout`` is only what the driver waited."""
        out = dict(self.times)
        out["time/reward"] = reward_s
        out["time/generate"] = produce_s - reward_s
        out["time/step"] = time.perf_counter() - self.t0
        return out


def _rollouts(cfg: RecipeConfig, run, start: int):
    """The step's batch source: the curriculum picks prompts, the strategy generates and scores (SEELE and
    Cog-Rethinker call the generator several times), the curriculum observes (Beta counts); with dynamic
    sampling, groups without signal are dropped and more prompts are drawn. Then advantages and loss terms."""
    from launch.pipeline import AsyncRollouts, InlineRollouts, Produced
    from rollout.dynamic import collect_rollouts

    def produce(step: int) -> Produced:
        t = time.perf_counter()
        if run.generator is not None:
            run.generator.reseed(cfg.seed, step)  # sampling depends on (seed, step): exact resume
        batch, metrics = collect_rollouts(
            run.curriculum, run.strategy, run.generator, run.scorer, step, cfg.algorithm.dynamic_sampling
        )
        train_batch = run.strategy.make_train_batch(batch)
        return Produced(
            step,
            train_batch,
            metrics,
            batch.metrics.get("reward_time_s", 0.0),
            time.perf_counter() - t,
            copy.deepcopy(run.loop_state()),
        )

    ar = cfg.algorithm.async_rollout
    if ar.enabled and run.generator is not None:
        return AsyncRollouts(produce, start, cfg.total_steps, ar.max_staleness, ar.stale)
    return InlineRollouts(produce, start)


def resolve_output_dir(path: str) -> str:
    """The absolute, persistent folder of a run's outputs (checkpoints, metrics, plots, logs).

    An absolute ``output_dir`` is used as it is; a relative one is resolved against ``$FORGE_OUTPUT_ROOT`` when
    set (e.g. a shared filesystem every node mounts), else against the current directory — except in a
    ``ray job submit`` driver, whose current directory is Ray's temporary unpacked copy of the working dir
    (deleted by Ray, never looked at by the user): there a relative path without a root is an error."""
    import os
    from pathlib import Path

    from launch.ray_utils import in_ray_job

    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    root = os.environ.get("FORGE_OUTPUT_ROOT")
    if root:
        return str(Path(root).expanduser().resolve() / p)
    if in_ray_job():
        raise ConfigError(
            f"output_dir: {path!r} is relative and this driver runs inside `ray job submit`, whose working "
            "directory is a temporary copy that Ray deletes: set FORGE_OUTPUT_ROOT to persistent storage that "
            'every node reaches (--runtime-env-json \'{"env_vars": {"FORGE_OUTPUT_ROOT": "/shared/runs"}}\') '
            "or give an absolute output_dir"
        )
    return str(Path.cwd() / p)


def train(cfg: RecipeConfig) -> dict[str, float]:
    import ray  # noqa: F401  (imported before quiet_driver so that Ray's console logger can be taken off)

    from launch.quiet import log_file, quiet_driver, restore_driver

    cfg.output_dir = resolve_output_dir(cfg.output_dir)
    print(f"outputs: {cfg.output_dir} (checkpoints/, metrics.jsonl, plots/, logs/)", flush=True)

    handler = quiet_driver(log_file(cfg.output_dir, "driver", cfg.logging.verbose))
    try:
        last = _train(cfg)
    finally:
        restore_driver(handler)
    if cfg.logging.plots:
        from launch.plots import plot_run

        paths = plot_run(cfg.output_dir)
        if paths:
            print(f"plots: {', '.join(str(p) for p in paths)}", flush=True)
    if not cfg.logging.verbose:
        print(f"logs of vLLM, DeepSpeed, Ray and the reward worker: {cfg.output_dir}/logs/", flush=True)
    print(f"checkpoints: {cfg.output_dir}/checkpoints/ | metrics: {cfg.output_dir}/metrics.jsonl", flush=True)
    return last


def _train(cfg: RecipeConfig) -> dict[str, float]:
    from launch.checkpoint import CheckpointManager
    from launch.evaluate import evaluate
    from launch.metrics_log import MetricsLogger
    from launch.setup import build_run
    from rollout.generator import RolloutWorkerLost

    run = build_run(cfg)
    c = cfg.checkpoint
    ckpt = CheckpointManager(cfg.output_dir, c.keep_last, c.save_optimizer, c.best_metric, c.best_mode)
    start = 0
    if cfg.resume and (path := ckpt.latest()) is not None:
        state = ckpt.load_state(path)
        run.learners.load(str(path))
        run.curriculum.load_state_dict(state["curriculum"])
        run.strategy.load_state_dict(state["strategy"])
        if run.generator is not None:
            run.generator.sync_weights(run.learners)
        start = state["step"]
        print(f"resumed from {path} at step {start}", flush=True)
    log = MetricsLogger.from_config(cfg, start)
    if run.train_set.skipped:  # bad rows skipped under data.skip_invalid: counted, never silent
        log.log(-1, {"data/skipped_rows": float(run.train_set.skipped)}, advance=False)
    last: dict[str, float] = {}
    rollouts = None
    try:
        if cfg.eval.at_start and start == 0 and cfg.eval.num_prompts > 0:
            first = evaluate(run, cfg.eval.num_prompts, 0)
            log.log(-1, first | ckpt.keep_best(0, first, run.learners), advance=False)
        # Where batches come from: produced in line (synchronous) or k steps ahead in a thread (async rollout).
        rollouts = _rollouts(cfg, run, start)
        before = copy.deepcopy(
            run.loop_state()
        )  # the state the last finished step left (emergency checkpoint)
        for step in range(start, cfg.total_steps):
            timer, trained = StepTimer(), False
            try:
                with timer("rollout"):
                    item = rollouts.get(
                        step
                    )  # generation, scoring, train batch (waits for the thread if async)
                metrics = item.metrics | item.extra
                if cfg.rollout.sleep_when_idle and run.generator is not None:
                    run.generator.sleep()  # colocated GPU: the learners get vLLM's memory; the sync wakes it
                if item.train_batch is not None:
                    with timer("learner"):
                        metrics |= run.learners.train(item.train_batch, run.pad_id)  # DeepSpeed step(s)
                trained = True
                if run.generator is not None:  # offline strategies start no rollout workers
                    with timer("weight_sync"), rollouts.engine_lock:
                        metrics |= run.generator.sync_weights(run.learners)  # push + verify new weights
                        rollouts.weights_synced(step + 1)
            except RolloutWorkerLost:
                # Dead workers restart by themselves (Generator); this is one that kept dying. Keep what is
                # consistent: the step's update with the state after it, or the state before the step.
                path = ckpt.save(
                    step + 1 if trained else step, run.learners, item.state if trained else before
                )
                print(
                    f"rollout workers lost; last good state saved to {path} (resume=true continues)",
                    flush=True,
                )
                raise
            if run.generator is not None:
                metrics |= run.generator.pop_metrics()  # restarts, per-worker requests and tokens/s
            if cfg.eval.every and (step + 1) % cfg.eval.every == 0:
                with rollouts.engine_lock:
                    metrics |= evaluate(run, cfg.eval.num_prompts, step + 1)
                metrics |= ckpt.keep_best(step + 1, metrics, run.learners)  # checkpoints/best if improved
            if cfg.checkpoint.every and (step + 1) % cfg.checkpoint.every == 0:
                ckpt.save(step + 1, run.learners, item.state)
            before = item.state
            rollouts.step_done(step)  # async: lets the producer start batch step + 1 + k
            tb_metrics = item.train_batch.metrics if item.train_batch is not None else {}
            metrics |= tb_metrics | timer.metrics(item.reward_s, item.produce_s)
            log.log(step, metrics)
            last = metrics
        rollouts.close()
        if cfg.eval.num_prompts > 0 and not (cfg.eval.every and cfg.total_steps % cfg.eval.every == 0):
            final = evaluate(run, cfg.eval.num_prompts, cfg.total_steps)
            last |= final | ckpt.keep_best(cfg.total_steps, final, run.learners)
            log.log(
                cfg.total_steps - 1,
                {k: v for k, v in last.items() if k.startswith(("eval/", "best/"))},
                advance=False,
            )
        if cfg.total_steps > start and not (
            cfg.checkpoint.every and cfg.total_steps % cfg.checkpoint.every == 0
        ):
            ckpt.save(cfg.total_steps, run.learners, before)
    finally:
        if rollouts is not None:
            rollouts.close()
        log.close()
        run.close()
    return last


def main(argv: list[str] | None = None) -> int:
    def run(cfg: RecipeConfig, flags: set[str]) -> None:
        if "--verbose" in flags:  # third-party output on the console too (default: <output_dir>/logs/)
            cfg.logging.verbose = True
        train(cfg)

    return recipe_cli(argv, __doc__, run, ("--verbose",))


if __name__ == "__main__":
    sys.exit(main())
