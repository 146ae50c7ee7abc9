"""Metrics sinks: JSONL (always), TensorBoard, optional W&B, and a progress bar with reward and step time."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


class MetricsLogger:
    def __init__(
        self,
        output_dir: str,
        total_steps: int,
        start_step: int = 0,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_project: str = "forge-rl",
        progress: bool = True,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = (self.dir / "metrics.jsonl").open("a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.dir / "tensorboard"))
        self.wandb = None
        if wandb:
            import wandb as wb

            self.wandb = wb.init(project=wandb_project, dir=str(self.dir), config=config or {})
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)

    @classmethod
    def from_config(cls, cfg, start_step: int = 0) -> MetricsLogger:
        lg = cfg.logging
        return cls(
            cfg.output_dir,
            cfg.total_steps,
            start_step,
            lg.tensorboard,
            lg.wandb,
            lg.wandb_project,
            lg.progress,
        )

    def log(self, step: int, metrics: dict[str, float], advance: bool = True) -> None:
        clean = {
            k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))
        }
        self.jsonl.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in clean.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(clean, step=step)
        line = self.format_line(step, clean)
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"reward={clean.get('reward_mean', float('nan')):.3f} step={clean.get('time/step', 0):.1f}s"
            )
            if advance:
                self.bar.update(1)
            self.bar.write(line)
        else:
            print(line, flush=True)

    @staticmethod
    def format_line(step: int, m: dict[str, float]) -> str:
        parts = [f"step {step + 1}"]
        for key, label, fmt in [
            ("reward_mean", "reward", ".3f"),
            ("accuracy", "acc", ".3f"),
            ("response_len_mean", "len", ".1f"),
            ("dynamic/groups_kept", "kept", ".0f"),  # dynamic sampling: groups trained on, generation rounds
            ("dynamic/rounds", "rounds", ".0f"),
            ("kl", "kl", ".4f"),
            ("entropy", "ent", ".3f"),
            ("grad_norm", "gnorm", ".3f"),
            ("eval/accuracy", "eval_acc", ".3f"),
            ("eval/pref/accuracy", "eval_pref_acc", ".3f"),  # preference modes: held-out pairs
            ("eval/pref/margin", "eval_margin", ".3f"),
            ("eval/loss/nll", "eval_nll", ".3f"),  # sft
            ("data/skipped_rows", "skipped rows", ".0f"),  # data.skip_invalid, logged once before step 1
            ("async/staleness", "stale", ".0f"),  # async rollout: updates between generation and training
            ("time/generate", "gen", ".1f"),
            ("time/reward", "rwd", ".2f"),
            ("time/learner", "learn", ".1f"),
            ("time/weight_sync", "sync", ".2f"),
            ("time/step", "total", ".1f"),
        ]:
            if key in m and not (key in ("time/generate", "time/reward") and "reward_mean" not in m):
                parts.append(f"{label} {m[key]:{fmt}}")  # offline modes generate nothing: no gen/rwd
            if key == "response_len_mean":  # the loss terms of the step (offline modes have no reward)
                parts += [f"{k} {v:.4f}" for k, v in sorted(m.items()) if k.startswith("loss/")]
        return " | ".join(parts)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        if self.bar is not None:
            self.bar.close()
        if self.wandb is not None:
            self.wandb.finish()
