"""Preference losses over pairs and ranked lists: ``dpo``, ``simpo``, ``plackett_luce``, ``lipo``.

Data contract (see the module docstring of :mod:`trainer.batch`). A preference :class:`LossTerm` has

- ``mask`` [B, T]: the target tokens of each row — the whole response, one step or action span of a
  trajectory (HPL), or the selected tokens only (SePO). Same position convention as every other term:
  ``mask[b, t] = 1`` scores ``inp.logprobs[b, t]``.
- ``tensors["group"]`` [B] long: pair/list id, -1 for rows outside the term (ignored).
- ``tensors["rank"]`` [B] long: 0 = best (the chosen response), larger = worse.
- ``tensors["score"]`` [B] float, optional: the reward behind the ranking (``lipo`` weightings only).

Members of a group are the rows with that id *and* a non-empty mask; a group with fewer than two such
members contributes nothing (defensive: the data layer rejects them earlier). The learner keeps a group
inside one micro-batch and sets ``Reducer.minibatch_groups``; each loss returns
``reduce.groups(per_group)`` so that summing micro-batch losses gives the mini-batch mean over groups.
Every group counts once, however many pairs it holds: pair losses are averaged inside a group.

Notation: s_b = Σ_t m[b,t]·(log π − log π_ref)[b,t] (the sequence log-ratio over the mask; DPO's implicit
reward is β·s_b), r_b = Σ_t m[b,t]·log π[b,t] / Σ_t m[b,t] (mean log-prob, reference-free). In a group,
w is a better-ranked row and l a worse-ranked one; rows of equal rank never form a pair.

``dpo`` (needs ref). Pairs: (best row, each worse row) — for a plain pair exactly one pair. h = s_w − s_l.
  options: ``beta`` (0.1), ``loss_type`` (``sigmoid``), ``label_smoothing`` ε (0.0).
  - ``sigmoid``: −(1−ε)·log σ(β h) − ε·log σ(−β h). ε = 0 is DPO (Rafailov et al. 2023); ε > 0 is
    conservative DPO (cDPO), as TRL's DPOTrainer writes it. With the mask on one span this is HPL's
    step/group DPO (the log-ratios summed over the span's action tokens only).
  - ``ipo``: (h − 1/(2β))² (Azar et al. 2023). As in TRL's DPOTrainer, IPO uses *per-token averaged*
    log-ratios, s_b / Σ_t m[b,t], so β is on a per-token scale; ``label_smoothing`` is not defined for it.
``simpo`` (no ref; SimPO, Meng et al. 2024; SePO). Pairs as ``dpo``.
  loss −(1−ε)·log σ(z) − ε·log σ(−z), z = γ·(r_w − r_l) − margin.
  options: ``scale`` γ (2.0), ``margin`` (0.0), ``label_smoothing`` ε (0.0). SimPO's paper writes
  −log σ(β/|y_w|·log π(y_w) − β/|y_l|·log π(y_l) − γ): its β is our ``scale`` and its γ our ``margin``
  (TRL's CPOTrainer takes ``beta`` and ``simpo_gamma`` = margin/β). SePO: mask = the selected tokens,
  released code uses scale 1 and no margin.
``plackett_luce`` (needs ref; DPO paper's Plackett–Luce form, ListMLE over implicit rewards).
  u_i = β·s_i, rows ordered best first; loss −Σ_{i=1}^{k−1} [u_(i) − logsumexp(u_(i), …, u_(k))], the
  negative log-likelihood of the whole ranking, *summed* over positions and not divided by k − 1 (the
  standard form; for k = 2 it equals the ``dpo`` sigmoid loss). Tied ranks are put in row order (a stable
  sort), i.e. treated as the order the data gives them. options: ``beta`` (0.1).
``lipo`` (needs ref; LiPO, Liu et al. 2024). Every ordered pair (i, j) with rank_i < rank_j, loss
  −log σ(β(s_i − s_j)) with weights Δ_ij normalised to sum to 1 within the group (a group whose weights are
  all 0 contributes 0). options: ``beta`` (0.1), ``weighting`` (``none``):
  - ``none``: uniform (the pairwise DPO average over the list, LiPO's "pair-wise" baseline);
  - ``gap``: |score_i − score_j| (needs ``score``);
  - ``lambda``: LiPO-λ, Δ_ij = |G_i − G_j|·|1/log2(1+τ_i) − 1/log2(1+τ_j)|, G = 2^score − 1 (needs
    ``score``); τ = 1-based position. ``lambda_positions`` (``policy``) picks the ranking τ refers to:
    ``policy`` follows the paper (and LambdaLoss) — the permutation induced by the current rewards s,
    detached, ties by label order; ``label`` uses the data's ranking. The log base cancels in the
    per-group normalisation.

Metrics (over this micro-batch, only when it holds at least one pair): ``pref/accuracy`` (fraction of
pairs whose implicit reward is ordered correctly; ``dpo``/``simpo``: best vs. each worse row; lists:
all strictly ordered pairs), ``pref/margin`` (mean reward gap over the same pairs: β·h for ``dpo``, γ·(r_w −
r_l) for ``simpo``), ``pref/chosen_reward`` / ``pref/rejected_reward`` (mean reward of the best-ranked
rows / of the other rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.batch import LossTerm
from trainer.losses import LossInputs, Reducer, register_loss

Metrics = dict[str, torch.Tensor]


def _masked_row_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t m[b,t]·x[b,t] → [B]; positions outside the mask never touch the result (even if -inf/NaN)."""
    return torch.where(mask > 0, x, torch.zeros_like(x)).mul(mask).sum(-1)


def _row_scores(inp: LossInputs, term: LossTerm, *, use_ref: bool, average: bool) -> torch.Tensor:
    """Per-row sequence score [B]: Σ m·(logp − ref) (``use_ref``) or Σ m·logp, divided by Σ m if ``average``."""
    x = inp.logprobs
    if use_ref:
        if inp.ref_logprobs is None:
            raise ValueError(f"loss {term.loss!r} needs reference log-probs")
        x = x - inp.ref_logprobs
    s = _masked_row_sum(x, term.mask)
    if average:
        s = s / term.mask.sum(-1).clamp(min=1.0)
    return s


@dataclass
class _Groups:
    """The groups of a term in this micro-batch and their pairs (indices into the batch rows)."""

    lists: list[list[int]]  # per group: member rows, best first (rank, then row order: a stable sort)
    win: torch.Tensor  # [P] better-ranked row of each pair
    lose: torch.Tensor  # [P] worse-ranked row
    gid: torch.Tensor  # [P] index into ``lists`` of the pair's group
    best: torch.Tensor  # rows holding their group's best rank (for the chosen-reward metric)
    rest: torch.Tensor  # the other member rows

    @property
    def num_groups(self) -> int:
        return len(self.lists)

    @property
    def num_pairs(self) -> int:
        return int(self.win.numel())


def _groups(term: LossTerm, *, all_pairs: bool) -> _Groups:
    """Collect the term's groups and build their pairs.

    ``all_pairs=False``: (best row, each strictly worse row) — DPO/SimPO's chosen vs. each rejected.
    ``all_pairs=True``: every (i, j) with rank_i < rank_j — list-wise pairs (LiPO, accuracy of lists).
    Rows of equal rank never form a pair. Groups with < 2 active members are dropped (they contribute 0).
    """
    for key in ("group", "rank"):
        if key not in term.tensors:
            raise KeyError(f"preference loss {term.loss!r} needs tensors[{key!r}] ([B] long)")
    group = term.tensors["group"].tolist()
    rank = term.tensors["rank"].tolist()
    active = (term.mask.sum(-1) > 0).tolist()
    by_id: dict[int, list[int]] = {}
    for b, (g, a) in enumerate(zip(group, active, strict=True)):
        if g >= 0 and a:
            by_id.setdefault(int(g), []).append(b)
    lists = [sorted(rows, key=lambda b: (rank[b], b)) for rows in by_id.values() if len(rows) >= 2]
    win, lose, gid, best, rest = [], [], [], [], []
    for gi, rows in enumerate(lists):
        top = rank[rows[0]]
        for i, a in enumerate(rows):
            (best if rank[a] == top else rest).append(a)
            if not all_pairs and rank[a] != top:
                continue
            for b in rows[i + 1 :]:  # sorted by rank: later rows are never better
                if rank[b] > rank[a]:
                    win.append(a)
                    lose.append(b)
                    gid.append(gi)
    dev = term.mask.device

    def idx(v: list[int]) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.long, device=dev)

    return _Groups(lists, idx(win), idx(lose), idx(gid), idx(best), idx(rest))


def _group_mean(per_pair: torch.Tensor, g: _Groups, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-group weighted mean of a per-pair loss → [G]; weights are normalised within each group."""
    w = torch.ones_like(per_pair) if weight is None else weight.to(per_pair.dtype)
    total = per_pair.new_zeros(g.num_groups).index_add(0, g.gid, w)
    # A group whose weights are all 0 (or that has no pair: all members tied) contributes 0, not 0/0.
    w = w / total[g.gid].clamp(min=torch.finfo(per_pair.dtype).tiny)
    return per_pair.new_zeros(g.num_groups).index_add(0, g.gid, w * per_pair)


def _finish(inp: LossInputs, reduce: Reducer, per_group: torch.Tensor) -> torch.Tensor:
    loss = reduce.groups(per_group)
    if not loss.requires_grad:
        # No group in this micro-batch: still return a graph-connected zero so backward() works everywhere.
        loss = loss + inp.logprobs[..., :0].sum()
    return loss


def _smoothed_logsigmoid_loss(z: torch.Tensor, eps: float) -> torch.Tensor:
    """−(1−ε)·log σ(z) − ε·log σ(−z): the Bradley–Terry loss with the label flipped with probability ε."""
    loss = -F.logsigmoid(z)
    if eps:
        loss = (1.0 - eps) * loss - eps * F.logsigmoid(-z)
    return loss


def _metrics(row_reward: torch.Tensor, g: _Groups) -> Metrics:
    """Pair accuracy/margin and chosen/rejected reward means from a detached per-row reward [B]."""
    if g.num_pairs == 0:
        return {}  # nothing to report; the learner averages what it gets, so no NaN placeholders
    r = row_reward.detach()
    gap = r[g.win] - r[g.lose]
    out = {"pref/accuracy": (gap > 0).float().mean(), "pref/margin": gap.mean()}
    out["pref/chosen_reward"] = r[g.best].mean()
    if g.rest.numel():
        out["pref/rejected_reward"] = r[g.rest].mean()
    return out


@register_loss("dpo", needs_ref=True)
def dpo_loss(inp: LossInputs, term: LossTerm, reduce: Reducer) -> tuple[torch.Tensor, Metrics]:
    """DPO / cDPO (``sigmoid``) or IPO (``ipo``) over (best, each worse) pairs; see the module docstring."""
    beta = float(term.options.get("beta", 0.1))
    loss_type = str(term.options.get("loss_type", "sigmoid"))
    eps = float(term.options.get("label_smoothing", 0.0))
    if loss_type not in ("sigmoid", "ipo"):
        raise ValueError(f"unknown dpo loss_type {loss_type!r}: use sigmoid or ipo")
    if loss_type == "ipo" and eps:
        raise ValueError("label_smoothing is defined for the sigmoid (cDPO) loss only, not for ipo")
    # IPO averages the log-ratios per token (as TRL does), so 1/(2β) is a per-token target margin.
    s = _row_scores(inp, term, use_ref=True, average=loss_type == "ipo")
    g = _groups(term, all_pairs=False)
    h = s[g.win] - s[g.lose]
    per_pair = (
        _smoothed_logsigmoid_loss(beta * h, eps) if loss_type == "sigmoid" else (h - 1.0 / (2 * beta)) ** 2
    )
    return _finish(inp, reduce, _group_mean(per_pair, g)), _metrics(beta * s, g)


@register_loss("simpo")
def simpo_loss(inp: LossInputs, term: LossTerm, reduce: Reducer) -> tuple[torch.Tensor, Metrics]:
    """Reference-free, length-normalised pairwise loss (SimPO; SePO with a selected-token mask)."""
    scale = float(term.options.get("scale", 2.0))
    margin = float(term.options.get("margin", 0.0))
    eps = float(term.options.get("label_smoothing", 0.0))
    r = _row_scores(inp, term, use_ref=False, average=True)
    g = _groups(term, all_pairs=False)
    z = scale * (r[g.win] - r[g.lose]) - margin
    per_pair = _smoothed_logsigmoid_loss(z, eps)
    return _finish(inp, reduce, _group_mean(per_pair, g)), _metrics(scale * r, g)


@register_loss("plackett_luce", needs_ref=True)
def plackett_luce_loss(inp: LossInputs, term: LossTerm, reduce: Reducer) -> tuple[torch.Tensor, Metrics]:
    """Negative log-likelihood of the whole ranking under Plackett–Luce with utilities β·s."""
    beta = float(term.options.get("beta", 0.1))
    u = beta * _row_scores(inp, term, use_ref=True, average=False)
    g = _groups(term, all_pairs=True)
    per_group = []
    for rows in g.lists:  # ragged lists; micro-batches are small, so a loop is fine
        ug = u[torch.tensor(rows, device=u.device)]
        # tail[i] = logsumexp(u_(i..k)): the normaliser of "item i is picked first among those left".
        tail = torch.logcumsumexp(ug.flip(0), 0).flip(0)
        per_group.append(-(ug - tail)[:-1].sum())  # the last factor is exp(u_k)/exp(u_k) = 1
    per_group_t = torch.stack(per_group) if per_group else u.new_zeros(0)
    return _finish(inp, reduce, per_group_t), _metrics(u, g)


def _lambda_weights(s: torch.Tensor, score: torch.Tensor, g: _Groups, positions: str) -> torch.Tensor:
    """LiPO-λ weights |G_i − G_j|·|1/log2(1+τ_i) − 1/log2(1+τ_j)| per pair (no gradient)."""
    tau = torch.zeros(s.shape[0], dtype=torch.float64)
    s_list = s.detach().tolist()
    for rows in g.lists:
        # rows are in label order; "policy" re-sorts them by the current reward (stable: ties keep label order)
        order = sorted(rows, key=lambda b: -s_list[b]) if positions == "policy" else rows
        for pos, b in enumerate(order, start=1):
            tau[b] = pos
    tau = tau.to(s.device)
    gain = torch.pow(2.0, score.detach().double()) - 1.0
    disc = 1.0 / torch.log2(1.0 + tau)
    return (gain[g.win] - gain[g.lose]).abs() * (disc[g.win] - disc[g.lose]).abs()


@register_loss("lipo", needs_ref=True)
def lipo_loss(inp: LossInputs, term: LossTerm, reduce: Reducer) -> tuple[torch.Tensor, Metrics]:
    """LiPO: weighted pairwise DPO over every strictly ordered pair of a list; see the module docstring."""
    beta = float(term.options.get("beta", 0.1))
    weighting = str(term.options.get("weighting", "none"))
    positions = str(term.options.get("lambda_positions", "policy"))
    if weighting not in ("none", "gap", "lambda"):
        raise ValueError(f"unknown lipo weighting {weighting!r}: use none, gap or lambda")
    if positions not in ("policy", "label"):
        raise ValueError(f"unknown lipo lambda_positions {positions!r}: use policy or label")
    if weighting != "none" and "score" not in term.tensors:
        raise KeyError(f"lipo weighting {weighting!r} needs tensors['score'] ([B] float)")
    s = _row_scores(inp, term, use_ref=True, average=False)
    g = _groups(term, all_pairs=True)
    per_pair = -F.logsigmoid(beta * (s[g.win] - s[g.lose]))
    weight = None
    if weighting == "gap":
        score = term.tensors["score"].detach()
        weight = (score[g.win] - score[g.lose]).abs()
    elif weighting == "lambda":
        weight = _lambda_weights(s, term.tensors["score"], g, positions)
    return _finish(inp, reduce, _group_mean(per_pair, g, weight)), _metrics(beta * s, g)
