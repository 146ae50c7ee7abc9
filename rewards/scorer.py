"""Score a batch of samples with the recipe's reward plugins: ``RewardScorer(...).score(samples) -> metrics``.

Each plugin is called once per batch (see :mod:`rewards.registry` for the contract). Per sample the scorer
sets ``reward_details[key]`` (each plugin's unweighted value), ``reward = Σ weight · value`` and
``correct`` (the accuracy plugin's value ≥ 0.5). ``key`` is the registered name, or the function name
for an import/file path (``my/file.py:score`` → ``score``; a ``#2`` suffix if two share it).

Monitors (``rewards.monitors``, default: the ``copied_expression`` reward-hacking guard) are plugins of the
same contract that never touch the reward: their per-sample values land in ``reward_details["monitor/<key>"]``
and their batch mean in the metric ``monitor/<key>``. A failing monitor is a warning, not a masked sample.

A plugin failure never crashes training: a raise, a timeout, a wrong-length result, a non-number or NaN
is logged as a warning naming the plugin and gives the affected samples ``reward=None`` (no reward signal,
left out of the loss), counted in the ``reward_failures`` metric. A plugin returning ``None`` for a sample
is not a failure: it means "no signal" (e.g. no reference answer) and also gives ``reward=None``.

Isolation:

- ``process``: plugins run in one persistent worker process (spawned, one thread), which resolves each
  plugin from its spec string itself, so file-path plugins work. A call past ``timeout_s`` kills the
  worker; the next call starts a fresh one.
- ``inline``: plugins run in the calling process. Exceptions are still caught, but a timeout cannot be
  enforced (a hung plugin hangs the caller); meant for tests and trusted, fast plugins.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rewards.registry import call_reward, resolve_reward, reward_key

if TYPE_CHECKING:
    from launch.config import RewardSpec
    from rollout.types import Sample

log = logging.getLogger(__name__)

_RESERVED = ("prompts", "completions")  # the contract's own keywords: never passed as columns
_WARMUP_TIMEOUT_S = 120.0  # starting the worker and importing the plugins (sympy...) is not the plugin's time


@dataclass(frozen=True)
class _Plugin:
    key: str  # name in reward_details and metrics
    spec: str  # what the recipe wrote (resolved again inside the worker process)
    weight: float
    kwargs: dict[str, Any]


# ---------------------------------------------------------------- worker side (spawned process)


# One thread per math library: the reward worker must not compete with engines and learners.
_WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@contextlib.contextmanager
def _worker_env() -> Iterator[None]:
    """Set the worker's env in this process while the worker is spawned (it inherits it), then restore."""
    saved = {k: os.environ.get(k) for k in _WORKER_ENV}
    os.environ.update(_WORKER_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker(
    log_file: str | None = None, memory_limit_gb: float | None = None, sandbox: bool = False
) -> None:
    os.environ.update(_WORKER_ENV)  # again in the child, in case the parent's env changed meanwhile
    from launch.quiet import redirect_output

    redirect_output(log_file)  # plugin prints and library warnings go to the run's log folder
    if memory_limit_gb:
        import resource

        cap = int(memory_limit_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))  # past it, allocations raise MemoryError
    if sandbox:
        import tempfile

        from rewards.sandbox import restrict_writes

        scratch = tempfile.mkdtemp(prefix="forge_reward_")
        os.environ["FORGE_REWARD_SCRATCH"] = os.environ["TMPDIR"] = scratch
        tempfile.tempdir = scratch
        os.chdir(scratch)  # relative paths in plugins land in the scratch folder
        if not restrict_writes([scratch]):
            print(
                "reward worker: no Landlock in this kernel: plugins run without the write sandbox", flush=True
            )


def _warmup(specs: list[str]) -> None:
    for spec in specs:
        resolve_reward(spec)
    if {"math", "copied_expression"} & set(specs):
        import math_verify  # noqa: F401  (sympy import takes seconds; keep it out of the first timed call)


def _call(spec: str, prompts: list[str], completions: list[str], kwargs: dict[str, Any]) -> Any:
    fn = resolve_reward(spec)
    if "torch" in sys.modules:  # a plugin imported torch: hold it to one thread too
        sys.modules["torch"].set_num_threads(1)
    return call_reward(fn, prompts, completions, kwargs)


# ---------------------------------------------------------------- result checking


def _as_float(v: Any) -> float | None:
    """A finite float for numbers (bools and numpy/torch scalars included), else None."""
    if v is None or isinstance(v, (str, bytes)) or not hasattr(type(v), "__float__"):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _check(out: Any, n: int) -> tuple[list[float | None], list[int], str | None]:
    """Values, indices of failed samples, and a description of what was wrong (None if nothing)."""
    if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__") or not hasattr(out, "__iter__"):
        return [None] * n, list(range(n)), f"returned {type(out).__name__}, not a list"
    out = list(out)  # tuples and numpy arrays are accepted too
    if len(out) != n:
        return [None] * n, list(range(n)), f"returned {len(out)} values for {n} completions"
    values: list[float | None] = []
    bad: list[int] = []
    for i, v in enumerate(out):
        f = _as_float(v)
        values.append(f)
        if f is None and v is not None:
            bad.append(i)
    problem = f"{len(bad)} non-finite or non-number values (first: {out[bad[0]]!r})" if bad else None
    return values, bad, problem


# ---------------------------------------------------------------- scorer


class RewardScorer:
    """Calls the recipe's reward plugins on a batch of samples and fills in their rewards."""

    def __init__(
        self,
        functions: list[RewardSpec],
        accuracy_from: str | None = None,
        timeout_s: float = 30.0,
        isolation: str = "process",
        monitors: list[RewardSpec] | tuple[RewardSpec, ...] = (),
        log_file: str | None = None,
        memory_limit_gb: float | None = None,
        sandbox: bool = False,
    ) -> None:
        if isolation not in ("process", "inline"):
            raise ValueError(f"rewards.isolation: {isolation!r} is not process or inline")
        if not functions:
            raise ValueError("rewards.functions: at least one reward function is needed")
        self._fns: dict[str, Any] = {}
        self.plugins = self._plugins(functions)
        self.monitors = self._plugins(monitors)
        self.accuracy_key = self._accuracy_key(accuracy_from)
        self.timeout_s = timeout_s
        self.isolation = isolation
        self._pool: ProcessPoolExecutor | None = None
        self.log_file = log_file  # the worker process's stdout/stderr (None: inherited)
        self.memory_limit_gb = memory_limit_gb  # the worker's address-space cap (None: none)
        self.sandbox = sandbox  # writes only beneath a private scratch folder (rewards/sandbox.py)

    def _plugins(self, specs: list[RewardSpec] | tuple[RewardSpec, ...]) -> list[_Plugin]:
        out: list[_Plugin] = []
        for f in specs:
            self._fns[f.name] = resolve_reward(f.name)  # fail fast here, in the caller, with a clear message
            key = reward_key(f.name)
            taken = {p.key for p in out}
            k, i = key, 2
            while k in taken:
                k, i = f"{key}#{i}", i + 1
            out.append(_Plugin(k, f.name, float(f.weight), dict(f.kwargs or {})))
        return out

    def _accuracy_key(self, accuracy_from: str | None) -> str:
        if accuracy_from is None:
            return self.plugins[0].key
        for p in self.plugins:
            if accuracy_from in (p.key, p.spec):
                return p.key
        raise ValueError(
            f"rewards.accuracy_from: {accuracy_from!r} is none of the reward functions {[p.key for p in self.plugins]}"
        )

    # -- running plugins

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.log_file, self.memory_limit_gb, self.sandbox),
            )
            try:
                with _worker_env():  # the worker process is spawned by this first submit
                    warm = self._pool.submit(_warmup, [p.spec for p in self.plugins + self.monitors])
                warm.result(timeout=_WARMUP_TIMEOUT_S)
            except FutureTimeout:
                self._kill_pool()
                raise TimeoutError(f"reward worker did not start within {_WARMUP_TIMEOUT_S:g} s") from None
            except Exception as e:
                # e.g. a plugin import error: reported again, per plugin, by the real calls
                log.warning("reward worker warm-up failed: %s: %s", type(e).__name__, e)
        assert self._pool is not None
        return self._pool

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # ProcessPoolExecutor cannot cancel a running call: kill its worker so a hung plugin stops.
        for proc in list(getattr(pool, "_processes", {}).values()):
            if proc.is_alive():
                proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def _run(
        self, plugin: _Plugin, prompts: list[str], completions: list[str], kwargs: dict[str, Any]
    ) -> Any:
        """The plugin's raw output; raises on error or timeout."""
        if self.isolation == "inline":
            return call_reward(self._fns[plugin.spec], prompts, completions, kwargs)
        pool = self._get_pool()
        try:
            future = pool.submit(_call, plugin.spec, prompts, completions, kwargs)
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            self._kill_pool()
            raise TimeoutError(f"no result after {self.timeout_s:g} s; worker process killed") from None
        except BrokenProcessPool as e:
            self._kill_pool()
            raise RuntimeError(f"reward worker process died: {e}") from None

    # -- the batch

    @staticmethod
    def _columns(samples: list[Sample]) -> dict[str, list[Any]]:
        keys: dict[str, None] = {}
        for s in samples:
            keys.update(dict.fromkeys(s.prompt.columns))
        cols = {k: [s.prompt.columns.get(k) for s in samples] for k in keys if k not in _RESERVED}
        cols["answer"] = [
            s.prompt.answer for s in samples
        ]  # the reference answer wins over a column named so
        cols["completion_ids"] = [list(s.response_ids) for s in samples]  # token lengths (overlong), as TRL
        return cols

    def score(self, samples: list[Sample]) -> dict[str, float]:
        """Set ``reward``, ``reward_details`` and ``correct`` on each sample; return batch metrics."""
        t0 = time.perf_counter()
        prompts = [s.prompt.text for s in samples]
        completions = [s.response_text for s in samples]
        columns = self._columns(samples)
        failed: set[int] = set()
        values: dict[str, list[float | None]] = {}
        for p in self.plugins:
            values[p.key], bad = self._values(p, prompts, completions, columns, "reward plugin")
            failed.update(bad)
        metrics = self._apply(samples, values)
        metrics |= self._monitor(samples, prompts, completions, columns)
        metrics["reward_failures"] = float(len(failed))
        metrics["reward_time_s"] = time.perf_counter() - t0
        return metrics

    def _values(
        self, p: _Plugin, prompts: list[str], completions: list[str], columns: dict[str, list[Any]], kind: str
    ) -> tuple[list[float | None], list[int]]:
        """One plugin's checked values and the indices it failed on (a failure is logged, never raised)."""
        n = len(completions)
        try:
            out = self._run(p, prompts, completions, {**columns, **p.kwargs}) if n else []
            vals, bad, problem = _check(out, n)
        except Exception as e:
            vals, bad, problem = [None] * n, list(range(n)), f"{type(e).__name__}: {e}"
        if problem:
            log.warning("%s %r failed on %d of %d samples: %s", kind, p.spec, len(bad), n, problem)
        return vals, bad

    def _apply(self, samples: list[Sample], values: dict[str, list[float | None]]) -> dict[str, float]:
        for i, s in enumerate(samples):
            row = {p.key: values[p.key][i] for p in self.plugins}
            s.reward_details.update(row)
            total: float | None = 0.0
            for p in self.plugins:
                v = row[p.key]
                total = None if v is None or total is None else total + p.weight * v
            s.reward = total
            acc = row[self.accuracy_key]
            s.correct = None if acc is None else acc >= 0.5
        rewards = [s.reward for s in samples if s.reward is not None]
        verdicts = [s.correct for s in samples if s.correct is not None]
        metrics = {
            "reward_mean": sum(rewards) / len(rewards) if rewards else float("nan"),
            "accuracy": sum(verdicts) / len(verdicts) if verdicts else float("nan"),
        }
        for p in self.plugins:
            got = [v for v in values[p.key] if v is not None]
            metrics[f"reward/{p.key}_mean"] = sum(got) / len(got) if got else float("nan")
        return metrics

    def _monitor(
        self, samples: list[Sample], prompts: list[str], completions: list[str], columns: dict[str, list[Any]]
    ) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for p in self.monitors:
            vals, _ = self._values(p, prompts, completions, columns, "monitor")
            for s, v in zip(samples, vals):
                s.reward_details[f"monitor/{p.key}"] = v
            got = [v for v in vals if v is not None]
            metrics[f"monitor/{p.key}"] = sum(got) / len(got) if got else float("nan")
        return metrics

    def close(self) -> None:
        """Stop the worker process (if any). The scorer can still be used: it restarts on demand."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> RewardScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
