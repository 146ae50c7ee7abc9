"""A pool of environment slots: one episode per slot, batched calls, per-step timeouts, replacement.

Two implementations of one interface (:class:`EnvPool`):

- :class:`RayEnvPool` hosts each slot's environment in its own Ray actor. A call that raises, hangs past
  ``step_timeout_s`` or whose actor dies ends *that* episode as failed (:class:`EnvFailure` in its place);
  the actor is killed and a fresh one takes the slot, so the batch still completes and the next episode on
  that slot starts clean.
- :class:`LocalEnvPool` runs the environments in this process (evaluation scripts, tests of pure logic). It
  catches exceptions the same way; a hung call is abandoned after the timeout (its thread cannot be killed)
  and the slot gets a new environment object.

Both return results in the order of the slots asked for, so the episode runner can zip them back.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

from rollout.envs.base import Observation, StepResult, make_env


@dataclass
class EnvFailure:
    """A slot's call did not give a result: the episode ends as failed and is counted."""

    reason: str  # "timeout after 10.0 s", "error: ValueError: ...", "actor died: ..."


class EnvPool(Protocol):
    size: int

    def reset(self, slots: list[int], tasks: list[dict[str, Any]]) -> list[Observation | EnvFailure]: ...

    def step(self, slots: list[int], actions: list[str]) -> list[StepResult | EnvFailure]: ...

    def close(self) -> None: ...


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[-1] if msg else ''}"[:300]


class LocalEnvPool:
    """The env slots in this process, called one after another on a worker thread (for the timeout).

    Calls are sequential: simulators are not thread-safe (two TextWorld games reset from two threads of one
    process fail inside its parser). A call that hangs past the timeout abandons that thread (and its env)
    and the next call gets a fresh thread, so one hung env costs one timeout, not the batch.
    """

    def __init__(
        self, env: str, options: dict[str, Any] | None, size: int, step_timeout_s: float = 30.0
    ) -> None:
        self.env, self.options, self.size, self.timeout = env, dict(options or {}), int(size), step_timeout_s
        self._envs = [make_env(env, self.options) for _ in range(self.size)]
        self._exec = cf.ThreadPoolExecutor(max_workers=1)
        self.replaced = 0

    def _call(self, slots: list[int], method: str, args: list[Any]) -> list[Any]:
        out: list[Any] = []
        for s, a in zip(slots, args, strict=True):
            f = self._exec.submit(getattr(self._envs[s], method), a)
            try:
                out.append(f.result(timeout=self.timeout))
            except cf.TimeoutError:
                out.append(EnvFailure(f"timeout after {self.timeout:g} s in {method}"))
                self._exec.shutdown(wait=False)
                self._exec = cf.ThreadPoolExecutor(max_workers=1)  # the hung call keeps the old thread
                self._replace(s)
            except Exception as e:  # the environment's own failure ends the episode, not the batch
                out.append(EnvFailure(f"error in {method}: {_one_line(e)}"))
                self._replace(s)
        return out

    def _replace(self, slot: int) -> None:
        self.replaced += 1
        self._envs[slot] = make_env(self.env, self.options)  # the hung/broken one is abandoned

    def reset(self, slots: list[int], tasks: list[dict[str, Any]]) -> list[Observation | EnvFailure]:
        return self._call(slots, "reset", tasks)

    def step(self, slots: list[int], actions: list[str]) -> list[StepResult | EnvFailure]:
        return self._call(slots, "step", actions)

    def close(self) -> None:
        for e in self._envs:
            with contextlib.suppress(Exception):
                e.close()
        self._exec.shutdown(wait=False, cancel_futures=True)


class _EnvHost:
    """The body of one env actor (wrapped with ray.remote lazily so importing this module needs no Ray)."""

    def __init__(self, env: str, options: dict[str, Any]) -> None:
        import os

        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.env = make_env(env, options)

    def reset(self, task: dict[str, Any]) -> Observation:
        return self.env.reset(task)

    def step(self, action: str) -> StepResult:
        return self.env.step(action)

    def ping(self) -> bool:
        return True


class RayEnvPool:
    def __init__(
        self,
        env: str,
        options: dict[str, Any] | None,
        size: int,
        step_timeout_s: float = 30.0,
        num_cpus: float = 0.1,
        start_timeout_s: float = 300.0,
    ) -> None:
        import ray

        self._ray = ray
        self.env, self.options, self.size = env, dict(options or {}), int(size)
        self.timeout, self.num_cpus = step_timeout_s, num_cpus
        # Environments mostly wait on their own simulator; a small CPU reservation lets a pool of them sit
        # beside the rollout and learner actors on a 2-core machine.
        self._cls = ray.remote(num_cpus=num_cpus, max_restarts=0)(_EnvHost)
        self.start_timeout = start_timeout_s
        self._actors = [self._spawn() for _ in range(self.size)]
        self._starting: dict[int, Any] = {}  # slot -> ping of a replacement actor not yet known to be up
        refs = [a.ping.remote() for a in self._actors]
        ready, pending = ray.wait(refs, num_returns=self.size, timeout=start_timeout_s)
        if pending:
            raise TimeoutError(
                f"env pool: {len(pending)} of {self.size} {env!r} actors not up after {start_timeout_s:g} s"
            )
        ray.get(ready, timeout=start_timeout_s)  # an env that cannot be built fails here, with its message
        self.replaced = 0

    def _spawn(self) -> Any:
        return self._cls.remote(self.env, self.options)

    def _replace(self, slot: int) -> None:
        self.replaced += 1
        with contextlib.suppress(Exception):
            self._ray.kill(self._actors[slot], no_restart=True)
        self._actors[slot] = self._spawn()
        self._starting[slot] = self._actors[slot].ping.remote()

    def _await_started(self, slots: list[int]) -> None:
        """Replacement actors get the start-up timeout, not the step timeout, for their first call."""
        refs = [self._starting.pop(s) for s in slots if s in self._starting]
        if refs:
            self._ray.wait(refs, num_returns=len(refs), timeout=self.start_timeout)

    def _call(self, slots: list[int], method: str, args: list[Any]) -> list[Any]:
        ray = self._ray
        self._await_started(slots)
        refs = [getattr(self._actors[s], method).remote(a) for s, a in zip(slots, args, strict=True)]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.timeout)
        done = set(ready)
        out: list[Any] = []
        for s, ref in zip(slots, refs, strict=True):
            if ref not in done:
                out.append(EnvFailure(f"timeout after {self.timeout:g} s in {method}"))
                self._replace(s)
                continue
            try:
                out.append(ray.get(ref, timeout=0))  # settled: ready from ray.wait above
            except ray.exceptions.RayActorError as e:
                out.append(EnvFailure(f"actor died in {method}: {_one_line(e)}"))
                self._replace(s)
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if getattr(e, "cause", None) is not None else e
                out.append(EnvFailure(f"error in {method}: {_one_line(cause)}"))
                self._replace(s)
        return out

    def reset(self, slots: list[int], tasks: list[dict[str, Any]]) -> list[Observation | EnvFailure]:
        return self._call(slots, "reset", tasks)

    def step(self, slots: list[int], actions: list[str]) -> list[StepResult | EnvFailure]:
        return self._call(slots, "step", actions)

    def close(self) -> None:
        for a in self._actors:
            with contextlib.suppress(Exception):
                self._ray.kill(a, no_restart=True)
        self._actors = []
