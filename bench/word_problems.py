"""Generate the multi-step arithmetic word problems of recipes/data/word_problems_{train,test}.jsonl.

``python -m bench.word_problems`` rewrites both files (deterministic: ``random.Random(11)`` for train,
``random.Random(12)`` for test; test questions never appear in train). Every problem takes two operations on
small numbers (a + b − c, a + b + c with a, b, c in 2–20; a − b − c with a in 20–40; a · b − c with one-digit a, b),
phrased as a short story,
so a 135M model that adds two numbers in one go still has to chain two steps. Fields: ``question``,
``answer`` (an integer, always >= 0), ``solution`` (the two steps, one per line: a reference for
hint-based strategies and for reading, never shown to Cog-Rethinker).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "recipes" / "data"
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emma", "Finn", "Gia", "Hugo", "Iris", "Jon", "Kai", "Lena"]
ITEMS = ["apples", "stickers", "marbles", "books", "cards", "shells", "pens", "cookies"]


def _problem(rng: random.Random, lo: int = 2, hi: int = 20) -> dict[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        c = rng.randint(1, a + b - 1)
        q = f"{name} has {a} {item}. {name} buys {b} more and then gives {c} to a friend. How many {item} does {name} have now?"
        steps, ans = [f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"], a + b - c
    elif kind == 1:
        a = rng.randint(hi, 2 * hi)
        b = rng.randint(lo, a // 2)
        c = rng.randint(1, a - b)
        q = f"A shop had {a} {item}. It sold {b} in the morning and {c} in the afternoon. How many {item} are left?"
        steps, ans = [f"{a} - {b} = {a - b}", f"{a - b} - {c} = {a - b - c}"], a - b - c
    elif kind == 2:
        a, b, c = rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi)
        q = f"{name} read {a} pages on Monday, {b} pages on Tuesday and {c} pages on Wednesday. How many pages did {name} read in total?"
        steps, ans = [f"{a} + {b} = {a + b}", f"{a + b} + {c} = {a + b + c}"], a + b + c
    elif kind == 3:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        c = rng.randint(1, a + b - 1)
        q = f"There are {a} {item} in a box. {name} puts in {b} more, then takes out {c}. How many {item} are in the box now?"
        steps, ans = [f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"], a + b - c
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        c = rng.randint(1, a * b)
        q = f"{name} saves {a} dollars every week for {b} weeks and then spends {c} dollars. How many dollars does {name} have left?"
        steps, ans = [f"{a} * {b} = {a * b}", f"{a * b} - {c} = {a * b - c}"], a * b - c
    return {"question": q, "answer": str(ans), "solution": "\n".join(steps) + f"\nThe answer is {ans}."}


def generate(n: int, seed: int, exclude: set[str] = frozenset()) -> list[dict[str, str]]:
    rng, out, seen = random.Random(seed), [], set(exclude)
    while len(out) < n:
        p = _problem(rng)
        if p["question"] not in seen:
            seen.add(p["question"])
            out.append(p)
    return out


def main() -> None:
    train = generate(1000, 11)
    test = generate(200, 12, {p["question"] for p in train})
    for name, rows in (("train", train), ("test", test)):
        path = OUT / f"word_problems_{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{path}: {len(rows)} rows")


if __name__ == "__main__":
    main()
