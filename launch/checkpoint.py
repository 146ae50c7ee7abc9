"""Atomic checkpoints: ``<output_dir>/checkpoints/step_NNNNNN/`` holding

- ``model/``      HF folder (safetensors + tokenizer): loadable by transformers and vLLM,
- ``deepspeed/``  optimizer/scheduler shards of every learner rank,
- ``state.pt``    loop state: step, RNG states, curriculum and strategy state dicts.

A checkpoint is written into a hidden temporary folder and renamed into place only when complete,
then ``latest`` (a one-line file, replaced atomically) points at it. A crash mid-save therefore
never damages the previous checkpoint. (Multi-node runs need output_dir on a shared filesystem.)
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointManager:
    def __init__(self, output_dir: str, keep_last: int = 2, save_optimizer: bool = True) -> None:
        self.root = Path(output_dir) / "checkpoints"
        self.keep_last = keep_last
        self.save_optimizer = save_optimizer

    def latest(self) -> Path | None:
        ptr = self.root / "latest"
        if not ptr.is_file():
            return None
        path = self.root / ptr.read_text().strip()
        return path if (path / "state.pt").is_file() else None

    def save(self, step: int, learners, loop_state: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:06d}"
        tmp = self.root / f".tmp-{name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        learners.save(str(tmp), self.save_optimizer)
        state = {
            "step": step,
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
            **loop_state,
        }
        torch.save(state, tmp / "state.pt")
        final = self.root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        ptr_tmp = self.root / ".latest.tmp"
        ptr_tmp.write_text(name + "\n")
        os.replace(ptr_tmp, self.root / "latest")
        self._prune(keep=final)
        return final

    def _prune(self, keep: Path) -> None:
        done = sorted(p for p in self.root.glob("step_*") if p.is_dir())
        for old in done[: max(len(done) - self.keep_last, 0)]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def load_state(self, path: Path) -> dict[str, Any]:
        state = torch.load(path / "state.pt", weights_only=False)
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        return state
