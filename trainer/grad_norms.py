"""Per-sample gradient norms for CurES's σ estimate, run inside each learner through ``Learner.run``.

``sample_grad_norms(learner, batch)`` returns, for this rank's rows ``rank::world`` of ``batch``, the norm of
the gradient of ``−Σ_{t∈mask} log π(x_t | x_<t)`` (mask = ``batch.terms[0].mask``, normally the generated
tokens) with respect to the token embeddings. Call it from the driver as
``learners.call("run", "trainer.grad_norms:sample_grad_norms", batch)`` with the batch padded to a multiple of
the world size (every rank must run the same number of forwards under ZeRO-3).

How: the embedding lookup is done outside the model and its output is fed back as ``inputs_embeds`` with
``requires_grad``; ``torch.autograd.grad`` w.r.t. those embeddings only. No parameter ``.grad`` is
touched and no optimizer state moves, and because the gradient is taken w.r.t. the embedding *outputs*
(activations), the code is the same under ZeRO 0–3 (partitioned parameters are gathered by DeepSpeed's
module hooks as in any forward). The per-position gradients are then summed per token id, which is exactly
the input-path part of the gradient of the embedding *table* restricted to the rows the sample uses — the
authors' cheap estimator ("gradient w.r.t. the token embedding only"). With tied embeddings the output-head
path of the same matrix is not included.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from trainer.batch import TrainBatch


def _row_table_norm(ids: torch.Tensor, grads: torch.Tensor, keep: torch.Tensor) -> float:
    """‖Σ_{pos: id=v} g_pos‖ over token ids v, for one row (``keep`` marks real tokens)."""
    ids, grads = ids[keep], grads[keep]
    uniq, inv = torch.unique(ids, return_inverse=True)
    table = torch.zeros((len(uniq), grads.shape[-1]), dtype=grads.dtype, device=grads.device)
    table.index_add_(0, inv, grads)
    return float(table.norm())


def embedding_grad_norms(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> list[float]:
    """Per-row norms ``[B]`` of ∇_{token embeddings} of −Σ_t mask[b,t]·log π(x_t). Pure torch (tests call it)."""
    embed = model.get_input_embeddings()
    with torch.no_grad():
        base = embed(input_ids)
    emb = base.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs_embeds=emb, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
        logits = logits.float()
        if temperature != 1.0:
            logits = logits / temperature
        lp = logits.gather(-1, input_ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
        lp = F.pad(lp, (1, 0))
        # Rows are independent (no cross-row attention), so one backward of the sum gives every row's gradient.
        loss = -(lp * mask.to(lp.dtype)).sum()
        (g,) = torch.autograd.grad(loss, emb)
    keep = attention_mask.bool()
    return [_row_table_norm(input_ids[b], g[b].float(), keep[b]) for b in range(input_ids.shape[0])]


def sample_grad_norms(learner: Any, batch: TrainBatch) -> list[tuple[int, float]]:
    """(row index in ``batch``, gradient norm) for this rank's rows ``rank::world``; runs in a learner actor."""
    rows = list(range(learner.rank, batch.num_rows, learner.world))
    mine = batch.select(rows)
    model = learner.engine.module
    was_training = model.training
    model.eval()
    mb = learner.spec.micro_batch_size
    out: list[tuple[int, float]] = []
    try:
        for start in range(0, len(rows), mb):
            micro = mine.select(range(start, min(start + mb, len(rows))))
            norms = embedding_grad_norms(
                model,
                micro.input_ids.to(learner.device),
                micro.attention_mask.to(learner.device),
                micro.terms[0].mask.to(learner.device),
                learner.spec.temperature,
            )
            out += list(zip(rows[start : start + len(norms)], norms))
    finally:
        model.train(was_training)
    return out
