"""Per-token log-probs (and entropies) of a causal LM, computed only where a loss reads them.

The learner's hot path. :func:`token_logprobs` returns ``[B, T]`` in the batch layout (trainer/batch.py:
column ``t`` holds log p(input_ids[t] | input_ids[:t]), column 0 is 0). What keeps it cheap:

1. Logits only where needed: the model returns its last hidden states (``output_hidden_states`` with
   ``logits_to_keep=1``, so its own head runs on one position) and the LM head is applied to the ``needed``
   positions only (the union of the loss terms' masks: response tokens, not prompts or padding).
2. Chunks: head → fp32 → logsumexp → gather runs over chunks of positions, so ``[B, T, V]`` fp32 logits
   never exist at once (optionally each chunk under ``torch.utils.checkpoint``: memory bounded by one chunk).
3. Trimmed columns: the model reads columns up to the last needed target only (a causal LM's earlier
   positions do not see later ones), so a micro-batch of short rows runs at its own length.
4. Entropy from the same chunk's logits under ``no_grad`` (no second pass over the vocabulary).

Models whose logits are not ``head(last hidden state)`` fall back to the model's full logits (still sliced,
chunked and trimmed): a head that is not a plain ``nn.Linear`` (e.g. LoRA on ``lm_head``), a ZeRO-3
partitioned head (the head must run inside the model's forward there, once per forward on every rank), a
forward without ``logits_to_keep``, or logits post-processed after the head (soft-capping, scaling: checked
once per model against the model's own last-position logits).
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

import torch
from torch import nn

from trainer.lora import AdapterDisabledReference

# Logits per chunk (positions × vocabulary): 2^24 fp32 = 64 MiB (341 positions at SmolLM2's 49k vocabulary).
CHUNK_ELEMENTS = 1 << 24

# inner module -> its LM head when the hidden-state path is usable (None: use the model's logits), and
# whether that was checked against the model's own logits yet.
_HEADS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Linear | None, bool]] = weakref.WeakKeyDictionary()


def token_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
    features: dict[str, torch.Tensor] | None = None,
    *,
    needed: torch.Tensor | None = None,
    chunk_size: int | None = None,
    checkpoint: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs ``[B, T]`` fp32 in the batch layout (column 0 is 0), optionally the entropy.

    ``needed``: ``[B, T]`` (bool or float, batch layout) — the targets whose log-prob is wanted; other
    positions come back as 0 (entropy too). ``None``: every column 1..T-1, as a plain full pass.
    ``features``: per-row inputs of a side module (TrainBatch.features); plain HF models take none.
    ``chunk_size``: positions per chunk (default: :data:`CHUNK_ELEMENTS` / vocabulary).
    ``checkpoint``: recompute each chunk's logits in backward instead of keeping them.
    """
    B, T = input_ids.shape
    dev = input_ids.device
    need = torch.ones(B, T, dtype=torch.bool, device=dev) if needed is None else needed.to(dev) > 0
    need[:, 0] = False
    cols_any = need.any(0).nonzero()
    last = int(cols_any.max()) if cols_any.numel() else 0  # last needed target column
    L = max(last, 1)  # the model reads columns 0..L-1, whose outputs predict targets 1..L
    rows, cols = need[:, 1 : L + 1].nonzero(as_tuple=True)
    dummy = rows.numel() == 0
    if dummy:
        # Nothing needed (an empty or fully masked micro-batch): one position still goes through the head
        # and into column 0 times 0, so every parameter sits in the graph as before (ZeRO's gradient
        # collectives must see the same parameters on every rank).
        rows = cols = torch.zeros(1, dtype=torch.long, device=dev)
        targets = input_ids[:1, 0]
    else:
        targets = input_ids[rows, cols + 1]
    src, head = _hidden_or_logits(model, input_ids[:, :L], attention_mask[:, :L], features)
    vocab = head.out_features if head is not None else src.shape[-1]
    chunk = chunk_size or max(1, CHUNK_ELEMENTS // vocab)
    lp, ent = _chunked(src, rows, cols, targets, head, temperature, with_entropy, chunk, checkpoint)
    out = lp.new_zeros(B, T)
    if dummy:
        out = out.index_put((rows, cols), lp * 0.0)
        return out, (out.detach().clone() if with_entropy else None)
    out = out.index_put((rows, cols + 1), lp)
    ent_out = None
    if with_entropy:
        ent_out = torch.zeros(B, T, dtype=torch.float32, device=dev)
        ent_out[rows, cols + 1] = ent
    return out, ent_out


def _chunked(
    src: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    targets: torch.Tensor,
    head: nn.Module | None,
    temperature: float,
    with_entropy: bool,
    chunk: int,
    checkpoint: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs ``[N]`` (and entropies) of ``src[rows, cols]`` (hidden states through ``head``, or logits)."""
    lps, ents = [], []
    ckpt = checkpoint and torch.is_grad_enabled() and src.requires_grad
    for i in range(0, rows.numel(), chunk):
        r, c, t = rows[i : i + chunk], cols[i : i + chunk], targets[i : i + chunk]
        if ckpt:
            from torch.utils.checkpoint import checkpoint as run_checkpointed

            first: list[torch.Tensor | None] = []

            def fn(x, r=r, c=c, t=t, first=first):
                lp, ent = _chunk(x[r, c], t, head, temperature, with_entropy and not first)
                first.append(ent)  # the recomputation in backward skips the (no-grad) entropy
                return lp

            lp, ent = run_checkpointed(fn, src, use_reentrant=False), first[0]
        else:
            lp, ent = _chunk(src[r, c], t, head, temperature, with_entropy)
        lps.append(lp)
        ents.append(ent)
    lp = lps[0] if len(lps) == 1 else torch.cat(lps)
    ent = None if not with_entropy else (ents[0] if len(ents) == 1 else torch.cat(ents))  # type: ignore[arg-type]
    return lp, ent


def _chunk(
    x: torch.Tensor, targets: torch.Tensor, head: nn.Module | None, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    logits = (x if head is None else head(x)).float()
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, -1)
    lp = logits.gather(-1, targets[:, None]).squeeze(-1) - lse
    ent = None
    if with_entropy:
        with torch.no_grad():
            p = torch.softmax(logits, -1)
            ent = lse - torch.bmm(p[:, None, :], logits[:, :, None]).view(-1)
    return lp, ent


def _hidden_or_logits(
    model: Any, ids: torch.Tensor, att: torch.Tensor, features: dict[str, torch.Tensor] | None
) -> tuple[torch.Tensor, nn.Linear | None]:
    """(last hidden states ``[B, L, H]``, the LM head) when the model allows it, else (logits ``[B, L, V]``, None)."""
    extra: dict[str, Any] = {"features": features} if features else {}
    inner = _unwrap(model)
    if not isinstance(inner, nn.Module):
        return model(input_ids=ids, attention_mask=att, use_cache=False, **extra).logits, None
    if inner not in _HEADS:
        _HEADS[inner] = (_plain_head(inner), False)
    head, checked = _HEADS[inner]
    if head is not None:
        out = model(
            input_ids=ids,
            attention_mask=att,
            use_cache=False,
            output_hidden_states=True,
            logits_to_keep=1,
            **extra,
        )
        hidden = out.hidden_states[-1] if out.hidden_states is not None else None
        if not checked:
            ok = hidden is not None and _same_logits(head, hidden, out.logits)
            _HEADS[inner] = (head if ok else None, True)
            if not ok:
                return _hidden_or_logits(model, ids, att, features)
        return hidden, head
    return model(input_ids=ids, attention_mask=att, use_cache=False, **extra).logits, None


@torch.no_grad()
def _same_logits(head: nn.Linear, hidden: torch.Tensor, logits: torch.Tensor) -> bool:
    """Whether the model's own (last-position) logits are ``head(last hidden state)``."""
    mine = head(hidden[:, -1:]).float()
    theirs = logits[:, -1:].float()
    return mine.shape == theirs.shape and bool(torch.allclose(mine, theirs, rtol=1e-3, atol=1e-3))


def _unwrap(model: Any) -> Any:
    """The module that owns the LM head: through the LoRA reference, DeepSpeed engine (or DDP) and peft."""
    m = model
    for _ in range(8):
        if isinstance(m, AdapterDisabledReference):
            m = m.engine
        elif isinstance(getattr(m, "module", None), nn.Module):  # DeepSpeedEngine, DistributedDataParallel
            m = m.module
        elif callable(getattr(m, "get_base_model", None)):  # peft
            m = m.get_base_model()
        else:
            break
    return m


def _plain_head(inner: Any) -> nn.Linear | None:
    get = getattr(inner, "get_output_embeddings", None)
    forward = getattr(inner, "forward", None)
    if not callable(get) or forward is None:
        return None
    try:
        if "logits_to_keep" not in inspect.signature(forward).parameters:
            return None
    except (TypeError, ValueError):
        return None
    head = get()
    if type(head) is not nn.Linear or hasattr(head.weight, "ds_id"):  # adapters on the head / ZeRO-3
        return None
    return head
