"""Cog-Rethinker: rescue problems the policy gets all wrong with decomposition and reflection rollouts, and
teach the rescued answers back on the direct prompt (METHODS.md §2).

Per step and problem:

1. **Direct** rollout (stage 0) with the recipe's prompt, ``n_samples`` responses, one advantage group.
2. Problems whose direct group is all wrong get a **decomposition** rollout (stage 1): the prompt
   (``decompose_template``) asks for sub-problems solved in order and carries up to ``num_demos``
   demonstrations retrieved by BM25 (rollout/retrieval.py) from a buffer of past successful
   decompositions; every correct decomposition enters the buffer. Own advantage group.
3. Problems still all wrong get a **reflection** rollout (stage 2): the prompt (``reflect_template``) shows
   up to ``reflect_attempts`` earlier wrong answers and asks for a revision. Own advantage group.
4. The verifier is the recipe's reward (``correct`` comes from ``rewards.accuracy_from``).
5. Loss: the policy gradient (DAPO when the recipe sets clip-higher, token-level normalisation and dynamic
   sampling) on every rollout of every stage, plus ``sft_coef`` · NLL of the correct stage-1/2 responses
   re-attached to the *direct* prompt: row = render(direct prompt) ⊕ the response's token ids, target =
   the response tokens only (:func:`sft_rows`).

The buffer (:class:`DemoBuffer`) is bounded (oldest out first), holds one decomposition per problem text,
can be seeded from a JSONL file (``problem``, ``decomposition`` per line) and is saved in checkpoints.

Metrics: ``cog/zero_acc_frac`` (problems all wrong on the direct prompt), ``cog/rescued_decompose`` and
``cog/rescued_reflect`` (shares of those problems that a stage solved at least once), ``cog/acc_<stage>``,
``cog/buffer_size``, ``cog/retrieval_hit_rate`` (decomposition prompts that got ≥ 1 demonstration),
``cog/sft_rows`` and ``cog/sft_token_frac`` (SFT tokens / all trained tokens), ``cog/skipped_too_long``
(stage prompts that could not fit ``rollout.max_model_len`` − ``max_new_tokens`` even with no demonstration
or a single shown attempt: skipped, not truncated).

Departures from the paper (no public code; METHODS.md marks review-sourced details):
- Templates are recipe strings; the defaults are ours. ``{question}`` is the direct user message (recipe
  template applied, so answer-format instructions carry over), ``{problem}`` the raw problem text.
- The reflection prompt shows the earlier wrong answers from both earlier stages (distinct texts, newest
  stage first, each cut to ``max_attempt_chars``); the paper shows "earlier wrong answers".
- The SFT copies reuse the response token ids verbatim (no re-tokenisation across the template change):
  both templates end where the assistant turn starts, so the boundary token is the same.
- A stage prompt that does not fit the context drops demonstrations (or shown attempts) until it does.
- Identical correct responses of one problem become one SFT row; ``sft_per_problem`` caps the rows.
- With dynamic sampling, a group is kept when its rewards vary *or* it holds a correct stage-1/2 answer
  (it feeds the SFT term even when all of its answers are right).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

import torch

from rollout.dynamic import varies
from rollout.retrieval import BM25Index
from rollout.strategies.base import Generator, Scorer, StrategyContext, pg_losses, register_strategy
from rollout.strategies.common import generate_round, merge_scores, pg_train_batch, rollout_metrics
from rollout.types import Prompt, PromptRequest, RolloutBatch, Sample
from trainer.advantages import get_advantage
from trainer.batch import LossTerm, TrainBatch, collate

STAGES = ("direct", "decompose", "reflect")

DECOMPOSE_TEMPLATE = (
    "Break the problem into smaller sub-problems and solve them one at a time, then state the final "
    "answer.\n\n{demos}Problem: {question}\nSub-problems:"
)
DEMO_TEMPLATE = "Problem: {problem}\nSub-problems:{decomposition}\n\n"
REFLECT_TEMPLATE = (
    "{question}\n\nEarlier answers to this problem, all of them wrong:\n{attempts}\n"
    "Find the mistake and solve the problem again, then state the final answer."
)
ATTEMPT_TEMPLATE = "Answer {index}: {response}\n"


@dataclass
class CogRethinkerOptions:
    sft_coef: float = 0.1  # λ: weight of the NLL on rescued answers re-attached to the direct prompt [guess]
    num_demos: int = 2  # demonstrations retrieved per decomposition prompt (0: none)
    buffer_size: int = 512  # successful decompositions kept (oldest out first)
    buffer_seed_file: str | None = None  # JSONL with problem/decomposition per line, loaded into the buffer
    decompose: bool = (
        True  # run the decomposition stage (false and reflect false: plain DAPO/GRPO + cog/ metrics)
    )
    reflect: bool = True  # run the reflection stage for problems still all wrong
    reflect_attempts: int = 2  # earlier wrong answers shown in a reflection prompt
    max_attempt_chars: int = 400  # each shown attempt is cut to this many characters
    decompose_samples: int = 0  # responses per decomposition prompt (0: the request's n_samples)
    reflect_samples: int = 0  # responses per reflection prompt (0: the request's n_samples)
    sft_per_problem: int = 0  # SFT rows per problem at most (0: every distinct correct answer)
    advantage: str | None = None  # estimator per (problem, stage) group; null: algorithm.advantage
    decompose_template: str = DECOMPOSE_TEMPLATE  # {question} {problem} {demos}
    demo_template: str = DEMO_TEMPLATE  # {problem} {decomposition}
    reflect_template: str = REFLECT_TEMPLATE  # {question} {problem} {attempts}
    attempt_template: str = ATTEMPT_TEMPLATE  # {index} {response}

    def __post_init__(self) -> None:  # runs when the recipe loads, before any actor starts
        for key, value in (("sft_coef", self.sft_coef), ("num_demos", self.num_demos)):
            if value < 0:
                raise ValueError(f"strategy.options.{key} must be >= 0")
        for key in ("reflect_attempts", "buffer_size", "max_attempt_chars"):
            if getattr(self, key) < 1:
                raise ValueError(f"strategy.options.{key} must be >= 1")
        fields = {"question": "", "problem": "", "demos": "", "attempts": "", "index": 1}
        fields |= {"response": "", "decomposition": ""}
        needs = {
            "decompose_template": ("{question}", "{problem}"),
            "reflect_template": ("{attempts}",),
            "attempt_template": ("{response}",),
            "demo_template": ("{decomposition}",),
        }
        for key, required in needs.items():
            text = getattr(self, key)
            try:
                text.format(**fields)
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"strategy.options.{key}: cannot fill {text!r}: {e!r}") from None
            if not any(r in text for r in required):
                raise ValueError(f"strategy.options.{key} must contain {' or '.join(required)}")
        if self.buffer_seed_file is not None and not Path(self.buffer_seed_file).expanduser().is_file():
            raise ValueError(f"strategy.options.buffer_seed_file: {self.buffer_seed_file!r} not found")


def _key(problem: str) -> str:
    return hashlib.sha1(" ".join(problem.split()).lower().encode()).hexdigest()[:16]


class DemoBuffer:
    """Bounded, de-duplicated store of (problem, decomposition) pairs with BM25 search over the problems."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.items: OrderedDict[str, tuple[str, str]] = OrderedDict()  # key -> (problem, decomposition)
        self._index = BM25Index()
        self._keys: list[str] = []
        self._dirty = True

    def __len__(self) -> int:
        return len(self.items)

    def add(self, problem: str, decomposition: str) -> bool:
        """Store a pair; False when this problem is already stored (the first success stays)."""
        k = _key(problem)
        if k in self.items or not decomposition.strip():
            return False
        self.items[k] = (problem, decomposition)
        while len(self.items) > self.max_size:
            self.items.popitem(last=False)
        self._dirty = True
        return True

    def search(self, problem: str, k: int) -> list[tuple[str, str]]:
        """Up to ``k`` stored pairs most similar to ``problem`` (never the problem itself), best first."""
        if k <= 0 or not self.items:
            return []
        if self._dirty:
            self._keys = list(self.items)
            self._index.reset([self.items[key][0] for key in self._keys])
            self._dirty = False
        own = _key(problem)
        hits = self._index.search(problem, k + 1)
        return [self.items[self._keys[i]] for i, _ in hits if self._keys[i] != own][:k]

    def load_jsonl(self, path: str) -> int:
        """Seed from a JSONL file (``problem``, ``decomposition`` per line); returns the number added."""
        added = 0
        with open(Path(path).expanduser(), encoding="utf-8") as f:
            for row, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    problem, decomposition = obj["problem"], obj["decomposition"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(
                        f"{path}: row {row}: needs a JSON object with 'problem' and 'decomposition' ({e!r})"
                    ) from None
                if not isinstance(problem, str) or not isinstance(decomposition, str):
                    raise ValueError(f"{path}: row {row}: 'problem' and 'decomposition' must be strings")
                added += self.add(problem, decomposition)
        return added

    def state_dict(self) -> dict[str, Any]:
        return {"max_size": self.max_size, "items": [[k, p, d] for k, (p, d) in self.items.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.items = OrderedDict((str(k), (str(p), str(d))) for k, p, d in state["items"])
        self._dirty = True


def sft_rows(samples: list[Sample], per_problem: int = 0) -> list[Sample]:
    """Correct stage-1/2 answers re-attached to the direct prompt: copies with ``prompt_ids`` = the direct
    render of their problem (``meta["direct_ids"]``), the same ``response_ids``, no reward (so no
    policy-gradient weight), one row per distinct response of a problem (at most ``per_problem`` if > 0)."""
    out: list[Sample] = []
    seen: dict[str, set[tuple[int, ...]]] = {}
    for s in samples:
        if s.meta.get("stage", 0) == 0 or not s.correct:
            continue
        done = seen.setdefault(s.prompt.uid, set())
        ids = tuple(s.response_ids)
        if ids in done or (per_problem and len(done) >= per_problem):
            continue
        done.add(ids)
        out.append(
            replace(
                s,
                prompt_ids=list(s.meta["direct_ids"]),
                response_ids=list(ids),
                logprobs=list(s.logprobs),
                group_id=f"sft/{s.group_id}",
                reward=None,
                reward_details={},
                meta={**s.meta, "sft": True},
            )
        )
    return out


class CogRethinkerStrategy:
    def __init__(self, ctx: StrategyContext, options: CogRethinkerOptions) -> None:
        self.ctx = ctx
        self.options = options
        # Stage prompts are complete user messages: render them without the recipe's direct template.
        self.plain = replace(ctx.renderer, template="{text}") if is_dataclass(ctx.renderer) else ctx.renderer
        self.buffer = DemoBuffer(options.buffer_size)
        if options.buffer_seed_file:
            self.buffer.load_jsonl(options.buffer_seed_file)

    # ------------------------------------------------------------------ prompts
    def _question(self, prompt: Prompt) -> str:
        user_text = getattr(self.ctx.renderer, "user_text", None)
        return user_text(prompt) if user_text is not None else prompt.text

    def decompose_prompt(self, prompt: Prompt, num_demos: int | None = None) -> tuple[str, int]:
        """The decomposition user message and the number of demonstrations in it."""
        k = self.options.num_demos if num_demos is None else num_demos
        demos = self.buffer.search(prompt.text, k)
        demo_text = "".join(self.options.demo_template.format(problem=p, decomposition=d) for p, d in demos)
        text = self.options.decompose_template.format(
            question=self._question(prompt), problem=prompt.text, demos=demo_text
        )
        return text, len(demos)

    def reflect_prompt(self, prompt: Prompt, wrong: list[Sample], num_attempts: int | None = None) -> str:
        """The reflection user message, showing distinct earlier wrong answers (latest stage first)."""
        k = self.options.reflect_attempts if num_attempts is None else num_attempts
        attempts: list[str] = []
        for s in sorted(wrong, key=lambda s: -s.meta.get("stage", 0)):
            if len(attempts) >= k:
                break
            text = s.response_text.strip()[: self.options.max_attempt_chars]
            if text and text not in attempts:
                attempts.append(text)
        shown = "".join(
            self.options.attempt_template.format(index=i + 1, response=t) for i, t in enumerate(attempts)
        )
        return self.options.reflect_template.format(
            question=self._question(prompt), problem=prompt.text, attempts=shown
        )

    def stage_ids(self, stage: int, prompt: Prompt, wrong: list[Sample]) -> tuple[list[int], int] | None:
        """Token ids of a stage prompt that leaves room for ``max_new_tokens`` within ``max_model_len``
        (fewer demonstrations / shown attempts until it fits), and the demonstrations used; None: no fit."""
        budget = self.ctx.max_model_len - self.ctx.sampling.max_new_tokens
        most = self.options.num_demos if stage == 1 else self.options.reflect_attempts
        for k in range(most, -1 if stage == 1 else 0, -1):
            if stage == 1:
                text, used = self.decompose_prompt(prompt, k)
            else:
                text, used = self.reflect_prompt(prompt, wrong, k), 0
            ids = self.plain.render(replace(prompt, text=text, columns={}))
            if len(ids) <= budget:
                return ids, used
        return None

    # ------------------------------------------------------------------ rollout
    def _stage(
        self,
        generator: Generator,
        scorer: Scorer,
        stage: int,
        items: list[tuple[int, Prompt, list[int], int]],  # (problem index, prompt, prompt ids, n)
        direct_ids: list[list[int]],
    ) -> tuple[list[Sample], dict[str, float]]:
        prompts = [p for _, p, _, _ in items]
        groups = [f"{i}:{p.uid}" + ("" if stage == 0 else f"/{STAGES[stage]}") for i, p, _, _ in items]
        meta = [{"stage": stage, "problem": i, "direct_ids": direct_ids[i]} for i, _, _, _ in items]
        samples = generate_round(
            generator,
            prompts,
            [ids for _, _, ids, _ in items],
            [n for *_, n in items],
            groups,
            stage,
            self.ctx.sampling,
            meta,
        )
        return samples, scorer.score(samples) if samples else {}

    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        o = self.options
        prompts = [r.prompt for r in requests]
        direct_ids = [self.ctx.renderer.render(p) for p in prompts]
        items = [(i, p, direct_ids[i], r.n_samples) for i, (p, r) in enumerate(zip(prompts, requests))]
        direct, m0 = self._stage(generator, scorer, 0, items, direct_ids)
        parts = [(m0, len(direct))]
        by_problem: dict[int, list[Sample]] = {}
        for s in direct:
            by_problem.setdefault(s.meta["problem"], []).append(s)

        def all_wrong(ss: list[Sample]) -> bool:
            verdicts = [s.correct for s in ss if s.correct is not None]
            return bool(verdicts) and not any(verdicts)

        zero = [i for i in range(len(prompts)) if all_wrong(by_problem.get(i, []))]
        samples = list(direct)
        rescued = {1: 0, 2: 0}
        hits = asked = too_long = 0
        stage_acc: dict[str, float] = {}
        todo = zero
        for stage in (1, 2):
            if not todo:
                break
            if not (o.decompose if stage == 1 else o.reflect):
                continue
            n_opt = o.decompose_samples if stage == 1 else o.reflect_samples
            items = []
            for i in todo:
                fit = self.stage_ids(stage, prompts[i], [s for s in by_problem[i] if s.correct is False])
                if fit is None:  # even the shortest stage prompt leaves no room to answer: skip, counted
                    too_long += 1
                    continue
                hits += stage == 1 and fit[1] > 0
                asked += stage == 1
                items.append((i, prompts[i], fit[0], n_opt or requests[i].n_samples))
            new, m = self._stage(generator, scorer, stage, items, direct_ids)
            parts.append((m, len(new)))
            samples += new
            for s in new:
                by_problem[s.meta["problem"]].append(s)
            solved = {s.meta["problem"] for s in new if s.correct}
            rescued[stage] = len(solved)
            if stage == 1:  # successful decompositions become demonstrations for later problems
                for s in new:
                    if s.correct:
                        self.buffer.add(s.prompt.text, s.response_text)
            verdicts = [s.correct for s in new if s.correct is not None]
            stage_acc[f"cog/acc_{STAGES[stage]}"] = (
                sum(verdicts) / len(verdicts) if verdicts else float("nan")
            )
            todo = [i for i in todo if i not in solved]

        n = max(len(prompts), 1)
        metrics = merge_scores(parts, samples) | rollout_metrics(samples)
        direct_verdicts = [s.correct for s in direct if s.correct is not None]
        metrics |= {
            "cog/zero_acc_frac": len(zero) / n,
            "cog/rescued_decompose": rescued[1] / len(zero) if zero else 0.0,
            "cog/rescued_reflect": rescued[2] / len(zero) if zero else 0.0,
            "cog/acc_direct": sum(direct_verdicts) / len(direct_verdicts)
            if direct_verdicts
            else float("nan"),
            "cog/buffer_size": float(len(self.buffer)),
            "cog/retrieval_hit_rate": hits / asked if asked else 0.0,
            "cog/skipped_too_long": float(too_long),
            **stage_acc,
        }
        return RolloutBatch(samples, metrics)

    def keeps_group(self, group: list[Sample], metric: str) -> bool:
        """Dynamic sampling: keep groups with a learning signal, or a rescued answer for the SFT term."""
        return varies(group, metric) or any(s.meta.get("stage", 0) > 0 and s.correct for s in group)

    # ------------------------------------------------------------------ train batch
    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        rollouts = batch.samples
        sft = sft_rows(rollouts, self.options.sft_per_problem) if self.options.sft_coef > 0 else []
        name = self.options.advantage or self.ctx.algorithm.advantage
        adv = get_advantage(name)([s.reward for s in rollouts], [s.group_id for s in rollouts])
        rows = rollouts + sft
        extra = []
        if sft:
            col = collate([s.prompt_ids for s in rows], [s.response_ids for s in rows], self.ctx.pad_id)
            is_sft = torch.tensor([s.meta.get("sft", False) for s in rows], dtype=torch.float32)[:, None]
            extra.append(
                LossTerm("nll", self.options.sft_coef, col.response_mask * is_sft, {}, {"norm": "token"})
            )
        tb = pg_train_batch(rows, self.ctx.algorithm, self.ctx.pad_id, adv + [0.0] * len(sft), extra)
        pg_tokens = float(tb.terms[0].mask.sum())
        sft_tokens = float(extra[0].mask.sum()) if extra else 0.0
        tb.metrics["cog/sft_rows"] = float(len(sft))
        tb.metrics["cog/sft_token_frac"] = sft_tokens / max(pg_tokens + sft_tokens, 1.0)
        return tb

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])


def _cog_losses(options: CogRethinkerOptions, algorithm: Any) -> list[str]:
    return pg_losses(options, algorithm) + (["nll"] if options.sft_coef > 0 else [])


@register_strategy("cog_rethinker", CogRethinkerOptions, losses=_cog_losses)
def make_cog_rethinker(ctx: StrategyContext, options: CogRethinkerOptions) -> CogRethinkerStrategy:
    return CogRethinkerStrategy(ctx, options)
