"""HPL training (METHODS.md §4, step 8): BC NLL + trajectory DPO + step DPO + group DPO in one update.

Offline (no rollout workers): every dataset row is one unit written by the HPL data stages (launch/hpl.py,
rows described in rollout/hpl.py) — ``bc`` (an expert transcript), ``traj`` (expert vs π_ref trajectory),
``step`` (expert action vs π_ref's alternative after the same expert prefix) or ``group`` (an expert action
group vs a π_ref group after the same prefix). Each transcript is tokenised as a replayed episode
(rollout/multiturn.transcript_row: the chat turns the agent sees when it plays), so the rows are the sequences
π acts on, with observations and template tokens never targets.

One :class:`~trainer.batch.LossTerm` per kind, labelled ``bc`` / ``traj`` / ``step`` / ``group`` in the logged
metrics (``loss/traj``, ``group/pref/accuracy``, ...):

- ``bc``: NLL on every expert action token (token-normalised, as TRL's SFT);
- ``traj``: DPO with the log-ratios summed over each side's action tokens (ETO's trajectory DPO);
- ``step`` / ``group``: DPO with the log-ratios summed over the span's action tokens only; the shared expert
  prefix is context (it cancels anyway) and everything after the span is not in the row.

Each DPO term is −log σ(β·[log π/π_ref](chosen) − β·[log π/π_ref](rejected)) (trainer/preference_losses.py
``dpo``), π_ref the run's initial weights (the BC model). The dual-layer curriculum picks which group units a
step sees (curricula/hpl.py); the other kinds are drawn uniformly. ETO-style trajectory DPO and SFT are this
strategy with weights zeroed (``options.weights``) — the comparison in the README differs only there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rollout.hpl import UNIT_KINDS
from rollout.multiturn import (
    DEFAULT_FIRST_TURN,
    DEFAULT_SYSTEM,
    EpisodeLimits,
    EpisodeSpec,
    TranscriptRow,
    TurnFormat,
    transcript_row,
)
from rollout.strategies.base import Generator, Scorer, StrategyContext, register_strategy
from rollout.types import Prompt, PromptRequest, RolloutBatch, Sample
from trainer.batch import LossTerm, TrainBatch, collate


@dataclass
class HPLBuildOptions:
    """How the data stages (launch/hpl.py) build the units; training ignores these."""

    tasks: str = "runs/textworld/train.jsonl"  # the training tasks (rows with expert_actions)
    eval_tasks: str | None = None  # held-out tasks (None: test.jsonl beside ``tasks``)
    env: str = "textworld"  # a registered environment (rollout/envs/base.py) or module:Class
    env_options: dict[str, Any] = field(default_factory=dict)
    pool: str = "local"  # local: env in the stage's process; ray: one actor per slot
    pool_size: int = 8
    step_timeout_s: float = 60.0
    max_turns: int = 10  # actions per episode (expert prefix included)
    max_action_tokens: int = 16
    temperature: float = 1.0  # π_ref's sampling for trajectories, alternatives, negatives and MC completions
    max_tasks: int | None = None  # use only the first training tasks (quick runs)
    pair_tasks: int | None = None  # build trajectory/step/group pairs on the first N tasks only (BC uses all)
    bc_steps: int = 20  # steps of the BC stage (π_ref)
    bc_lr: float | None = None  # the BC stage's learning rate (None: trainer.lr)
    traj_samples: int = 2  # π_ref episodes per task (trajectory pairs)
    traj_min_gap: float = 0.01
    step_mc: int = 4  # Monte-Carlo completions per step value
    step_min_gap: float = 0.3
    segmentation: str = "fixed_length"  # fixed_length | fixed_count | entropy | judge (rollout/hpl.py)
    segment_k: int = 3  # fixed_length: actions per group
    segment_n: int = 3  # fixed_count: groups per trajectory
    entropy_threshold: float | None = None  # entropy: None = the trajectory's mean action entropy
    judge_max_tokens: int = 64  # judge: reply budget (the judge model is aux_models.judge)
    negative_samples: int = 4  # π_ref generations per expert group
    negatives: int = 3  # distinct negative groups kept per expert group
    group_mc: int = 5  # Monte-Carlo completions per group value
    group_min_gap: float = 0.3
    group_min_value: float = 0.8

    def __post_init__(self) -> None:
        from rollout.hpl import SEGMENTERS

        if self.segmentation not in SEGMENTERS:
            raise ValueError(
                f"build.segmentation: unknown {self.segmentation!r}; registered: {sorted(SEGMENTERS)}"
            )
        if self.pool not in ("local", "ray"):
            raise ValueError(f"build.pool: {self.pool!r} is not local or ray")


@dataclass
class HPLOptions:
    # Loss weight per unit kind; a kind at 0 is not trained (its units are skipped and counted).
    weights: dict[str, float] = field(
        default_factory=lambda: {"bc": 1.0, "traj": 1.0, "step": 1.0, "group": 1.0}
    )
    beta: float = 0.3  # DPO β of the three preference terms (the paper's value)
    label_smoothing: float = 0.0
    # The agent's chat turns: must match what the data stages and the evaluation play with.
    system_prompt: str | None = DEFAULT_SYSTEM
    first_turn: str = DEFAULT_FIRST_TURN
    use_chat_template: bool = True
    build: HPLBuildOptions = field(default_factory=HPLBuildOptions)

    def episode_spec(self, recipe: Any) -> EpisodeSpec:
        """How the data stages and the held-out evaluation play (``build``'s environment, tasks and budgets)."""
        b = self.build
        limits = EpisodeLimits(b.max_turns, b.max_action_tokens, recipe.rollout.max_model_len)
        return EpisodeSpec(
            b.env,
            dict(b.env_options),
            b.pool_size,
            b.step_timeout_s,
            limits,
            self.system_prompt,
            self.first_turn,
            self.use_chat_template,
            b.temperature,
            b.tasks,
            b.eval_tasks,
        )

    def __post_init__(self) -> None:
        bad = sorted(set(self.weights) - set(UNIT_KINDS))
        if bad:
            raise ValueError(f"weights: unknown unit kinds {bad}; kinds: {list(UNIT_KINDS)}")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights must be >= 0, got {dict(self.weights)}")
        if not any(self.weights.get(k, 0.0) > 0 for k in UNIT_KINDS):
            raise ValueError("weights: every kind is 0, nothing would be trained")

    def weight(self, kind: str) -> float:
        return float(self.weights.get(kind, 0.0))


def _side(fmt: TurnFormat, p: Prompt, turns: list[dict[str, str]], max_len: int) -> TranscriptRow:
    return transcript_row(fmt, p.text, p.columns["first_observation"], turns, max_len)


class HPLStrategy:
    def __init__(self, ctx: StrategyContext, options: HPLOptions) -> None:
        self.ctx, self.o = ctx, options
        self.fmt = TurnFormat(
            ctx.tokenizer, options.system_prompt, options.first_turn, options.use_chat_template
        )

    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        samples: list[Sample] = []
        counts = {f"hpl/units_{k}": 0.0 for k in UNIT_KINDS}
        skipped = {"hpl/skipped_weight0": 0.0, "hpl/skipped_too_long": 0.0}
        for i, r in enumerate(requests):
            p = r.prompt
            kind = p.columns.get("kind")
            if kind not in UNIT_KINDS:
                raise ValueError(f"data row {p.uid!r}: column 'kind' is {kind!r}, not one of {UNIT_KINDS}")
            if self.o.weight(kind) == 0:
                skipped["hpl/skipped_weight0"] += 1
                continue
            rows = self._unit_rows(p, kind)
            if rows is None:
                skipped["hpl/skipped_too_long"] += 1
                continue
            counts[f"hpl/units_{kind}"] += 1
            for rank, (row, mask) in enumerate(rows):
                samples.append(
                    Sample(
                        prompt=p,
                        prompt_ids=row.prompt_ids,
                        response_ids=row.response_ids,
                        logprobs=[],
                        finish_reason="data",
                        response_text="",
                        group_id=f"{i}:{p.uid}",
                        target_mask=mask,
                        meta={"rank": rank, "kind": kind},
                    )
                )
        lens = [len(s.prompt_ids) + len(s.response_ids) for s in samples]
        metrics = (
            counts
            | skipped
            | {
                "num_samples": float(len(samples)),
                "hpl/row_tokens_mean": sum(lens) / max(len(lens), 1),
            }
        )
        for k in ("step", "group"):
            gaps = [float(r.prompt.columns["gap"]) for r in requests if r.prompt.columns.get("kind") == k]
            if gaps:
                metrics[f"hpl/{k}_gap_mean"] = sum(gaps) / len(gaps)
        return RolloutBatch(samples, metrics)

    def _unit_rows(self, p: Prompt, kind: str) -> list[tuple[TranscriptRow, list[int]]] | None:
        """(row, target mask) of the unit's sides, chosen first; None if a scored action does not fit."""
        c = p.columns
        max_len = self.ctx.max_model_len
        chosen = _side(self.fmt, p, c["chosen"], max_len)
        if kind == "bc":
            sides = [(chosen, len(c["chosen"]), 0)]
        else:
            rejected = _side(self.fmt, p, c["rejected"], max_len)
            start = int(c["span"][0]) if kind in ("step", "group") else 0
            sides = [(chosen, len(c["chosen"]), start), (rejected, len(c["rejected"]), start)]
            if kind in ("step", "group"):
                sides[0] = (chosen, int(c["span"][1]), start)
        out = []
        for row, end, start in sides:
            if len(row.spans) < end:  # a scored action was cut by max_model_len
                if not self.ctx.skip_invalid:
                    raise ValueError(
                        f"data row {p.uid!r} ({kind}): its scored actions need more than rollout.max_model_len "
                        f"= {max_len} tokens (raise it, or set data.skip_invalid=true to skip and count such rows)"
                    )
                return None
            out.append((row, row.action_mask(start, end)))
        return out

    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        s = batch.samples
        col = collate(
            [x.prompt_ids for x in s],
            [x.response_ids for x in s],
            self.ctx.pad_id,
            target_masks=[x.target_mask for x in s],
        )
        ids: dict[str, int] = {}
        unit = torch.tensor([ids.setdefault(x.group_id, len(ids)) for x in s], dtype=torch.long)
        kinds = [x.meta["kind"] for x in s]
        rank = torch.tensor([int(x.meta["rank"]) for x in s], dtype=torch.long)
        terms = []
        for kind in UNIT_KINDS:
            sel = torch.tensor([k == kind for k in kinds], dtype=torch.float32)[:, None]
            if self.o.weight(kind) == 0 or sel.sum() == 0:
                continue
            mask = col.response_mask * sel
            if kind == "bc":
                terms.append(LossTerm("nll", self.o.weight(kind), mask, {}, {"norm": "token"}, label="bc"))
                continue
            group = torch.where(sel[:, 0] > 0, unit, torch.full_like(unit, -1))
            opts = {"beta": self.o.beta, "loss_type": "sigmoid", "label_smoothing": self.o.label_smoothing}
            terms.append(
                LossTerm("dpo", self.o.weight(kind), mask, {"group": group, "rank": rank}, opts, label=kind)
            )
        return TrainBatch(col.input_ids, col.attention_mask, terms, groups=unit)

    def state_dict(self) -> dict[str, Any]:
        return {}  # the position in the data is the curriculum's

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _hpl_losses(options: HPLOptions, algorithm: Any) -> list[str]:
    out = ["nll"] if options.weight("bc") > 0 else []
    return out + (["dpo"] if any(options.weight(k) > 0 for k in ("traj", "step", "group")) else [])


@register_strategy("hpl", HPLOptions, losses=_hpl_losses, needs_generator=False)
def make_hpl(ctx: StrategyContext, options: HPLOptions) -> HPLStrategy:
    return HPLStrategy(ctx, options)
