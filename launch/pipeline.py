"""Where the driver's train batches come from: generated in line (synchronous), or k steps ahead in a thread.

The driver asks ``pipeline.get(step)`` for the step's :class:`Produced` (train batch, metrics, the curriculum
and strategy state right after producing it) and, when the step is finished (update, weight sync, eval,
checkpoint), calls ``pipeline.step_done(step)``.

- :class:`InlineRollouts` produces the batch inside ``get``: the synchronous loop.
- :class:`AsyncRollouts` (``algorithm.async_rollout``) produces batch s in a background thread as soon as
  steps ``< s - k`` are done, so with k = 1 the rollout of step s + 1 runs while the learners train step s
  (verl's one-step-off, OpenRLHF's async mode). A batch records the weight version it was generated with
  (``version``: the number of updates the engine had received); its staleness at training time is
  ``step - version`` ≤ k. The engine is never used by two callers at once: the producer holds
  ``engine_lock`` for a whole batch, and the driver takes it for the weight sync and for evaluation.
  With k = 0 the producer waits for each step to finish before generating the next batch, so the run is the
  synchronous loop step for step (a test checks equal metrics and weights).

State stays consistent because only the producer thread touches the curriculum and the strategy (sampling,
observing results, ``make_train_batch``): CurES's Beta counts and SEELE's rates see the batches in generation
order, up to k batches before they are trained on. A checkpoint saved after step s stores the state snapshot
taken right after batch s was produced, so a resume regenerates batch s + 1 onward from the state that batch
s left, with the checkpoint's weights (the first batch after a resume is fresher than in the uninterrupted
run: staleness 0 instead of k). Learner calls a curriculum makes from the producer thread (CurES's gradient
statistics) reach every rank in the same order as the driver's training calls (trainer/group.py submits
each fan-out under one lock), so they cannot interleave collectives; they run between updates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Produced:
    """One step's generated and scored batch, ready for the learners."""

    step: int
    train_batch: Any  # trainer.batch.TrainBatch
    metrics: dict[str, float]
    reward_s: float  # scoring time inside the rollout (reward plugins)
    produce_s: float  # wall time of generation + scoring + make_train_batch
    state: dict[str, Any]  # curriculum/strategy state right after producing this batch (for checkpoints)
    version: int = 0  # weight version the engine had while generating (updates received)
    extra: dict[str, float] = field(default_factory=dict)


class InlineRollouts:
    """The synchronous loop: the batch of step s is produced when the driver asks for it."""

    def __init__(self, produce: Callable[[int], Produced], start: int) -> None:
        self._produce = produce
        self.version = start
        self.engine_lock = threading.Lock()

    def get(self, step: int) -> Produced:
        item = self._produce(step)
        item.version = self.version
        return item

    def weights_synced(self, version: int) -> None:
        self.version = version

    def step_done(self, step: int) -> None:
        pass

    def close(self) -> None:
        pass


class AsyncRollouts:
    """k-step-off rollout: a thread produces batch s once steps up to s - k - 1 are done."""

    def __init__(
        self,
        produce: Callable[[int], Produced],
        start: int,
        end: int,
        max_staleness: int,
        stale: str = "regenerate",
    ) -> None:
        self._produce = produce
        self.k = max_staleness
        self.stale = stale
        self.version = start  # updates the engine has received (set by the driver's sync, under engine_lock)
        self.engine_lock = threading.Lock()
        self._cond = threading.Condition()
        self._done = start - 1  # last finished step
        self._ready: dict[int, Produced | BaseException] = {}
        self._closed = False
        self._thread = threading.Thread(
            target=self._loop, args=(start, end), name="rollout-producer", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ producer thread
    def _loop(self, start: int, end: int) -> None:
        for s in range(start, end):
            with self._cond:
                self._cond.wait_for(lambda s=s: self._closed or s - self.k <= self._done + 1)
                if self._closed:
                    return
            try:
                with self.engine_lock:
                    version = self.version
                    item: Produced | BaseException = self._produce(s)
                    item.version = version
            except BaseException as e:  # handed to the driver, which raises it at get(s)
                item = e
            with self._cond:
                self._ready[s] = item
                self._cond.notify_all()
            if isinstance(item, BaseException):
                return

    # ------------------------------------------------------------------ driver side
    def get(self, step: int) -> Produced:
        with self._cond:
            self._cond.wait_for(lambda: step in self._ready or not self._thread.is_alive())
            item = self._ready.pop(step, None)
        if item is None:
            raise RuntimeError(f"the rollout producer stopped before step {step}")
        if isinstance(item, BaseException):
            raise item
        staleness = step - item.version
        item.extra = {"async/staleness": float(staleness)}
        if staleness > self.k:  # the scheduler never makes one; a guard for what a strategy may hand over
            if self.stale == "drop":  # the step makes no update (the driver skips the learners), counted
                item.train_batch = None
                item.extra["async/stale_dropped"] = 1.0
                return item
            with self.engine_lock:  # regenerate with the current weights, in line
                fresh = self._produce(step)
                fresh.version = self.version
            fresh.extra = item.extra | {"async/stale_regenerated": 1.0}
            item = fresh
        return item

    def weights_synced(self, version: int) -> None:
        """Call under ``engine_lock`` right after the engine received the weights of ``version`` updates."""
        self.version = version

    def step_done(self, step: int) -> None:
        with self._cond:
            self._done = step
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        # a producer inside a generate call finishes it (or fails once the actors are shut down); daemon thread
        self._thread.join(timeout=1.0)
