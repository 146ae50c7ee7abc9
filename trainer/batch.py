"""The rollout → learner contract: a padded token batch carrying one or more weighted loss terms.

Position convention (used by every mask here): ``mask[b, t] = 1`` makes token ``input_ids[b, t]`` a
target of that term; its log-prob comes from the logits at position ``t - 1``. The learner returns
per-token log-probs in the same layout (column 0 is always 0), so masks never need shifting by hand.

A batch may carry several terms (PG on generated tokens + NLL on a hint span, DPO + BC, ...); the
learner sums ``weight * term_loss`` in one backward pass.

Pairs and lists (preference terms): ``TrainBatch.groups`` gives every row a unit id; rows sharing an id
(the chosen and rejected responses of one pair, the k responses of one ranked list) are never split across
ranks, mini-batches or micro-batches, so a pairwise loss always sees both sides. A preference term names
its members with ``tensors["group"]`` ([B] long, the pair/list id, -1 for rows outside the term) and
``tensors["rank"]`` ([B] long, 0 = best: the chosen response), optionally ``tensors["score"]`` ([B] float,
e.g. the reward behind the ranking); its reducer counts pairs/lists, not rows (``Reducer.groups``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass
class LossTerm:
    loss: str  # registered loss name, see trainer/losses.py
    weight: float
    mask: torch.Tensor  # [B, T] float: 1 on this term's target tokens
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # per-row inputs, first dim B
    options: dict[str, Any] = field(default_factory=dict)  # scalar hyper-parameters (clip eps, norm, ...)
    # Name of the term in the logged metrics (``loss/<label>``, ``<label>/<metric>``) when a batch carries
    # several terms of one loss (HPL's trajectory, step and group DPO); None: the loss name, metrics as-is.
    label: str | None = None

    @property
    def key(self) -> str:
        return self.label or self.loss

    def metric_name(self, metric: str) -> str:
        return f"{self.label}/{metric}" if self.label else metric

    def select(self, rows: torch.Tensor) -> LossTerm:
        return replace(self, mask=self.mask[rows], tensors={k: v[rows] for k, v in self.tensors.items()})

    def to(self, device: torch.device) -> LossTerm:
        return replace(
            self, mask=self.mask.to(device), tensors={k: v.to(device) for k, v in self.tensors.items()}
        )


@dataclass
class TrainBatch:
    input_ids: torch.Tensor  # [B, T] long, right-padded
    attention_mask: torch.Tensor  # [B, T] long: 1 on real tokens
    terms: list[LossTerm]
    engine_logprobs: torch.Tensor | None = None  # [B, T] behaviour log-probs from the rollout engine
    metrics: dict[str, float] = field(default_factory=dict)  # batch statistics to log (not used in the loss)
    groups: torch.Tensor | None = (
        None  # [B] long: rows with one id stay together (pairs, lists); None: each row alone
    )
    ref_logprobs: torch.Tensor | None = None  # [B, T] precomputed reference log-probs (offline data cache)
    # Per-row model inputs beside the tokens (first dim B), read by a side module (trainer/side_modules.py),
    # e.g. PPlug's encoded history: {"history": [B, H, e], "history_mask": [B, H], "query": [B, e]}.
    features: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, rows: torch.Tensor | Sequence[int]) -> TrainBatch:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return TrainBatch(
            input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows],
            terms=[t.select(rows) for t in self.terms],
            engine_logprobs=None if self.engine_logprobs is None else self.engine_logprobs[rows],
            metrics=self.metrics,
            groups=None if self.groups is None else self.groups[rows],
            ref_logprobs=None if self.ref_logprobs is None else self.ref_logprobs[rows],
            features={k: v[rows] for k, v in self.features.items()},
        )

    def units(self) -> list[list[int]]:
        """Row indices per unit (a pair, a list, or a single row), in order of first appearance."""
        if self.groups is None:
            return [[i] for i in range(self.num_rows)]
        out: dict[int, list[int]] = {}
        for i, g in enumerate(self.groups.tolist()):
            out.setdefault(int(g), []).append(i)
        return list(out.values())

    def pad_rows(self, multiple: int, pad_id: int) -> TrainBatch:
        """Append all-masked rows (one unit each) so that the number of units divides ``multiple``.

        Needed because every data-parallel rank must get the same number of units (rows, or pairs/lists),
        so that ranks run the same number of mini-batches (ZeRO's collectives deadlock otherwise).
        Padded rows have zero masks: they add nothing.
        """
        extra = (-len(self.units())) % multiple
        if extra == 0:
            return self
        T = self.input_ids.shape[1]

        def grow(x: torch.Tensor, fill: float | int) -> torch.Tensor:
            pad = torch.full((extra, *x.shape[1:]), fill, dtype=x.dtype)
            return torch.cat([x, pad], 0)

        ids = grow(self.input_ids, pad_id)
        att = grow(self.attention_mask, 0)
        att[-extra:, 0] = 1  # one visible token so attention over the row is well defined
        terms = [
            replace(t, mask=grow(t.mask, 0), tensors={k: grow(v, 0) for k, v in t.tensors.items()})
            for t in self.terms
        ]
        elp = None if self.engine_logprobs is None else grow(self.engine_logprobs, 0.0)
        ref = None if self.ref_logprobs is None else grow(self.ref_logprobs, 0.0)
        groups = None
        if self.groups is not None:  # each padded row is a unit of its own
            top = int(self.groups.max()) + 1 if self.num_rows else 0
            groups = torch.cat([self.groups, torch.arange(top, top + extra, dtype=self.groups.dtype)])
        assert ids.shape[1] == T
        features = {k: grow(v, 0) for k, v in self.features.items()}
        return TrainBatch(ids, att, terms, elp, self.metrics, groups, ref, features)


@dataclass
class Collated:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    response_mask: torch.Tensor  # [B, T] float: 1 on generated tokens (narrowed by target masks)
    prompt_lens: list[int]  # [B]
    engine_logprobs: torch.Tensor  # [B, T] engine log-probs on response positions, 0 elsewhere


def collate(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    engine_logprobs: Sequence[Sequence[float]] | None = None,
    target_masks: Sequence[Sequence[int] | None] | None = None,
) -> Collated:
    """Right-pad ``prompt + response`` rows into one batch with a response mask.

    ``target_masks[b]`` (one 0/1 per response token, or None for all ones) narrows row b's response mask to
    the tokens the policy produced: multi-turn rows carry environment observations inside the response."""
    B = len(prompt_ids)
    lens = [len(p) + len(r) for p, r in zip(prompt_ids, response_ids, strict=True)]
    T = max(lens) if lens else 1
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    att = torch.zeros((B, T), dtype=torch.long)
    resp = torch.zeros((B, T), dtype=torch.float32)
    elp = torch.zeros((B, T), dtype=torch.float32)
    for b, (p, r) in enumerate(zip(prompt_ids, response_ids, strict=True)):
        n = len(p) + len(r)
        ids[b, :n] = torch.tensor(list(p) + list(r), dtype=torch.long)
        att[b, :n] = 1
        tm = target_masks[b] if target_masks is not None else None
        if tm is None:
            resp[b, len(p) : n] = 1.0
        else:
            if len(tm) != len(r):
                raise ValueError(f"row {b}: target mask has {len(tm)} entries for {len(r)} response tokens")
            resp[b, len(p) : n] = torch.tensor(list(tm), dtype=torch.float32)
        if engine_logprobs is not None and len(r):
            elp[b, len(p) : n] = torch.tensor(engine_logprobs[b], dtype=torch.float32)
    return Collated(ids, att, resp, [len(p) for p in prompt_ids], elp)
