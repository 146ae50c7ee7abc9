"""PPlug (Liu et al., 2024): a user embedder plugged into a frozen LLM. METHODS.md section 7.

1. Every history item is encoded once by a frozen text encoder: ``h_i`` (driver side, cached on disk:
   rollout/text_encoder.py).
2. The input ``x`` is encoded and projected by a trainable input encoder; attention weights
   ``w_i = softmax_i(sim(x, h_i) / tau)``.
3. ``P_u = sum_i w_i · MLP(h_i)`` (2-layer MLP, GELU) in the LM's embedding size.
4. The LM reads ``[I ; P_u ; Emb(x)]`` with a trainable instruction embedding ``I``; the LM is frozen and the
   loss is the NLL of the target (the ``sft`` strategy's term).

Departures from the paper, for a CPU-sized run (each is an option where it matters):
- The frozen encoder is a local causal LM, mean-pooled (default: the policy LM itself, ``encoder: policy``);
  the paper uses BGE-base, whose weights cannot be fetched here.
- The input encoder is the same frozen encoding followed by a trainable linear map (initialised to the
  identity) instead of a fully fine-tuned encoder copy: the paper trains the whole input encoder, which would
  double the compute per row.
- Similarities are cosines over L2-normalised vectors with a temperature ``tau``, and the MLP reads the
  normalised history vectors (mean-pooled LM states have large, similar norms: a raw dot product makes the
  softmax one-hot and raw inputs put ``P_u`` far outside the token-embedding scale).
- ``use_history: false`` drops ``P_u`` and keeps ``I``: the no-personalisation baseline (prompt tuning) at the
  same trainable budget for the instruction part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.side_modules import FeatureContext, FeatureFn, register_side_module


@dataclass
class PPlugOptions:
    encoder: str = "policy"  # frozen history encoder: "policy" (the LM itself) or a local HF folder
    history_field: str = "history"  # data column: the user's history items (a list of strings)
    input_field: str | None = None  # data column encoded as x (None: the row's prompt text)
    max_history: int = 512  # the last N items (paper: 512)
    instruction_tokens: int = 1  # length of the trainable instruction embedding I
    mlp_hidden: int = 0  # hidden size of the projection MLP (0: the LM's hidden size)
    tau: float = 0.1  # temperature of the input-aware attention over history items
    use_history: bool = True  # False: [I ; Emb(x)] only (the no-personalisation baseline)
    encoder_max_tokens: int = 64  # history items are truncated to this many tokens when encoded
    cache_dir: str = "~/.cache/forge-rl/encodings"

    def __post_init__(self) -> None:
        if self.instruction_tokens < 0 or self.max_history < 1:
            raise ValueError("instruction_tokens must be >= 0 and max_history >= 1")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.instruction_tokens == 0 and not self.use_history:
            raise ValueError("nothing to train: instruction_tokens=0 and use_history=false")


class PPlugModule(nn.Module):
    """The frozen LM (``self.lm``) plus the trainable user embedder and instruction embedding."""

    def __init__(self, lm: Any, options: PPlugOptions, encoder_dim: int) -> None:
        super().__init__()
        self.lm = lm
        self.options = options
        lm.requires_grad_(False)
        d = lm.get_input_embeddings().weight.shape[1]
        emb = lm.get_input_embeddings().weight.detach()
        g = torch.Generator().manual_seed(0)
        self.n_prefix = options.instruction_tokens + (1 if options.use_history else 0)
        if options.instruction_tokens:
            # Prompt-tuning's usual start: copies of real token embeddings (the scale the LM expects).
            rows = torch.randint(0, emb.shape[0], (options.instruction_tokens,), generator=g)
            self.instruction = nn.Parameter(emb[rows].clone().float())
        if options.use_history:
            self.input_proj = nn.Linear(encoder_dim, encoder_dim)
            with torch.no_grad():
                self.input_proj.weight.copy_(torch.eye(encoder_dim))
                self.input_proj.bias.zero_()
            hidden = options.mlp_hidden or d
            self.mlp = nn.Sequential(nn.Linear(encoder_dim, hidden), nn.GELU(), nn.Linear(hidden, d))
            with torch.no_grad():
                # P_u starts near the token-embedding scale (the MLP reads unit-scale inputs, see
                # user_embedding; GELU outputs have std ~0.5 there), not far outside what the LM expects.
                elem_std = float(emb.float().std())
                self.mlp[2].weight.normal_(0.0, elem_std / (0.5 * math.sqrt(hidden)))
                self.mlp[2].bias.zero_()

    def get_input_embeddings(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm.get_output_embeddings()

    def user_embedding(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(P_u [B, d], attention weights [B, H]) from precomputed history and input encodings."""
        dtype = self.mlp[0].weight.dtype
        hist = features["history"].to(dtype)  # [B, H, e]
        mask = features["history_mask"].bool()  # [B, H]
        q = F.normalize(self.input_proj(features["query"].to(dtype)), dim=-1)  # [B, e]
        k = F.normalize(hist, dim=-1)
        scores = torch.einsum("be,bhe->bh", q, k) / self.options.tau
        scores = scores.masked_fill(~mask, float("-inf"))
        has = mask.any(-1, keepdim=True)
        w = (
            torch.softmax(torch.where(has, scores, torch.zeros_like(scores)), -1) * mask * has
        )  # no history: 0
        items = k * math.sqrt(k.shape[-1])  # unit scale per element, whatever the encoder's norms
        p_u = torch.einsum("bh,bhd->bd", w, self.mlp(items))
        return p_u, w

    def prefix(
        self, batch: int, features: dict[str, torch.Tensor] | None, dtype: torch.dtype
    ) -> torch.Tensor:
        parts = []
        if self.options.instruction_tokens:
            parts.append(self.instruction.to(dtype).unsqueeze(0).expand(batch, -1, -1))
        if self.options.use_history:
            if not features:
                raise ValueError(
                    "PPlug needs per-row features (history, history_mask, query): none were given"
                )
            parts.append(self.user_embedding(features)[0].to(dtype).unsqueeze(1))
        return torch.cat(parts, 1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        features: dict[str, torch.Tensor] | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int = 0,
    ) -> SimpleNamespace:
        """Logits aligned with ``input_ids`` (the prefix positions cut off); ``logits_to_keep`` / hidden states
        as in HF models (trainer/logprobs.py applies the LM head itself to the positions it needs)."""
        tok = self.lm.get_input_embeddings()(input_ids)
        pre = self.prefix(input_ids.shape[0], features, tok.dtype)
        att = torch.cat([attention_mask.new_ones(pre.shape[:2]), attention_mask], 1)
        out = self.lm(
            inputs_embeds=torch.cat([pre, tok], 1),
            attention_mask=att,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            logits_to_keep=logits_to_keep,
        )
        # Cut the prefix positions: logits[:, t] again predicts input_ids[:, t + 1] (the batch layout).
        # With logits_to_keep > 0 the LM kept the last positions only: token positions, nothing to cut.
        logits = out.logits if logits_to_keep else out.logits[:, self.n_prefix :]
        hidden = out.hidden_states
        if hidden is not None:
            hidden = tuple(h[:, self.n_prefix :] for h in hidden)
        return SimpleNamespace(logits=logits, hidden_states=hidden)

    @torch.no_grad()
    def generate(
        self,
        rows: list[list[int]],
        features: dict[str, torch.Tensor] | None,
        max_new_tokens: int,
        eos: int,
    ) -> list[list[int]]:
        """Greedy continuations of token rows under their soft prefixes (one batch, left-padded)."""
        emb = self.lm.get_input_embeddings()
        dtype = emb.weight.dtype
        pre = self.prefix(len(rows), features, dtype)
        T = pre.shape[1] + max(len(r) for r in rows)
        x = torch.zeros(len(rows), T, pre.shape[-1], dtype=dtype)
        att = torch.zeros(len(rows), T, dtype=torch.long)
        for b, r in enumerate(rows):  # left padding: every row's last token sits at the end
            seq = torch.cat([pre[b], emb(torch.tensor(r))], 0)
            x[b, T - len(seq) :] = seq
            att[b, T - len(seq) :] = 1
        out = self.lm.generate(
            inputs_embeds=x,
            attention_mask=att,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos,
        )
        ids = out.tolist()
        return [r[: r.index(eos)] if eos in r else r for r in ids]


def _encoder_dim(options: PPlugOptions, lm: Any) -> int:
    if options.encoder == "policy":
        return int(lm.config.hidden_size)
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(options.encoder).hidden_size)


@register_side_module("pplug", PPlugOptions, features="trainer.pplug:history_features")
def make_pplug(lm: Any, options: PPlugOptions) -> PPlugModule:
    return PPlugModule(lm, options, _encoder_dim(options, lm))


def _history(prompt: Any, options: PPlugOptions) -> list[str]:
    items = prompt.columns.get(options.history_field)
    if items is None:
        raise ValueError(
            f"data row {prompt.uid!r}: no {options.history_field!r} column "
            f"(side_module.options.history_field); columns: {sorted(prompt.columns)}"
        )
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise ValueError(f"data row {prompt.uid!r}: {options.history_field!r} must be a list of strings")
    return items[-options.max_history :]


def _input_text(prompt: Any, options: PPlugOptions) -> str:
    return str(prompt.columns[options.input_field]) if options.input_field else prompt.text


def history_features(options: PPlugOptions, ctx: FeatureContext) -> FeatureFn:
    """Driver side: every history item and input of the run's rows encoded once (disk cache), then per batch
    ``history`` [B, H, e], ``history_mask`` [B, H] and ``query`` [B, e] (H: the batch's longest history)."""
    if not options.use_history:
        return lambda samples: {}
    from rollout.text_encoder import TextEncoder

    path = ctx.model_path if options.encoder == "policy" else options.encoder
    enc = TextEncoder(path, options.cache_dir, max_tokens=options.encoder_max_tokens)
    texts = [t for p in ctx.prompts for t in _history(p, options)] + [
        _input_text(p, options) for p in ctx.prompts
    ]
    enc.precompute(texts)

    def build(samples: list[Any]) -> dict[str, torch.Tensor]:
        hists = [_history(s.prompt, options) for s in samples]
        H = max([len(h) for h in hists] + [1])
        e = enc.dim
        hist = torch.zeros(len(samples), H, e)
        mask = torch.zeros(len(samples), H)
        for b, h in enumerate(hists):
            if h:
                hist[b, : len(h)] = enc.encode(h)
                mask[b, : len(h)] = 1.0
        query = enc.encode([_input_text(s.prompt, options) for s in samples])
        return {"history": hist, "history_mask": mask, "query": query}

    return build
