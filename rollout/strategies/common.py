"""Building blocks shared by strategies: one generation round, and the PG(+KL) train batch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rollout.strategies.base import Generator
from rollout.types import GenerationRequest, Prompt, PromptRequest, RolloutBatch, Sample, SamplingParams
from trainer.advantages import get_advantage
from trainer.batch import LossTerm, TrainBatch, collate


def generate_round(
    generator: Generator,
    prompts: Sequence[Prompt],
    prompt_ids: Sequence[list[int]],
    counts: Sequence[int],
    group_ids: Sequence[str],
    round_idx: int = 0,
    params: SamplingParams | None = None,
    meta: Sequence[dict] | None = None,
) -> list[Sample]:
    """Generate ``counts[i]`` samples for each prompt and wrap them as unscored Samples."""
    reqs = [GenerationRequest(list(ids), int(n), params) for ids, n in zip(prompt_ids, counts, strict=True)]
    outs = generator.generate(reqs)
    samples: list[Sample] = []
    for i, comps in enumerate(outs):
        for c in comps:
            samples.append(
                Sample(
                    prompt=prompts[i],
                    prompt_ids=list(prompt_ids[i]),
                    response_ids=list(c.token_ids),
                    logprobs=list(c.logprobs),
                    finish_reason=c.finish_reason,
                    response_text=c.text,
                    group_id=group_ids[i],
                    round=round_idx,
                    meta=dict(meta[i]) if meta is not None else {},
                )
            )
    return samples


def single_round(ctx, requests: Sequence[PromptRequest], generator: Generator, scorer) -> RolloutBatch:
    """One generation round (each request's n samples share a group), scored: GRPO's and online DPO's rollout."""
    prompts = [r.prompt for r in requests]
    ids = [ctx.renderer.render(p) for p in prompts]
    groups = [f"{i}:{p.uid}" for i, p in enumerate(prompts)]
    samples = generate_round(
        generator, prompts, ids, [r.n_samples for r in requests], groups, params=ctx.sampling
    )
    metrics = scorer.score(samples)
    metrics.update(rollout_metrics(samples))
    return RolloutBatch(samples, metrics)


def merge_scores(parts: list[tuple[dict[str, float], int]], samples: list[Sample]) -> dict[str, float]:
    """Combine the scorer's per-round metrics: times and failure counts add up, means are sample-weighted."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    out: dict[str, float] = {}
    for m, n in parts:
        for k, v in m.items():
            if k.endswith("_s") or k == "reward_failures":
                out[k] = out.get(k, 0.0) + v
            elif not math.isnan(v):
                sums[k] = sums.get(k, 0.0) + v * n
                weights[k] = weights.get(k, 0.0) + n
    out |= {k: sums[k] / weights[k] for k in sums if weights[k] > 0}
    rewards = [s.reward for s in samples if s.reward is not None]
    verdicts = [s.correct for s in samples if s.correct is not None]
    out["reward_mean"] = sum(rewards) / len(rewards) if rewards else float("nan")
    out["accuracy"] = sum(verdicts) / len(verdicts) if verdicts else float("nan")
    return out


def rollout_metrics(samples: Sequence[Sample]) -> dict[str, float]:
    n = max(len(samples), 1)
    lens = [len(s.response_ids) for s in samples]
    return {
        "response_len_mean": sum(lens) / n,
        "response_len_max": float(max(lens, default=0)),
        "truncated_frac": sum(s.finish_reason == "length" for s in samples) / n,
        "num_samples": float(len(samples)),
    }


def pg_train_batch(
    samples: Sequence[Sample],
    algorithm,
    pad_id: int,
    advantages: Sequence[float] | None = None,
    extra_terms: Sequence[LossTerm] = (),
) -> TrainBatch:
    """Clipped PG on generated tokens (+ KL to the reference when ``algorithm.kl_coef > 0``).

    Samples without a reward (a plugin failed) keep their row but get an all-zero mask, so they add
    no gradient and do not bias the normaliser. With ``algorithm.overlong_filter`` (DAPO) truncated
    samples (``finish_reason == "length"``) are masked the same way: their reward judges an unfinished
    answer. They still count in their group's baseline, as in DAPO.
    """
    rewards = [s.reward for s in samples]
    if advantages is None:
        advantages = get_advantage(algorithm.advantage)(rewards, [s.group_id for s in samples])
    col = collate(
        [s.prompt_ids for s in samples],
        [s.response_ids for s in samples],
        pad_id,
        [s.logprobs for s in samples],
        [s.target_mask for s in samples],
    )
    cut = [algorithm.overlong_filter and s.finish_reason == "length" for s in samples]
    valid = torch.tensor([r is not None and not c for r, c in zip(rewards, cut)], dtype=torch.float32)[
        :, None
    ]
    mask = col.response_mask * valid
    adv = torch.tensor(list(advantages), dtype=torch.float32)
    norm_opts = {"norm": algorithm.loss_norm}
    terms = [
        LossTerm(
            "policy_gradient",
            1.0,
            mask,
            {"advantages": adv},
            {
                "clip_eps_low": algorithm.clip_eps_low,
                "clip_eps_high": algorithm.clip_eps_high,
                "dual_clip": algorithm.dual_clip,
                "tis_cap": algorithm.tis_cap,
                "mismatch_seq_threshold": algorithm.mismatch_seq_threshold,
                **norm_opts,
            },
        )
    ]
    if algorithm.kl_coef > 0:
        terms.append(
            LossTerm("kl", algorithm.kl_coef, mask, {}, {"estimator": algorithm.kl_estimator, **norm_opts})
        )
    terms.extend(extra_terms)
    nz = (adv != 0).float().mean().item() if len(adv) else 0.0
    return TrainBatch(
        col.input_ids,
        col.attention_mask,
        terms,
        col.engine_logprobs,
        metrics={
            "adv_abs_mean": adv.abs().mean().item() if len(adv) else 0.0,
            "adv_nonzero_frac": nz,
            **({"overlong_filtered": float(sum(cut))} if algorithm.overlong_filter else {}),
        },
    )


def preference_train_batch(
    samples: Sequence[Sample],
    loss: str,
    loss_options: dict,
    pad_id: int,
    nll_coef: float = 0.0,
) -> TrainBatch:
    """One preference term over pairs/lists (+ ``nll_coef`` · NLL of each list's best response).

    Samples of one list share ``group_id``; ``meta["rank"]`` orders them (0 = best) and ``reward`` is the
    score behind the ranking. Lists become :attr:`TrainBatch.groups` units, so the learner never splits them.
    """
    col = collate(
        [s.prompt_ids for s in samples],
        [s.response_ids for s in samples],
        pad_id,
        target_masks=[s.target_mask for s in samples],
    )
    ids: dict[str, int] = {}
    group = torch.tensor([ids.setdefault(s.group_id, len(ids)) for s in samples], dtype=torch.long)
    rank = torch.tensor([int(s.meta["rank"]) for s in samples], dtype=torch.long)
    score = torch.tensor([float(s.reward or 0.0) for s in samples], dtype=torch.float32)
    terms = [
        LossTerm(
            loss, 1.0, col.response_mask, {"group": group, "rank": rank, "score": score}, dict(loss_options)
        )
    ]
    if nll_coef > 0:
        best = (rank == 0).float()[:, None]
        terms.append(LossTerm("nll", nll_coef, col.response_mask * best, {}, {"norm": "token"}))
    return TrainBatch(
        col.input_ids,
        col.attention_mask,
        terms,
        groups=group,
        metrics={"pref/lists": float(len(ids)), "pref/list_size_mean": len(samples) / max(len(ids), 1)},
    )
