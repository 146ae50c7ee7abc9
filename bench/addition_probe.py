"""Ask a model fresh "What is a + b?" problems greedily and count what it actually writes.

    python bench/addition_probe.py --model builtin:smollm2-135m-instruct          # before training
    python bench/addition_probe.py --model runs/grpo_default/checkpoints/latest   # after

The problems are drawn with their own seed and exclude the default recipe's train and eval sets. Per answer
it reports: the strict check (a number equal to a + b: what the default recipe now rewards and evaluates),
the lenient math-verify check (the old reward, which accepts "a + b" itself) and the copied-expression guard.
Loads the model with transformers (float32, greedy), the prompt exactly as the recipe renders it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fresh_problems(n: int, seed: int) -> list[tuple[int, int]]:
    from curricula.data import load_prompts
    from launch.config import load_recipe

    cfg = load_recipe(ROOT / "recipes" / "grpo_default.yaml")
    used = {
        (p.columns["a"], p.columns["b"]) for split in ("train", "eval") for p in load_prompts(cfg.data, split)
    }
    rng, out = random.Random(seed), []
    while len(out) < n:
        ab = (rng.randint(10, 99), rng.randint(10, 99))
        if ab not in used and ab not in out:
            out.append(ab)
    return out


def resolve(model: str) -> str:
    """The HF folder of a model, checkpoint, run or builtin:NAME (the same resolution as ``launch.eval``)."""
    from launch.eval import resolve_target

    return resolve_target(model).model_path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF folder, checkpoint folder or builtin:NAME")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--template", default="{text} Give the final answer as a number.")
    ap.add_argument("--show", type=int, default=6, help="print this many answers")
    ap.add_argument("--out", help="write the answers and counts as JSON")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewards.guards import copied_expression
    from rewards.math import math_reward
    from rollout.templates import PromptRenderer
    from rollout.types import Prompt

    torch.manual_seed(0)
    path = resolve(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    renderer = PromptRenderer(tok, None, args.template, True)
    probs = fresh_problems(args.n, args.seed)
    questions = [f"What is {a} + {b}?" for a, b in probs]
    answers = [str(a + b) for a, b in probs]
    completions = []
    for q in questions:
        ids = torch.tensor([renderer.render(Prompt("probe", q))])
        with torch.no_grad():
            out = model.generate(
                ids, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tok.eos_token_id
            )
        completions.append(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    strict = math_reward(questions, completions, answer=answers)
    lenient = math_reward(questions, completions, answer=answers, strict=False)
    copied = copied_expression(questions, completions)
    counts = {
        "model": path,
        "n": len(probs),
        "strict_correct": int(sum(strict)),
        "lenient_correct": int(sum(lenient)),
        "copied_expression": int(sum(copied)),
    }
    for q, c, s, cp in list(zip(questions, completions, strict, copied))[: args.show]:
        print(f"  {q!r} -> {c.strip()[:70]!r}  strict={s:.0f} copied={cp:.0f}")
    print(
        f"{path}: correct number {counts['strict_correct']}/{len(probs)}, lenient check "
        f"{counts['lenient_correct']}/{len(probs)}, copied the question's expression {counts['copied_expression']}/{len(probs)}"
    )
    if args.out:
        rows = [
            {"question": q, "answer": a, "completion": c, "strict": s, "lenient": le, "copied": cp}
            for q, a, c, s, le, cp in zip(questions, answers, completions, strict, lenient, copied)
        ]
        Path(args.out).write_text(json.dumps({**counts, "rows": rows}, indent=1))
    return counts


if __name__ == "__main__":
    main()
