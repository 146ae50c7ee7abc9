"""Held-out evaluation: greedy decoding of the eval prompts, judged by ``eval.answer_check`` (strict math).

Offline runs (no rollout workers) evaluate on the learners instead: the strategy's loss terms on held-out
rows without an update — for preference data the held-out reward accuracy (chosen log-ratio above the
rejected one, ``eval/pref/accuracy``) and mean margin (``eval/pref/margin``); for SFT the NLL.

The training rewards do not judge held-out answers: a format bonus or a lenient check would inflate the
curve. Each evaluation also writes what the model wrote, so a rising number can be read
(``output_dir/eval/step_NNNNNN.jsonl``: prompt, reference, completion, verdict, monitor flags).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from rollout.strategies.common import generate_round


def evaluate(run, max_prompts: int, step: int) -> dict[str, float]:
    """Metrics ``eval/accuracy``, ``eval/reward_mean`` and ``eval/monitor/*`` after ``step`` training steps."""
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
    if run.cfg.eval.save_samples:
        out = Path(run.cfg.output_dir) / "eval"
        out.mkdir(parents=True, exist_ok=True)
        with (out / f"step_{step:06d}.jsonl").open("w") as f:
            for s in samples:
                row = {
                    "uid": s.prompt.uid,
                    "prompt": s.prompt.text,
                    "answer": s.prompt.answer,
                    "completion": s.response_text,
                    "correct": s.correct,
                    **{k: v for k, v in s.reward_details.items() if k.startswith("monitor/")},
                }
                f.write(json.dumps(row) + "\n")
    keep = ("accuracy", "reward_mean")
    return {f"eval/{k}": v for k, v in m.items() if k in keep or k.startswith("monitor/")}
