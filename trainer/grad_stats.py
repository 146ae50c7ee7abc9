"""Per-prompt gradient moments for CurES's σ (the paper's estimator), run inside each learner via ``Learner.run``.

For every prompt (a group of rollouts with 0/1 verdicts) CurES needs E₁‖g‖², E₀‖g‖² and ‖E₁g − E₀g‖², where g
is the gradient of log π(response | prompt) w.r.t. the parameters and E₁/E₀ average over the correct / wrong
rollouts. The cross term needs the gradient *vectors*, not only their norms, so per-sample gradients of a
chosen parameter subset are computed one sample at a time (forward of that one row, ``torch.autograd.grad``
w.r.t. the subset) and summed per prompt and class; only the moments leave the learner.

``params`` picks the subset (only parameters that are trained count, so under LoRA the adapters); a one-element
list holding one of the two words means the word:
- ``"last_block"`` (default): the last decoder block, the final norm and an untied output head;
- ``"all"``: every trained parameter (the paper's full gradient);
- a list of ``fnmatch`` globs over ``named_parameters()`` names.

Cost per call: one forward of one row per sample plus one backward that stops at the earliest parameter of
the subset (for ``last_block`` the head and one block; for ``all`` a full backward), and two gradient-sized
float32 buffers per prompt. No parameter ``.grad`` is touched and no optimizer state moves.

ZeRO-3 is not supported here (the parameters are partitioned between ranks outside a module's forward);
CurES's ``embedding_norm`` estimator (trainer/grad_norms.py) works under every stage.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from trainer.batch import TrainBatch

_LAYER = re.compile(r"^(.*?\.)(\d+)\.")


def select_params(model: torch.nn.Module, spec: str | Sequence[str]) -> list[tuple[str, torch.nn.Parameter]]:
    """The trained parameters named by ``spec`` (see the module docstring), in model order."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("gradient statistics: the model has no trained parameters")
    if not isinstance(spec, str) and len(spec) == 1 and spec[0] in ("all", "last_block"):
        spec = spec[0]
    if spec == "all":
        return named
    if spec == "last_block":
        idx = [int(m.group(2)) for n, _ in named if (m := _LAYER.match(n))]
        if not idx:
            raise ValueError(
                "grad_params=last_block: no numbered layers (name.<i>.) in the model's parameters"
            )
        last = max(idx)
        # The last block plus everything that sits after the blocks (final norm, untied head): names without
        # a layer index. The embedding table sits *before* the blocks and is skipped unless it is the head too.
        embed = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
        out = []
        for n, p in named:
            m = _LAYER.match(n)
            if (m and int(m.group(2)) == last) or (not m and p is not embed):
                out.append((n, p))
        return out
    globs = [spec] if isinstance(spec, str) else list(spec)
    out = [(n, p) for n, p in named if any(fnmatch.fnmatch(n, g) for g in globs)]
    if not out:
        raise ValueError(f"grad_params={globs}: no trained parameter matches (e.g. {named[0][0]!r})")
    return out


def sample_gradient(
    model: Any,
    params: list[torch.nn.Parameter],
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Flat float32 ∇_params Σ_t mask[t]·log π(x_t | x_<t) for ONE unpadded row (``input_ids`` [T])."""
    with torch.enable_grad():
        logits = model(input_ids=input_ids[None], use_cache=False).logits[0, :-1].float()
        if temperature != 1.0:
            logits = logits / temperature
        lp = logits.gather(-1, input_ids[1:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
        lp = F.pad(lp, (1, 0))  # position t holds log π(x_t): the batch.py mask convention
        total = (lp * mask.to(lp.dtype)).sum()
        grads = torch.autograd.grad(total, params, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).float().reshape(-1) for g, p in zip(grads, params)]
    )


def group_moments(vectors: Iterable[torch.Tensor], correct: Sequence[bool]) -> dict[str, float]:
    """Moments of one prompt's per-sample gradients: counts, Σ‖g‖, Σ‖g‖² per class (1 = correct, 0 = wrong)
    and d2 = ‖mean₁ g − mean₀ g‖² (NaN unless both classes are present). ``vectors`` may be a generator: only
    the two class sums are kept. Pure; the unit tests call it."""
    out = {"n1": 0.0, "s1": 0.0, "q1": 0.0, "n0": 0.0, "s0": 0.0, "q0": 0.0, "d2": math.nan}
    sums: dict[int, torch.Tensor] = {}
    for g, c in zip(vectors, correct):
        k = 1 if c else 0
        norm = float(g.norm())
        out[f"n{k}"] += 1
        out[f"s{k}"] += norm
        out[f"q{k}"] += norm * norm
        sums[k] = sums[k] + g if k in sums else g.clone()
    if 0 in sums and 1 in sums:
        out["d2"] = float((sums[1] / out["n1"] - sums[0] / out["n0"]).pow(2).sum())
    return out


def prompt_grad_moments(
    learner: Any,
    batch: TrainBatch,
    groups: Sequence[int],
    correct: Sequence[bool],
    params: str | Sequence[str],
) -> list[tuple[int, dict[str, float]]]:
    """(group id, moments) for this rank's groups; runs in a learner actor.

    ``batch`` rows are samples, ``groups[row]`` their prompt, ``correct[row]`` the verdict; the gradient is
    of ``log π`` over ``batch.terms[0].mask`` (the generated tokens). Whole prompts go to one rank (the cross
    term needs all of a prompt's vectors), so nothing crosses ranks."""
    if getattr(learner.spec, "zero_stage", 0) == 3:
        raise NotImplementedError(
            "CurES sigma_estimator=gradient needs unpartitioned parameters: use trainer.zero_stage <= 2, "
            "or curriculum.options.sigma_estimator=embedding_norm under ZeRO-3"
        )
    model = learner.engine.module
    chosen = [p for _, p in select_params(model, params)]
    ids = sorted(set(groups))
    mine = ids[learner.rank :: learner.world]
    was_training = model.training
    model.eval()  # no dropout: the gradient of the policy that generated the samples
    out: list[tuple[int, dict[str, float]]] = []
    try:
        for gid in mine:
            rows = [r for r, g in enumerate(groups) if g == gid]

            def vectors(rows: list[int] = rows) -> Iterable[torch.Tensor]:
                for r in rows:
                    keep = batch.attention_mask[r].bool()
                    x = batch.input_ids[r][keep].to(learner.device)
                    m = batch.terms[0].mask[r][keep].to(learner.device)
                    yield sample_gradient(model, chosen, x, m, learner.spec.temperature)

            out.append((gid, group_moments(vectors(), [bool(correct[r]) for r in rows])))
    finally:
        model.train(was_training)
    return out
