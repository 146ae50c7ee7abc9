"""Scheduling of the async rollout pipeline (launch/pipeline.py), without Ray: who may produce when, the
weight version each batch records, errors handed to the driver, and the staleness guard."""

from __future__ import annotations

import threading
import time

import pytest

from launch.pipeline import AsyncRollouts, InlineRollouts, Produced


class Recorder:
    """A produce() that logs (event, step) in order; the driver logs its own events into the same list."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.events: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.delay = delay
        self.fail_at = fail_at

    def log(self, what: str, step: int) -> None:
        with self.lock:
            self.events.append((what, step))

    def __call__(self, step: int) -> Produced:
        self.log("produce_start", step)
        if step == self.fail_at:
            raise ValueError(f"reward plugin broke at step {step}")
        time.sleep(self.delay)
        self.log("produce_end", step)
        return Produced(step, f"batch{step}", {"step": float(step)}, 0.0, self.delay, {"cursor": step + 1})


def drive(pipe, rec: Recorder, start: int, end: int, train_s: float = 0.0) -> list[Produced]:
    """The driver's loop, as launch/train.py runs it: get → train → sync (under the engine lock) → done."""
    out = []
    for step in range(start, end):
        item = pipe.get(step)
        rec.log("train_start", step)
        time.sleep(train_s)
        rec.log("train_end", step)
        with pipe.engine_lock:
            rec.log("sync", step)
            pipe.weights_synced(step + 1)
        pipe.step_done(step)
        out.append(item)
    pipe.close()
    return out


def index(events, what, step):
    return events.index((what, step))


def test_staleness_zero_is_the_synchronous_order():
    rec = Recorder(delay=0.01)
    items = drive(AsyncRollouts(rec, 0, 4, max_staleness=0), rec, 0, 4)
    inline_rec = Recorder(delay=0.01)
    inline = drive(InlineRollouts(inline_rec, 0), inline_rec, 0, 4)
    assert rec.events == inline_rec.events  # produce s, train s, sync s, produce s+1, ...
    assert [i.version for i in items] == [i.version for i in inline] == [0, 1, 2, 3]
    assert all(i.extra["async/staleness"] == 0.0 for i in items)
    assert [i.train_batch for i in items] == ["batch0", "batch1", "batch2", "batch3"]


def test_one_step_off_overlaps_generation_with_training():
    rec = Recorder(delay=0.05)
    items = drive(AsyncRollouts(rec, 0, 5, max_staleness=1), rec, 0, 5, train_s=0.1)
    ev = rec.events
    for s in range(1, 4):
        # batch s+1 starts after step s-1 finished and before step s's update ends: it overlaps training
        assert index(ev, "sync", s - 1) < index(ev, "produce_start", s + 1) < index(ev, "train_end", s)
        # and the engine is never shared: the sync of step s waits for that batch
        assert index(ev, "produce_end", s + 1) < index(ev, "sync", s)
    assert [i.version for i in items] == [0, 0, 1, 2, 3]
    assert [i.extra["async/staleness"] for i in items] == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert [i.state["cursor"] for i in items] == [1, 2, 3, 4, 5]  # each batch's own state snapshot


def test_k_step_off_never_exceeds_the_bound():
    rec = Recorder(delay=0.01)
    items = drive(AsyncRollouts(rec, 3, 10, max_staleness=2), rec, 3, 10, train_s=0.05)
    staleness = [i.extra["async/staleness"] for i in items]
    assert max(staleness) == 2.0 and all(0 <= x <= 2 for x in staleness)
    for s in range(6, 10):  # batch s waits for step s - 3 to finish
        assert index(rec.events, "sync", s - 3) < index(rec.events, "produce_start", s)


def test_producer_error_reaches_the_driver_at_its_step():
    rec = Recorder(fail_at=2)
    pipe = AsyncRollouts(rec, 0, 5, max_staleness=1)
    with pytest.raises(ValueError, match="step 2"):
        drive(pipe, rec, 0, 5)
    assert ("train_end", 1) in rec.events and ("train_start", 2) not in rec.events
    pipe.close()


@pytest.mark.parametrize("policy", ["regenerate", "drop"])
def test_stale_batch_guard(policy):
    """A batch older than the bound (here: the engine never receives weights) is regenerated or dropped."""
    rec = Recorder()
    pipe = AsyncRollouts(rec, 0, 3, max_staleness=1, stale=policy)
    items = []
    for step in range(3):
        items.append(pipe.get(step))
        pipe.step_done(step)  # no weights_synced: the engine's version stays 0
    pipe.close()
    assert [i.extra["async/staleness"] for i in items] == [0.0, 1.0, 2.0]
    if policy == "drop":
        assert items[2].train_batch is None and items[2].extra["async/stale_dropped"] == 1.0
    else:
        assert items[2].extra["async/stale_regenerated"] == 1.0 and items[2].train_batch == "batch2"
        assert rec.events.count(("produce_start", 2)) == 2
    assert "async/stale_dropped" not in items[1].extra and "async/stale_regenerated" not in items[1].extra
