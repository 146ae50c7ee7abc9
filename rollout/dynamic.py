"""One step's rollouts: ask the curriculum, let the strategy generate and score, and, with DAPO's dynamic
sampling, keep only groups that carry a learning signal and refill until the batch is full.

A group whose rewards are all equal has zero advantage under every group-baseline estimator, so it adds
nothing but normaliser weight (DAPO §3.2). With ``algorithm.dynamic_sampling.enabled`` the step keeps the
groups that pass the strategy's test (``strategy.keeps_group(samples, metric)`` when it defines one, else
:func:`varies`), asks the curriculum for another batch of prompts while fewer than ``target_groups`` were
kept, at most ``max_rounds`` generation rounds in all, and trims the kept groups to the target in
generation order, as verl does (the trimmed surplus is counted, never trained on). Every generated sample
is shown to the curriculum (its Beta counts or buffers learn from dropped groups too).

Metrics: ``dynamic/rounds``, ``dynamic/prompts`` (requested in all rounds), ``dynamic/groups_kept``,
``dynamic/groups_dropped`` (no signal), ``dynamic/groups_surplus`` (trimmed), ``dynamic/short`` (1 when the
rounds ran out before the target), and ``num_samples`` counts every generated sample (the budget), while
``train_samples`` counts what the learner gets. Reward and accuracy means are over all generated samples,
so a run with and without dynamic sampling report the same quantity.

Departures from DAPO/verl: when the rounds run out short, verl raises an error; here the step trains on what
was kept (``dynamic/short`` = 1), and with nothing kept on one zero-advantage group so the loop goes on.
Each refill calls ``curriculum.next_batch(step)`` again: a stateful curriculum counts it as a further
draw (CurES's ``steps_per_subset`` counts draws, not optimizer steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rollout.strategies.common import merge_scores, rollout_metrics
from rollout.types import RolloutBatch, Sample

if TYPE_CHECKING:
    from curricula.base import Curriculum
    from launch.config import DynamicSamplingConfig
    from rollout.strategies.base import Generator, RolloutStrategy, Scorer


def varies(group: list[Sample], metric: str = "reward") -> bool:
    """True when ``metric`` (reward or accuracy) is not the same for every scored sample of the group."""
    if metric == "accuracy":
        values = {s.correct for s in group if s.correct is not None}
    else:
        values = {s.reward for s in group if s.reward is not None}
    return len(values) > 1


def collect_rollouts(
    curriculum: Curriculum,
    strategy: RolloutStrategy,
    generator: Generator | None,
    scorer: Scorer,
    step: int,
    dynamic: DynamicSamplingConfig,
) -> tuple[RolloutBatch, dict[str, float]]:
    """The step's scored :class:`RolloutBatch` and its metrics (strategy, curriculum, dynamic sampling)."""
    requests = curriculum.next_batch(step)
    batch = strategy.rollout(requests, generator, scorer)
    observed = curriculum.observe(batch)
    if not dynamic.enabled:
        return batch, {**batch.metrics, **observed}

    # The strategy may define which groups carry signal (Cog-Rethinker keeps groups that feed its SFT term).
    custom: Any = getattr(strategy, "keeps_group", None)
    keeps: Callable[[list[Sample]], bool] = (
        (lambda g: custom(g, dynamic.metric)) if custom else (lambda g: varies(g, dynamic.metric))
    )
    target = dynamic.target_groups or len(requests)
    parts = [(batch.metrics, len(batch.samples))]
    generated = list(batch.samples)
    kept: list[list[Sample]] = []
    dropped = 0
    prompts = len(requests)
    rounds = 0
    while True:
        for group in batch.groups().values():
            if keeps(group):
                kept.append(group)
            else:
                dropped += 1
        rounds += 1
        if len(kept) >= target or rounds >= dynamic.max_rounds:
            break
        requests = curriculum.next_batch(step)
        prompts += len(requests)
        batch = strategy.rollout(requests, generator, scorer)
        for s in batch.samples:  # request indices restart each round: keep group ids unique in the step
            s.group_id = f"r{rounds}/{s.group_id}"
        observed |= curriculum.observe(batch)
        parts.append((batch.metrics, len(batch.samples)))
        generated += batch.samples

    surplus = max(len(kept) - target, 0)
    kept = kept[:target]
    samples = [s for g in kept for s in g]
    if not samples:  # nothing informative: one zero-advantage group keeps the loop (and its metrics) going
        first = generated[0].group_id
        samples = [s for s in generated if s.group_id == first]
    # Means (the strategy's too) are sample-weighted over all rounds; times and failure counts add up.
    metrics = merge_scores(parts, generated) | rollout_metrics(generated)
    metrics |= {
        "train_samples": float(len(samples)),
        "dynamic/rounds": float(rounds),
        "dynamic/prompts": float(prompts),
        "dynamic/groups_kept": float(len(kept)),
        "dynamic/groups_dropped": float(dropped),
        "dynamic/groups_surplus": float(surplus),
        "dynamic/short": float(len(kept) < target),
    }
    return RolloutBatch(samples, metrics), {**metrics, **observed}
