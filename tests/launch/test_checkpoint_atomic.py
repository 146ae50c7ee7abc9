"""A checkpoint writer killed mid-write (SIGKILL, in a child process) never damages the previous checkpoint."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import torch

from launch.checkpoint import CheckpointManager


class FileLearners:
    """Writes what a learner group writes (a model folder); ``die_after`` bytes into it, SIGKILLs itself."""

    def __init__(self, value: float, die_after: int | None = None) -> None:
        self.value, self.die_after = value, die_after

    def save(self, path: str, save_optimizer: bool = True) -> None:
        model = Path(path) / "model"
        model.mkdir(parents=True, exist_ok=True)
        data = torch.full((1024,), self.value).numpy().tobytes()
        with open(model / "weights.bin", "wb") as f:
            if self.die_after is not None:
                f.write(data[: self.die_after])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            f.write(data)


def _save_and_die(root: str, step: int) -> None:
    CheckpointManager(root).save(step, FileLearners(2.0, die_after=100), {"curriculum": {"k": step}})


def test_a_writer_killed_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    ckpt = CheckpointManager(str(tmp_path))
    ckpt.save(1, FileLearners(1.0), {"curriculum": {"k": 1}})
    for step in (2, 1):  # a new step, then the same step written again (the old copy must survive)
        child = multiprocessing.get_context("spawn").Process(target=_save_and_die, args=(str(tmp_path), step))
        child.start()
        child.join(60)
        assert child.exitcode == -signal.SIGKILL
        latest = CheckpointManager(str(tmp_path)).latest()
        assert latest is not None and latest.name == "step_000001"
        state = torch.load(latest / "state.pt", weights_only=False)
        assert state["step"] == 1 and state["curriculum"] == {"k": 1}
        weights = (latest / "model" / "weights.bin").read_bytes()
        assert len(weights) == 1024 * 4 and set(
            torch.frombuffer(bytearray(weights), dtype=torch.float32).tolist()
        ) == {1.0}
    # The next save cleans the debris and moves the pointer.
    assert ckpt.save(2, FileLearners(3.0), {"curriculum": {"k": 2}}).name == "step_000002"
    assert CheckpointManager(str(tmp_path)).latest().name == "step_000002"
    assert not list(tmp_path.glob("checkpoints/.tmp-*"))


def test_latest_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    ckpt = CheckpointManager(str(tmp_path))
    ckpt.save(1, FileLearners(1.0), {})
    ckpt.save(2, FileLearners(2.0), {})
    (ckpt.root / "step_000002" / "state.pt").unlink()  # as if the folder were half-replaced
    assert ckpt.latest().name == "step_000001"
