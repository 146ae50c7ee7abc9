"""Pure-logic test doubles for strategy bookkeeping (no actors): one token per character, a generator whose
answers follow a script, and an exact-match scorer. Real-engine behaviour is covered by the loop tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from rollout.types import Completion, Prompt, SamplingParams

PAD, EOS = 0, 1


@dataclass
class CharTokenizer:
    pad_token_id: int = PAD
    eos_token_id: int = EOS

    def decode(self, ids, skip_special_tokens: bool = False):
        return "".join(chr(i) for i in ids if i > EOS)


class CharRenderer:
    """Prompt → "Q: <text>\\nA: " as code points (one token per character)."""

    tokenizer = CharTokenizer()
    template = "{text}"

    def render(self, prompt: Prompt) -> list[int]:
        return [ord(c) for c in f"Q: {prompt.text}\nA: "]

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


class ScriptedGenerator:
    """``script(prompt_text, rng) -> answer text`` decides each sample; every call is recorded."""

    def __init__(self, script: Callable[[str, random.Random], str], seed: int = 0) -> None:
        self.script = script
        self.rng = random.Random(seed)
        self.calls: list[tuple[str, int]] = []  # (prompt text, n)

    def generate(self, requests):
        out = []
        for r in requests:
            text = "".join(chr(i) for i in r.prompt_ids)
            self.calls.append((text, r.n))
            comps = []
            for _ in range(r.n):
                ans = self.script(text, self.rng)
                ids = [ord(c) for c in ans] + [EOS]
                comps.append(Completion(ids, [-0.5] * len(ids), "stop", ans))
            out.append(comps)
        return out


class ExactScorer:
    """Right (reward 1) when the response's last line equals the reference answer."""

    def score(self, samples):
        for s in samples:
            lines = s.response_text.strip().splitlines() or [""]
            ok = lines[-1].strip() == s.prompt.answer
            s.reward, s.correct = float(ok), ok
            s.reward_details = {"exact": float(ok)}
        n = max(len(samples), 1)
        return {
            "reward_mean": sum(s.reward for s in samples) / n,
            "accuracy": sum(s.correct for s in samples) / n,
            "reward_time_s": 0.01,
        }


def strategy_context(max_model_len: int = 1024, max_new_tokens: int = 32, **algorithm):
    """A StrategyContext over the char renderer; ``algorithm`` sets AlgorithmConfig fields."""
    from launch.config import AlgorithmConfig
    from rollout.strategies.base import StrategyContext

    return StrategyContext(
        renderer=CharRenderer(),
        tokenizer=CharTokenizer(),
        algorithm=AlgorithmConfig(**algorithm),
        sampling=SamplingParams(max_new_tokens=max_new_tokens),
        seed=0,
        pad_id=PAD,
        max_model_len=max_model_len,
    )
