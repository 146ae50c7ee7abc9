"""Toy reward plugins for the loop tests (loaded by file path, like a user's plugin)."""

from __future__ import annotations


def sevens(prompts: list[str], completions: list[str], **columns) -> list[float]:
    """Fraction of the first 8 response characters that are '7': dense, learnable by a tiny random model."""
    return [sum(ch == "7" for ch in c[:8]) / 8.0 for c in completions]


def flaky(prompts: list[str], completions: list[str], **columns) -> list[float | None]:
    """Returns a non-number for every other sample: those samples must get no reward signal."""
    return ["oops" if i % 2 else 1.0 for i in range(len(completions))]  # type: ignore[misc]


def broken(prompts: list[str], completions: list[str], **columns) -> list[float]:
    raise RuntimeError("this plugin always fails")
