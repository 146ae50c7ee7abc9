"""SePO — selective preference optimisation with a token-level reward oracle (Yang et al. 2024; METHODS.md §5).

The pipeline is three recipes and one command, each writing what the next reads:

1. π_ref^o: SFT of a small model on the chosen responses (``recipes/sepo_ref_sft_tiny_cpu.yaml``, strategy
   ``sft``).
2. π^o, the oracle: DPO of π_ref^o on (part of) the preference data (``recipes/sepo_oracle_dpo_tiny_cpu.yaml``,
   strategy ``preference``, ``data.max_rows`` picks the part).
3. ``python -m launch.score_tokens RECIPE`` (launch/score_tokens.py): for every response token the token
   reward r̂_t = log π^o(y_t | x, y_<t) − log π_ref^o(y_t | x, y_<t), and the selection: the top-k tokens of
   the chosen response and the bottom-k of the rejected one, k = max(1, int(ratio · |y|)). Written to
   ``options.masks`` (a manifest plus jsonl shards keyed by row id), resumable.
4. This strategy: the policy trains with the reference-free, length-normalised pairwise loss over the selected
   tokens only (the ``simpo`` loss with the selection as its mask):
   L = −log σ(γ · [mean_{t∈S_w} log π(y_w,t) − mean_{t∈S_l} log π(y_l,t)] − margin).
   No reference model is loaded at training time (the ``simpo`` loss declares no frozen role).

Alignment of masks and log-probs: a mask position t marks token ``input_ids[t]``, whose log-prob the learner
takes from the logits at t − 1 (trainer/batch.py). The scoring pass computes r̂ in exactly that layout from the
same token ids (the same renderer, template, EOS and truncation as training), and stores each response's length
and a hash of its ids; a row whose tokens differ at training time (another tokenizer, template or
``max_model_len``) is an error naming the row and the masks folder, never a silently shifted mask.

Departures from the paper and its released code:
- k = max(1, int(ratio · |y|)): the code's int(ratio · |y|) leaves a response shorter than 1/ratio tokens with no
  token, which drops the pair; we keep its single most informative token.
- |y| counts the EOS token appended to every response (it is a trained token here, as in TRL's data collators).
- Ranked lists with more than two responses (``data.format: ranked``) are allowed: the best response keeps its
  top-k tokens, every other response its bottom-k, and the loss pairs the best with each other one.
- γ (``loss_options.scale``) and a SimPO-style ``margin`` are options; the released code uses γ = 1, no margin
  (our defaults); reviews report γ ≈ 2.1–2.5.
- ``options.ratio`` may differ from the ratio the masks were scored with: the selection is then recomputed from
  the stored token rewards (no rescoring).
- Held-out eval (``eval/pref/*``) scores the *full* responses with the same length-normalised reward (the
  SimPO reward), so SePO and full-token SimPO/DPO runs report comparable held-out numbers; the oracle is not
  needed for the eval rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout.strategies.base import Generator, Scorer, StrategyContext, register_strategy
from rollout.strategies.common import preference_train_batch
from rollout.strategies.offline import _DataRows
from rollout.types import PromptRequest, RolloutBatch, Sample
from trainer.batch import TrainBatch

MANIFEST = "manifest.json"


@dataclass
class SePOOptions:
    masks: str = "runs/sepo/masks"  # folder written by `python -m launch.score_tokens RECIPE`
    oracle: str = "runs/sepo/oracle"  # π^o: HF folder, checkpoint or run folder (its latest checkpoint)
    oracle_reference: str = "runs/sepo/ref"  # π_ref^o: the SFT model the oracle was trained from
    ratio: float = 0.3  # share of each response's tokens kept (k = max(1, int(ratio·|y|)))
    loss_options: dict[str, Any] = field(default_factory=lambda: {"scale": 1.0, "margin": 0.0})
    nll_coef: float = 0.0  # optional NLL on the chosen response's selected tokens
    # Scoring pass (launch/score_tokens.py) only:
    score_workers: int = 1  # Ray actors scoring shards in parallel (each loads both frozen models)
    score_threads: int = 2  # torch threads per scoring actor
    score_gpus: float = 0.0  # GPUs per scoring actor (0: CPU)
    score_batch_size: int = 8  # sequences per forward pass
    score_dtype: str = "float32"  # dtype of the frozen models while scoring (bf16 rounds r̂ coarsely)
    shard_rows: int = 64  # rows per shard file: the unit of resumption
    score_eval: bool = False  # also score the eval split (not needed: eval uses full responses)

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"strategy.options.ratio: {self.ratio} must be in (0, 1]")
        if self.score_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"strategy.options.score_dtype: {self.score_dtype!r} is not float32 or bfloat16")
        for k in ("score_workers", "score_threads", "score_batch_size", "shard_rows"):
            if getattr(self, k) < 1:
                raise ValueError(f"strategy.options.{k}: must be >= 1")
        unknown = set(self.loss_options) - {"scale", "margin", "label_smoothing"}
        if unknown:
            raise ValueError(
                f"strategy.options.loss_options: unknown {sorted(unknown)} (scale, margin, label_smoothing)"
            )


# ---------------------------------------------------------------- selection (pure logic, unit-tested)


def num_selected(length: int, ratio: float) -> int:
    """k = max(1, int(ratio · length)) tokens of a response of ``length`` tokens (0 for an empty response)."""
    return 0 if length <= 0 else max(1, int(ratio * length))


def select_tokens(rewards: list[float], ratio: float, chosen: bool) -> list[int]:
    """Positions (0-based within the response, ascending) of the k highest (``chosen``) or lowest rewards.

    Ties go to the earlier token (a stable order), so the selection is deterministic."""
    k = num_selected(len(rewards), ratio)
    sign = -1.0 if chosen else 1.0
    order = sorted(range(len(rewards)), key=lambda t: (sign * rewards[t], t))
    return sorted(order[:k])


def ids_hash(ids: list[int]) -> str:
    return hashlib.sha1(json.dumps(list(ids)).encode()).hexdigest()[:16]


def response_record(ids: list[int], rewards: list[float], ratio: float, rank: int) -> dict[str, Any]:
    """One scored response as stored: its length and id hash (the alignment check), r̂ and the selection."""
    if len(ids) != len(rewards):
        raise ValueError(f"{len(ids)} response tokens but {len(rewards)} token rewards")
    return {
        "len": len(ids),
        "ids_sha1": ids_hash(ids),
        "reward": [round(float(r), 5) for r in rewards],
        "selected": select_tokens(rewards, ratio, chosen=rank == 0),
    }


# ---------------------------------------------------------------- the mask store


class MaskStore:
    """Reads a masks folder: ``manifest.json`` plus ``<split>-NNNNN.jsonl`` shards of row records."""

    def __init__(self, folder: str | Path, ratio: float) -> None:
        self.folder = Path(folder).expanduser()
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(
                f"strategy.options.masks: {str(self.folder)!r} holds no {MANIFEST}: run "
                "`python -m launch.score_tokens RECIPE` first (it scores every row with the oracle)"
            )
        self.manifest = json.loads(manifest.read_text())
        if not self.manifest.get("complete"):
            raise ValueError(
                f"strategy.options.masks: {str(self.folder)!r} is incomplete (the scoring pass stopped): "
                "rerun `python -m launch.score_tokens RECIPE`; it resumes from the finished shards"
            )
        self.ratio = ratio
        self.rescored = abs(float(self.manifest["ratio"]) - ratio) > 1e-12
        self.rows: dict[str, list[dict[str, Any]]] = {}
        for shard in sorted(self.folder.glob("*.jsonl")):
            for line in shard.read_text().splitlines():
                rec = json.loads(line)
                self.rows[str(rec["id"])] = rec["responses"]

    def mask(self, sample: Sample) -> list[int]:
        """Selected positions of ``sample``'s response (0-based in the response); checks the token alignment."""
        uid, rank = sample.prompt.uid, int(sample.meta["rank"])
        recs = self.rows.get(uid)
        if recs is None or rank >= len(recs):
            raise KeyError(
                f"row {uid!r} (response {rank}) has no token scores in {str(self.folder)!r}: the data changed "
                "since scoring; rerun `python -m launch.score_tokens RECIPE`"
            )
        rec = recs[rank]
        ids = sample.response_ids
        if rec["len"] != len(ids) or rec["ids_sha1"] != ids_hash(ids):
            raise ValueError(
                f"row {uid!r} (response {rank}): its tokens differ from those scored in {str(self.folder)!r} "
                f"({len(ids)} vs {rec['len']} tokens): tokenizer, prompt template or rollout.max_model_len "
                "changed since scoring; rerun `python -m launch.score_tokens RECIPE --force`"
            )
        if self.rescored:
            return select_tokens(rec["reward"], self.ratio, chosen=rank == 0)
        return list(rec["selected"])


# ---------------------------------------------------------------- the strategy


class SePOStrategy:
    def __init__(self, ctx: StrategyContext, options: SePOOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.rows = _DataRows(ctx, max_responses=None)
        self.store = MaskStore(options.masks, options.ratio)

    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        return self.rows.batch(requests)

    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        o = self.options
        samples = batch.samples
        tb = preference_train_batch(samples, "simpo", o.loss_options, self.ctx.pad_id, o.nll_coef)
        full = tb.terms[0].mask
        selected = full.new_zeros(full.shape)
        for b, s in enumerate(samples):
            p = len(s.prompt_ids)
            for t in self.store.mask(s):
                selected[b, p + t] = 1.0
        for term in tb.terms:  # the NLL term (if any) keeps its chosen-row restriction: mask × selection
            term.mask = term.mask * selected
        tb.metrics["sepo/token_share"] = float(selected.sum() / full.sum().clamp(min=1.0))
        tb.metrics["sepo/selected_tokens"] = float(selected.sum())
        return tb

    def eval_batch(self, prompts: list) -> TrainBatch:
        # Full responses with the same length-normalised reward: comparable with full-token SimPO/DPO runs.
        return preference_train_batch(
            self.rows.samples(prompts), "simpo", self.options.loss_options, self.ctx.pad_id
        )

    def state_dict(self) -> dict[str, Any]:
        return {}  # the position in the data is the curriculum's; the masks are files

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _losses(options: SePOOptions, algorithm: Any) -> list[str]:
    return ["simpo"] + (["nll"] if options.nll_coef > 0 else [])


@register_strategy("sepo", SePOOptions, losses=_losses, needs_generator=False)
def make_sepo(ctx: StrategyContext, options: SePOOptions) -> SePOStrategy:
    return SePOStrategy(ctx, options)
