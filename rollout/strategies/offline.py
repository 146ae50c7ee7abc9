"""Offline strategies: train on dataset rows, no generation (no rollout workers start, no weight sync runs).

- ``sft``: NLL of each row's target response (``data.format: sft``; with preference/ranked rows, the best
  response). The normaliser is the mini-batch's target tokens (TRL's SFTTrainer default).
- ``preference``: a pairwise or list-wise loss (``options.loss``: ``dpo`` — with ``loss_type`` sigmoid/ipo
  and label smoothing —, ``simpo``, ``plackett_luce``, ``lipo``; trainer/preference_losses.py) over each
  row's ranked responses (``data.format: preference`` or ``ranked``), optionally plus ``nll_coef`` · NLL of
  the best response (DPO + BC, as HPL and RPO use).

The rows come from the curriculum (``uniform``: epochs, shuffling, a saved cursor, so resume is exact).
Each response is tokenised after the rendered prompt (the chat template's generation prompt) and ends with
the tokenizer's EOS token, as a generated reply would. A prompt that leaves no room for a response in
``rollout.max_model_len`` is an error naming the row (or skipped and counted in ``data/skipped_too_long``
with ``data.skip_invalid``);
a response that does not fit is truncated, as TRL's ``max_length`` does.

``precompute_reference: true`` (preference losses that read a reference) computes each row's reference
log-probs once, on the learners, and reuses them every epoch (``TrainBatch.ref_logprobs``); a test checks
the values equal the on-the-fly ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rollout.strategies.base import Generator, Scorer, StrategyContext, register_strategy
from rollout.strategies.common import preference_train_batch
from rollout.types import Prompt, PromptRequest, RolloutBatch, Sample
from trainer.batch import LossTerm, TrainBatch, collate
from trainer.losses import LOSSES


@dataclass
class SFTOptions:
    pass


@dataclass
class PreferenceOptions:
    loss: str = "dpo"  # a registered preference loss: dpo | simpo | plackett_luce | lipo
    loss_options: dict[str, Any] = field(default_factory=dict)  # e.g. {beta: 0.1, loss_type: sigmoid}
    nll_coef: float = 0.0  # weight of the NLL of each row's best response (DPO + BC)
    max_responses: int | None = None  # keep the best k responses of a ranked row (None: all)
    precompute_reference: bool = False  # reference log-probs computed once per row and cached

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(
                f"strategy.options.loss: unknown loss {self.loss!r}; registered: {sorted(LOSSES)}"
            )
        if self.max_responses is not None and self.max_responses < 2:
            raise ValueError("strategy.options.max_responses must be >= 2 (a list needs two responses)")


class _RowTokenizer:
    """Rows → (prompt ids, response ids) within ``max_model_len``; counts skipped rows."""

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx
        self.skip_invalid = ctx.skip_invalid
        self.eos = ctx.tokenizer.eos_token_id
        self.skipped = 0
        self.truncated = 0

    def __call__(self, prompt: Prompt, responses: list[str]) -> tuple[list[int], list[list[int]]] | None:
        p_ids = self.ctx.renderer.render(prompt)
        room = self.ctx.max_model_len - len(p_ids)
        if room < 1:
            if self.skip_invalid:
                self.skipped += 1
                return None
            raise ValueError(
                f"data row {prompt.uid!r} (<file stem>-<row>): the prompt is {len(p_ids)} tokens, "
                f"rollout.max_model_len is {self.ctx.max_model_len} (raise it, or set data.skip_invalid=true)"
            )
        out = []
        for text in responses:
            ids = self.ctx.renderer.encode(text) + ([self.eos] if self.eos is not None else [])
            if len(ids) > room:
                ids = ids[:room]
                self.truncated += 1
            out.append(ids)
        return p_ids, out


def _data_samples(
    prompt: Prompt, p_ids: list[int], r_ids: list[list[int]], texts: list[str], i: int
) -> list[Sample]:
    scores = prompt.columns.get("scores") or [0.0] * len(r_ids)
    return [
        Sample(
            prompt=prompt,
            prompt_ids=p_ids,
            response_ids=ids,
            logprobs=[],
            finish_reason="data",
            response_text=text,
            group_id=f"{i}:{prompt.uid}",
            reward=float(score),
            meta={"rank": rank},
        )
        for rank, (ids, text, score) in enumerate(zip(r_ids, texts, scores))
    ]


class _DataRows:
    """What both offline strategies use (by composition): a step's dataset rows as unscored Samples."""

    def __init__(self, ctx: StrategyContext, max_responses: int | None) -> None:
        self.tok = _RowTokenizer(ctx)
        self.max_responses = max_responses  # responses kept per row, best first (None: all)

    def samples(self, prompts: list[Prompt]) -> list[Sample]:
        out: list[Sample] = []
        for i, p in enumerate(prompts):
            texts = list(p.columns["responses"][: self.max_responses])
            got = self.tok(p, texts)
            if got is not None:
                out += _data_samples(p, got[0], got[1], texts, i)
        return out

    def batch(self, requests: list[PromptRequest]) -> RolloutBatch:
        samples = self.samples([r.prompt for r in requests])
        return RolloutBatch(samples, _data_metrics(samples, self.tok))


class SFTStrategy:
    def __init__(self, ctx: StrategyContext, options: SFTOptions) -> None:
        self.ctx = ctx
        self.rows = _DataRows(ctx, max_responses=1)  # the target: the row's (best) response

    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        return self.rows.batch(requests)

    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        s = batch.samples
        col = collate([x.prompt_ids for x in s], [x.response_ids for x in s], self.ctx.pad_id)
        tb = TrainBatch(col.input_ids, col.attention_mask, [LossTerm("nll", 1.0, col.response_mask)])
        return _with_features(tb, s, self.ctx)

    def eval_batch(self, prompts: list[Prompt]) -> TrainBatch:
        return self.make_train_batch(RolloutBatch(self.rows.samples(prompts)))

    def state_dict(self) -> dict[str, Any]:
        return {}  # the position in the data is the curriculum's

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class PreferenceStrategy:
    def __init__(self, ctx: StrategyContext, options: PreferenceOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.rows = _DataRows(ctx, options.max_responses)
        self._ref_cache: dict[
            tuple[str, int], torch.Tensor
        ] = {}  # (uid, rank) -> response-token ref log-probs

    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        return self.rows.batch(requests)

    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        o = self.options
        tb = preference_train_batch(batch.samples, o.loss, o.loss_options, self.ctx.pad_id, o.nll_coef)
        if o.precompute_reference and LOSSES[o.loss].needs_ref:
            tb.ref_logprobs = self._cached_reference(batch.samples, tb)
        return _with_features(tb, batch.samples, self.ctx)

    def eval_batch(self, prompts: list[Prompt]) -> TrainBatch:
        o = self.options
        samples = self.rows.samples(prompts)
        tb = preference_train_batch(samples, o.loss, o.loss_options, self.ctx.pad_id)
        return _with_features(tb, samples, self.ctx)

    def _cached_reference(self, samples: list[Sample], tb: TrainBatch) -> torch.Tensor:
        keys = [(s.prompt.uid, int(s.meta["rank"])) for s in samples]
        missing = [i for i, k in enumerate(keys) if k not in self._ref_cache]
        if missing:
            lp = self.ctx.learners.reference_logprobs(tb.select(missing))
            for j, i in enumerate(missing):
                P, R = len(samples[i].prompt_ids), len(samples[i].response_ids)
                self._ref_cache[keys[i]] = lp[j, P : P + R].clone()
        out = torch.zeros(tb.input_ids.shape, dtype=torch.float32)
        for i, (k, s) in enumerate(zip(keys, samples)):
            P = len(s.prompt_ids)
            out[i, P : P + len(s.response_ids)] = self._ref_cache[k]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}  # the reference cache is recomputed on resume (same values)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _with_features(tb: TrainBatch, samples: list[Sample], ctx: StrategyContext) -> TrainBatch:
    """Attach the side module's per-row inputs (rows in the batch's order: one per sample)."""
    if ctx.features is not None:
        tb.features = ctx.features(samples)
    return tb


def _data_metrics(samples: list[Sample], tok: _RowTokenizer) -> dict[str, float]:
    lens = [len(s.response_ids) for s in samples]
    return {
        "response_len_mean": sum(lens) / max(len(lens), 1),
        "num_samples": float(len(samples)),
        "data/skipped_too_long": float(tok.skipped),
        "data/truncated_responses": float(tok.truncated),
    }


@register_strategy("sft", SFTOptions, losses=lambda o, a: ["nll"], needs_generator=False)
def make_sft(ctx: StrategyContext, options: SFTOptions) -> SFTStrategy:
    return SFTStrategy(ctx, options)


def _preference_losses(options: PreferenceOptions, algorithm: Any) -> list[str]:
    return [options.loss] + (["nll"] if options.nll_coef > 0 else [])


@register_strategy("preference", PreferenceOptions, losses=_preference_losses, needs_generator=False)
def make_preference(ctx: StrategyContext, options: PreferenceOptions) -> PreferenceStrategy:
    return PreferenceStrategy(ctx, options)
