"""Typed hand-offs of the rollout stage (curriculum → strategy → generator → rewards → trainer).

Pure Python (no torch, ray or vllm) so every stage's logic is testable in milliseconds. One contract
per hand-off, instead of one growing bag of optional fields:

- :class:`Prompt`            a dataset row: the task text, its reference answer and any extra columns.
- :class:`PromptRequest`     what the curriculum asks for: a prompt and how many samples to draw for it.
- :class:`GenerationRequest` what a generator engine gets: prompt token ids and a sample count.
- :class:`Completion`        what an engine returns per sample: token ids, log-probs, finish reason.
- :class:`Sample`            a scored completion with its advantage group, as strategies and curricula see it.
- :class:`RolloutBatch`      all samples of one training step plus rollout-level metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prompt:
    uid: str  # stable id (dataset row index or a hash): keys curriculum/strategy state across epochs
    text: str  # the problem as shown to the model (before any chat template)
    answer: str | None = None  # reference final answer, passed to rewards as `answer`
    solution: str | None = None  # reference worked solution (SEELE hints), if the dataset has one
    columns: dict[str, Any] = field(default_factory=dict)  # every other dataset column, passed to rewards


@dataclass(frozen=True)
class PromptRequest:
    prompt: Prompt
    n_samples: int  # samples to draw for this prompt (may differ between prompts, e.g. CurES quotas)


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: list[int]  # [P] token ids, chat template already applied
    n: int  # number of independent samples
    params: SamplingParams | None = None  # None: the generator's defaults


@dataclass
class Completion:
    token_ids: list[int]  # [R] generated ids (EOS included when the engine stopped on it)
    logprobs: list[float]  # [R] engine log-prob of each generated token under the sampling policy
    finish_reason: str  # "stop" (EOS/stop string) or "length" (hit max_new_tokens)
    text: str = ""


@dataclass
class Sample:
    """One response, scored. ``prompt_ids`` is exactly what the engine saw (hints included)."""

    prompt: Prompt
    prompt_ids: list[int]  # [P] engine input, including any strategy-added prefix (hint)
    response_ids: list[int]  # [R]
    logprobs: list[float]  # [R] engine log-probs (behaviour policy)
    finish_reason: str
    response_text: str
    group_id: str  # samples with the same group_id share an advantage baseline
    round: int = 0  # generation round inside the step (multi-round strategies)
    reward: float | None = None  # None: no reward signal (a plugin failed): excluded from the loss
    reward_details: dict[str, float | None] = field(default_factory=dict)  # per reward plugin, unweighted
    correct: bool | None = None  # verifier outcome when a reward says so (reward_details["accuracy"] ≥ 0.5)
    meta: dict[str, Any] = field(default_factory=dict)  # strategy-specific (hint_len, template, ...)
    # [R] 1 on response tokens that are the policy's own targets; None: every response token is. Multi-turn
    # episodes (rollout/multiturn.py) interleave environment observations inside the response: 0 there.
    target_mask: list[int] | None = None


@dataclass
class RolloutBatch:
    samples: list[Sample]
    metrics: dict[str, float] = field(default_factory=dict)  # strategy/rollout metrics, logged as-is

    def groups(self) -> dict[str, list[Sample]]:
        out: dict[str, list[Sample]] = {}
        for s in self.samples:
            out.setdefault(s.group_id, []).append(s)
        return out

    def by_prompt(self) -> dict[str, list[Sample]]:
        out: dict[str, list[Sample]] = {}
        for s in self.samples:
            out.setdefault(s.prompt.uid, []).append(s)
        return out
