"""Held-out evaluation: greedy decoding of the eval prompts, judged by ``eval.answer_check`` (strict math).

Offline runs (no rollout workers) evaluate on the learners instead: the strategy's loss terms on held-out
rows without an update — for preference data the held-out reward accuracy (chosen log-ratio above the
rejected one, ``eval/pref/accuracy``) and mean margin (``eval/pref/margin``); for SFT the NLL.

The training rewards do not judge held-out answers: a format bonus or a lenient check would inflate the
curve. Each evaluation also writes what the model wrote, so a rising number can be read
(``output_dir/eval/step_NNNNNN.jsonl``: prompt, reference, completion, verdict, monitor flags).

With ``eval.k > 0`` each prompt also gets k samples at the rollout sampling settings (``rollout.temperature``),
judged the same way: ``eval/avg@<k>`` (mean sample accuracy) and ``eval/pass@<k>`` (the unbiased estimator
of launch/passk.py), averaged over prompts with a usable reference; the samples are saved beside the greedy
ones (``step_NNNNNN_sampled.jsonl``, one row per sample with its index).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from launch.passk import aggregate, count
from rollout.strategies.common import generate_round


def evaluate(run, max_prompts: int, step: int) -> dict[str, float]:
    """Metrics ``eval/accuracy``, ``eval/reward_mean``, ``eval/monitor/*`` (and ``eval/avg@k``, ``eval/pass@k``
    with ``eval.k``) after ``step`` training steps."""
    if run.eval_set is None or len(run.eval_set) == 0:
        return {}
    prompts = [run.eval_set[i] for i in range(min(max_prompts, len(run.eval_set)))]
    if run.generator is None:
        m = run.learners.evaluate(run.strategy.eval_batch(prompts), run.pad_id)
        return {f"eval/{k}": v for k, v in m.items()}
    ids = [run.renderer.render(p) for p in prompts]
    greedy = replace(run.generator.defaults, temperature=0.0)
    samples = generate_round(
        run.generator, prompts, ids, [1] * len(prompts), [p.uid for p in prompts], params=greedy
    )
    m = run.eval_scorer.score(samples)
    keep = ("accuracy", "reward_mean")
    out = {f"eval/{k}": v for k, v in m.items() if k in keep or k.startswith("monitor/")}
    _save(run, samples, f"step_{step:06d}.jsonl")
    if (k := run.cfg.eval.k) > 0:
        sampled = generate_round(
            run.generator,
            prompts,
            ids,
            [k] * len(prompts),
            [p.uid for p in prompts],
            params=run.generator.defaults,
        )
        run.eval_scorer.score(sampled)
        agg = aggregate(_counts(sampled), k)
        out |= {f"eval/avg@{k}": agg["avg@k"], f"eval/pass@{k}": agg["pass@k"]}
        _save(run, sampled, f"step_{step:06d}_sampled.jsonl", k)
    return out


def _counts(samples) -> list[tuple[int, int]]:
    """(n, c) per prompt, in prompt order; prompts without a usable reference answer are left out."""
    verdicts: dict[str, list[bool | None]] = {}
    for s in samples:
        verdicts.setdefault(s.prompt.uid, []).append(s.correct)
    return [nc for v in verdicts.values() if (nc := count(v)) is not None]


def _save(run, samples, name: str, k: int = 0) -> None:
    """One JSON row per sample; with ``k`` (k samples per prompt, in prompt order) also the sample index."""
    if not run.cfg.eval.save_samples:
        return
    out = Path(run.cfg.output_dir) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    with (out / name).open("w") as f:
        for i, s in enumerate(samples):
            row = {
                "uid": s.prompt.uid,
                "prompt": s.prompt.text,
                "answer": s.prompt.answer,
                "completion": s.response_text,
                "correct": s.correct,
                **{k: v for k, v in s.reward_details.items() if k.startswith("monitor/")},
            }
            if k:
                row["sample"] = i % k
            f.write(json.dumps(row) + "\n")
