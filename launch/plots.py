"""PNG plots of a run from its ``metrics.jsonl``: reward and accuracy, response length, step-time breakdown.

``plot_run(output_dir) -> [paths]`` (empty when matplotlib is missing or nothing was logged). Called at the end
of ``launch.train``; also ``python -m launch.plots RUN_DIR`` for a finished or running run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TIME_PARTS = (
    ("time/generate", "generate"),
    ("time/reward", "reward"),
    ("time/learner", "learner"),
    ("time/weight_sync", "weight sync"),
)


def _rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written by a live run
    return rows


def plot_run(output_dir: str | Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out = Path(output_dir)
    metrics = out / "metrics.jsonl"
    if not metrics.is_file():
        return []
    rows = _rows(metrics)
    train = [r for r in rows if "num_samples" in r and r.get("step", -1) >= 0]
    evals = [r for r in rows if "eval/accuracy" in r]
    if not train:
        return []
    steps = [r["step"] + 1 for r in train]
    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    paths: list[Path] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        path = folder / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key, label in (("reward_mean", "reward (train)"), ("accuracy", "accuracy (train)")):
        pts = [(s, r[key]) for s, r in zip(steps, train) if r.get(key) is not None and r[key] == r[key]]
        if pts:
            ax.plot(*zip(*pts), label=label)
    if evals:
        ax.plot(
            [0 if r["step"] < 0 else r["step"] + 1 for r in evals],
            [r["eval/accuracy"] for r in evals],
            "o-",
            label="accuracy (held-out, greedy)",
        )
    ax.set(xlabel="step", title="Reward and accuracy")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
        save(fig, "reward_accuracy.png")
    else:  # offline modes (sft, preference) have no reward or generated accuracy to draw
        plt.close(fig)

    length_key = next(
        (k for k in ("response_len_mean", "response_length_mean", "len_mean") if k in train[0]), None
    )
    if length_key:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(steps, [r.get(length_key) for r in train])
        ax.set(xlabel="step", ylabel="tokens", title="Response length (mean)")
        save(fig, "response_length.png")

    parts = [(k, label) for k, label in TIME_PARTS if any(k in r for r in train)]
    if parts:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        bottom = [0.0] * len(train)
        for k, label in parts:
            vals = [float(r.get(k, 0.0)) for r in train]
            ax.bar(steps, vals, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set(xlabel="step", ylabel="seconds", title="Step time")
        ax.legend(fontsize=8)
        save(fig, "step_time.png")
    return paths


if __name__ == "__main__":
    for p in plot_run(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(p)
