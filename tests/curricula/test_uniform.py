"""curricula/uniform.py: epochs visit every row once, in a new shuffled order each epoch; a saved state resumes
the exact sequence (what a checkpoint restart relies on)."""

from __future__ import annotations

import copy

import pytest

from curricula.base import CurriculumContext
from curricula.uniform import EpochSampler, UniformCurriculum, UniformOptions
from rollout.types import Prompt


def _curriculum(n: int = 7, k: int = 3, shuffle: bool = True, seed: int = 0) -> UniformCurriculum:
    rows = [Prompt(f"p{i}", f"row {i}") for i in range(n)]
    ctx = CurriculumContext(dataset=rows, prompts_per_step=k, n_samples=2, seed=seed)
    return UniformCurriculum(ctx, UniformOptions(shuffle=shuffle))


def test_epochs_cover_every_row_once_and_reshuffle():
    cur = _curriculum()
    uids = [r.prompt.uid for step in range(14) for r in cur.next_batch(step)]  # 42 draws = 6 epochs of 7
    assert all(r.n_samples == 2 for r in cur.next_batch(14))
    epochs = [uids[i : i + 7] for i in range(0, 42, 7)]
    assert all(sorted(e) == [f"p{i}" for i in range(7)] for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled between epochs
    assert cur.observe(None)["epoch"] == 6.0
    plain = _curriculum(shuffle=False)
    assert [r.prompt.uid for r in plain.next_batch(0) + plain.next_batch(1)] == [f"p{i}" for i in range(6)]


def test_resume_continues_the_same_sequence():
    a = _curriculum(seed=3)
    for step in range(4):
        a.next_batch(step)
    saved = copy.deepcopy(a.state_dict())
    want = [r.prompt.uid for step in range(4, 12) for r in a.next_batch(step)]
    b = _curriculum(seed=99)  # another seed: everything must come from the state
    b.load_state_dict(saved)
    assert [r.prompt.uid for step in range(4, 12) for r in b.next_batch(step)] == want


def test_empty_pool_is_an_error():
    import numpy as np

    with pytest.raises(ValueError, match="no rows to draw from"):
        EpochSampler([], np.random.default_rng(0), True).take(1)
