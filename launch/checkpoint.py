"""Atomic checkpoints: ``<output_dir>/checkpoints/step_NNNNNN/`` holding

- ``model/``      HF folder (safetensors + tokenizer): loadable by transformers and vLLM,
- ``deepspeed/``  optimizer/scheduler shards of every learner rank,
- ``state.pt``    loop state: step, RNG states, curriculum and strategy state dicts.

A checkpoint is written into a hidden temporary folder and renamed into place only when complete,
then ``latest`` (a one-line file, replaced atomically) points at it. A crash mid-save therefore
never damages the previous checkpoint. (Multi-node runs need output_dir on a shared filesystem.)

With ``checkpoint.best_metric`` set, :meth:`CheckpointManager.keep_best` runs after each evaluation and, when
the metric beats the best so far (``best_mode`` max or min), writes ``checkpoints/best/`` holding ``model/``
and ``best.json`` (metric, mode, value, step) the same way: into a temporary folder, then swapped in by two
renames (the old copy is moved aside first and deleted last), so a crash leaves the old or the new copy. The
best value so far is read back from ``best.json``, so a resumed run keeps comparing against it. No optimizer
state: the copy is for evaluation and deployment, resuming uses ``latest``.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointManager:
    def __init__(
        self,
        output_dir: str,
        keep_last: int = 2,
        save_optimizer: bool = True,
        best_metric: str | None = None,
        best_mode: str = "max",
    ) -> None:
        if best_mode not in ("max", "min"):
            raise ValueError(f"checkpoint.best_mode: {best_mode!r} is not max or min")
        self.root = Path(output_dir) / "checkpoints"
        self.keep_last = keep_last
        self.save_optimizer = save_optimizer
        self.best_metric = best_metric
        self.best_mode = best_mode

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` points to; if that one is incomplete or gone (a crash mid-replace), the
        newest complete ``step_*`` folder (``state.pt`` is written last, so its presence means complete)."""
        self._recover()
        ptr = self.root / "latest"
        if ptr.is_file():
            path = self.root / ptr.read_text().strip()
            if (path / "state.pt").is_file():
                return path
        done = sorted(p for p in self.root.glob("step_*") if (p / "state.pt").is_file())
        return done[-1] if done else None

    def _recover(self) -> None:
        """After a crash mid-save: an old copy moved aside but not replaced goes back into place."""
        for old in self.root.glob(".old-step_*"):
            final = self.root / old.name[len(".old-") :]
            if not final.exists() and (old / "state.pt").is_file():
                os.replace(old, final)

    def save(self, step: int, learners, loop_state: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self._recover()
        for stale in self.root.glob(".tmp-step_*"):  # writes that were killed: never complete, never read
            shutil.rmtree(stale, ignore_errors=True)
        name = f"step_{step:06d}"
        tmp = self.root / f".tmp-{name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        learners.save(str(tmp), self.save_optimizer)
        state = {
            "step": step,
            "rng": {
                "python": random.getstate(),
                # plain Python values and tensors only, so that state.pt loads with weights_only=True (no pickle)
                "numpy": _numpy_state_to_plain(np.random.get_state()),
                "torch": torch.get_rng_state(),
            },
            **loop_state,
        }
        torch.save(state, tmp / "state.pt")
        final = self.root / name
        old = self.root / f".old-{name}"
        if (
            final.exists()
        ):  # saving a step again: move the old copy aside first, drop it once the new one is in
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
        ptr_tmp = self.root / ".latest.tmp"
        ptr_tmp.write_text(name + "\n")
        os.replace(ptr_tmp, self.root / "latest")
        self._prune(keep=final)
        return final

    def best(self) -> dict[str, Any] | None:
        """The record of ``checkpoints/best`` (metric, mode, value, step), or None when there is none."""
        if (self.root / ".old-best").is_dir() and not (self.root / "best").exists():
            os.replace(self.root / ".old-best", self.root / "best")  # a crash between the two renames
        try:
            return json.loads((self.root / "best" / "best.json").read_text())
        except (OSError, ValueError):
            return None

    def is_better(self, value: float, best: float | None) -> bool:
        if not math.isfinite(value):
            return False
        return best is None or (value > best if self.best_mode == "max" else value < best)

    def keep_best(self, step: int, metrics: dict[str, float], learners) -> dict[str, float]:
        """After an eval: copy the model to ``checkpoints/best`` when ``best_metric`` improved.

        Returns ``{"best/<metric>": best value so far}`` for the log ({} when no best metric is set or
        this eval did not produce it).
        """
        if self.best_metric is None or self.best_metric not in metrics:
            return {}
        value = float(metrics[self.best_metric])
        rec = self.best()
        same = rec is not None and (rec.get("metric"), rec.get("mode")) == (self.best_metric, self.best_mode)
        prev = rec["value"] if same else None
        if self.is_better(value, prev):
            self._write_best(step, value, learners)
            prev = value
        return {} if prev is None else {f"best/{self.best_metric}": float(prev)}

    def _write_best(self, step: int, value: float, learners) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp, final, old = self.root / ".tmp-best", self.root / "best", self.root / ".old-best"
        for p in (tmp, old):
            if p.exists():
                shutil.rmtree(p)
        learners.save(str(tmp), False)  # model/ only
        rec = {"metric": self.best_metric, "mode": self.best_mode, "value": value, "step": step}
        (tmp / "best.json").write_text(json.dumps(rec) + "\n")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def _prune(self, keep: Path) -> None:
        done = sorted(p for p in self.root.glob("step_*") if p.is_dir())
        for old in done[: max(len(done) - self.keep_last, 0)]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def load_state(self, path: Path) -> dict[str, Any]:
        """The loop state of a checkpoint, read with ``weights_only=True``: tensors and plain Python values only,
        nothing is unpickled (a checkpoint folder may come from elsewhere)."""
        try:
            state = torch.load(path / "state.pt", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(
                f"{path / 'state.pt'}: holds objects other than tensors and plain values, so it is not loaded "
                f"(checkpoints from before 2026-12-02 stored numpy arrays; start afresh) ({str(e).splitlines()[0]})"
            ) from None
        random.setstate(_as_tuples(state["rng"]["python"]))
        np.random.set_state(_numpy_state_from_plain(state["rng"]["numpy"]))
        torch.set_rng_state(state["rng"]["torch"])
        return state


def _numpy_state_to_plain(st: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = st
    return (
        str(name),
        torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        int(pos),
        int(has_gauss),
        float(cached),
    )


def _numpy_state_from_plain(st: tuple | list) -> tuple:
    name, keys, pos, has_gauss, cached = st
    return (
        name,
        np.asarray(keys.numpy() if isinstance(keys, torch.Tensor) else keys, dtype=np.uint32),
        pos,
        has_gauss,
        cached,
    )


def _as_tuples(x: Any) -> Any:
    """random.setstate wants tuples; a weights_only load may hand lists back."""
    return tuple(_as_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x
