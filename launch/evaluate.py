"""Held-out evaluation: greedy decoding of the eval prompts, scored by the run's rewards."""

from __future__ import annotations

from dataclasses import replace

from rollout.strategies.common import generate_round


def evaluate(run, max_prompts: int) -> dict[str, float]:
    if run.eval_set is None or len(run.eval_set) == 0:
        return {}
    prompts = [run.eval_set[i] for i in range(min(max_prompts, len(run.eval_set)))]
    ids = [run.renderer.render(p) for p in prompts]
    greedy = replace(run.generator.defaults, temperature=0.0)
    samples = generate_round(
        run.generator, prompts, ids, [1] * len(prompts), [p.uid for p in prompts], params=greedy
    )
    m = run.scorer.score(samples)
    return {f"eval/{k}": v for k, v in m.items() if k in ("accuracy", "reward_mean")}
