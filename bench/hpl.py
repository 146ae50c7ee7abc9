"""HPL evidence on held-out TextWorld games: SFT (BC) vs ETO-style trajectory DPO vs HPL, and HPL's groupings.

    python bench/hpl.py [--seeds 0 1 2] [--segmentations fixed_length,fixed_count,entropy]
        [--recipe recipes/hpl_textworld_tiny_cpu.yaml] [--games runs/textworld] [--work runs/bench_hpl]
        [--k 8] [--render-only] [-o KEY=VALUE ...]

Per seed, one ``python -m launch.hpl`` pipeline (launch/hpl.py) in ``--work/seed<S>``: expert replay, BC (π_ref),
π_ref trajectories, MC step values and, per segmentation, negative groups and group values; then every arm trains
from that seed's π_ref with the recipe's steps, units per step, learning rate and β, and plays each held-out game
once, greedily; with ``--k K`` also K times at T = 1 (``python -m launch.eval --task episodes``: success avg@K,
pass@K — 20 games make a coarse greedy number, the samples a finer one). What differs between arms is only the loss terms (``strategy.options.weights``): ``sft`` = BC
continued, ``eto`` = BC + trajectory DPO, ``hpl-<seg>`` = BC + trajectory + step + group DPO with the dual-layer
curriculum over that segmentation's groups. ``ref`` is π_ref itself (the BC stage). A step draws the same number
of units in every arm; a pair unit is two rows, so the DPO arms process more tokens per step (stated in the
table). The games are generated once (TextWorld's generator, ``--games``: 120 train / 20 held-out, seed 0) if
missing; the seed changes π_ref's BC order, every sampled episode and every arm's data order.

Writes ``bench/RESULTS_hpl.md`` (table, commands, data statistics, sample transcripts), ``bench/results_hpl.json``
(per seed and arm: metrics, the resolved recipe, overrides, git commit, package versions) and ``bench/hpl.png``.
``--render-only`` rebuilds them from the eval files already in ``--work``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import mean_std, provenance, pyplot  # noqa: E402

ARM_ORDER = ("ref", "sft", "eto")


def _ms(values: list[float], digits: int = 3) -> str:
    """mean ± sample std over seeds; a single seed is shown as its value alone (no spread to report)."""
    return mean_std(values, digits) if len(values) > 1 else (f"{values[0]:.{digits}f}" if values else "–")


def _last_losses(run: Path, last: int = 3) -> dict[str, float]:
    """Mean of each loss term over the run's last ``last`` steps (did the preference terms move off log 2?)."""
    f = run / "metrics.jsonl"
    if not f.is_file():
        return {}
    rows = [r for r in (json.loads(x) for x in f.read_text().splitlines()) if "loss/bc" in r][-last:]
    keys = {k for r in rows for k in r if k.startswith("loss/")}
    return {k: sum(r[k] for r in rows if k in r) / max(sum(k in r for r in rows), 1) for k in sorted(keys)}


def _arms(seed_dir: Path, folder: str = "eval") -> dict[str, dict]:
    out = {}
    for f in sorted((seed_dir / folder).glob("*.json")):
        out[f.stem] = json.loads(f.read_text())
    return out


def _sampled_evals(args: argparse.Namespace, seed_dir: Path) -> list[str]:
    """``--k``: every evaluated arm also plays each held-out game K times at the recipe's T; returns the
    commands run (an arm whose file exists is skipped)."""
    cmds = []
    arms = _order(set(_arms(seed_dir)))
    # π_ref's run (the BC stage) records the build section it was made under, which a resumed pipeline may have
    # changed since (turn cap, pool); the arms' run recipes hold the current one: π_ref is played as they are.
    how = next((seed_dir / a / "recipe.yaml" for a in arms if (seed_dir / a / "recipe.yaml").is_file()), None)
    for arm in arms:
        out = seed_dir / f"eval_k{args.k}" / f"{arm}.json"
        run = seed_dir / ("bc" if arm == "ref" else arm)
        cmd = [sys.executable, "-m", "launch.eval", "--task", "episodes", str(run), "--k", str(args.k)]
        cmd += ["--out", str(out)] + (["--recipe", str(how)] if arm == "ref" and how else [])
        if out.is_file():
            continue
        cmds.append(" ".join(["python", *cmd[1:]]))
        print(f"[bench] {cmds[-1]}", flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return cmds


def _run_resuming(cmd: list[str], log: Path, retries: int = 1) -> None:
    """Run the pipeline; if the process is killed by a signal, run it again (it resumes at the unfinished stage).

    Why: the environments run in the pipeline's own process (``build.pool: local``), so a native crash of a
    simulator kills the pipeline (a NUL byte in a sampled action segfaulted jericho until the TextWorld adapter
    began replacing control bytes); a rerun loses only the unfinished stage. Every retry is written to the seed's
    command log."""
    for attempt in range(retries + 1):
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc == 0:
            return
        if rc > 0 or attempt == retries:
            raise subprocess.CalledProcessError(rc, cmd)
        note = f"# attempt {attempt + 1} killed by signal {-rc}: rerun (resumes)"
        print(f"[bench] {note}", flush=True)
        with log.open("a") as fh:
            fh.write(note + "\n")


def _counts(seed_dir: Path) -> dict[str, int]:
    data = seed_dir / "data"
    out = {}
    for f in sorted(data.glob("*.jsonl")):
        if f.stem.startswith(("units_hpl", "units_eto", "units_sft")) or f.stem.endswith("episodes"):
            continue
        out[f.stem] = sum(1 for _ in f.open())
    return out


def _loss_cell(work: Path, seeds: list[int], arm: str) -> str:
    if arm == "ref":
        return "–"
    per = [_last_losses(work / f"seed{s}" / arm) for s in seeds]
    keys = sorted({k for p in per for k in p})
    return ", ".join(
        f"{k[5:]} {sum(p[k] for p in per if k in p) / sum(k in p for p in per):.3f}" for k in keys
    )


def _order(names: set[str]) -> list[str]:
    return [a for a in ARM_ORDER if a in names] + sorted(n for n in names if n not in ARM_ORDER)


def _ensure_games(games: Path) -> None:
    if (games / "train.jsonl").is_file() and (games / "test.jsonl").is_file():
        return
    cmd = [sys.executable, "-m", "rollout.envs.textworld_env", "make", "--out", str(games)]
    cmd += ["--train", "120", "--heldout", "20", "--seed", "0"]
    print("[bench] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def render(args: argparse.Namespace, commands: list[str], wall: dict[int, float]) -> None:
    work = Path(args.work)
    seeds = [s for s in args.seeds if (work / f"seed{s}" / "eval").is_dir()]
    per = {s: _arms(work / f"seed{s}") for s in seeds}
    k = args.k
    per_k = {s: _arms(work / f"seed{s}", f"eval_k{k}") for s in seeds} if k else {}
    names = _order(set().union(*[set(v) for v in per.values()]) if per else set())
    rows = []
    for a in names:
        got = [per[s][a]["metrics"] for s in seeds if a in per[s]]
        got_k = [per_k[s][a]["metrics"] for s in seeds if a in per_k.get(s, {})]
        row = [a, str(len(got)), _ms([m["env/success_rate"] for m in got])]
        if k:
            row += [
                f"{_ms([m[f'env/success_avg@{k}'] for m in got_k])} ({len(got_k)})",
                _ms([m[f"env/success_pass@{k}"] for m in got_k]),
            ]
        row += [
            _ms([m["env/return_mean"] for m in got]),
            _ms([m["env/invalid_action_frac"] for m in got]),
            _ms([m["env/turns_mean"] for m in got], 2),
            _loss_cell(work, seeds, a),
        ]
        rows.append(row)
    counts = {s: _counts(work / f"seed{s}") for s in seeds}
    from launch.config import load_recipe
    from launch.setup import resolve_dtype

    cfg = load_recipe(args.recipe, [*_overrides(args, 0), "data.source=arithmetic"])
    resolve_dtype(cfg)
    from omegaconf import OmegaConf

    resolved = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    n_tasks = next((per[s][a]["eval_tasks"] for s in seeds for a in per[s]), 0)
    lines = [
        "# HPL on held-out TextWorld games (bench/hpl.py)",
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count()} CPUs); seeds {seeds}.",
        "",
        f"Model {cfg.model.path} ({cfg.model.dtype}); {n_tasks} held-out games, one greedy episode each, at most "
        f"{cfg.strategy.options['build']['max_turns']} actions. Every arm starts from its seed's π_ref (BC, "
        f"{cfg.strategy.options['build']['bc_steps']} steps) and trains {cfg.total_steps} steps of "
        f"{cfg.curriculum.prompts_per_step} units at lr {cfg.trainer.lr}, β {cfg.strategy.options['beta']}; a "
        "pair unit is two rows, so DPO arms see more tokens per step. Mean ± sample std over seeds (one seed: "
        "its value). Each held-out game is 0.05 of the success rate. The DPO losses start at log 2 = 0.693.",
        "",
        f"Departures from METHODS.md §4 for a 2-core budget (the recipe's `build`): step values from "
        f"{cfg.strategy.options['build']['step_mc']} and group values from "
        f"{cfg.strategy.options['build']['group_mc']} Monte-Carlo completions (paper: 4 and 5), up to "
        f"{cfg.strategy.options['build']['negatives']} negative groups (paper: 3), pairs from the first "
        f"{cfg.strategy.options['build']['pair_tasks']} training games (BC uses all), β 0.3 at lr "
        f"{cfg.trainer.lr} (paper: 3e-6 for a 7B model).",
        "",
    ]
    head = ["arm", "seeds", "success rate (greedy)"]
    head += [f"success avg@{k}, T = 1 (seeds)", f"success pass@{k}"] if k else []
    head += ["mean final reward", "invalid actions", "turns", "losses, last 3 steps"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [
        "",
        "Arms: `ref` = π_ref (BC stage); `sft` = BC continued; `eto` = BC + trajectory DPO (ETO-style); "
        "`hpl-<segmentation>` = BC + trajectory + step + group DPO, dual-layer curriculum over that segmentation's "
        "groups. Success = the game's quest completed; reward = the final normalised score (greedy episodes)."
        + (
            f" avg@{k} / pass@{k}: each held-out game played {k} times at T = 1 (`launch.eval --task episodes`); "
            "avg@k = mean success of the samples, pass@k = unbiased estimate that one of k succeeds."
            if k
            else ""
        ),
        "",
        "## Data per seed (units written by the pipeline's stages)",
        "",
    ]
    for s in seeds:
        lines.append(f"- seed {s}: " + ", ".join(f"{k} {v}" for k, v in counts[s].items()))
    ran = []
    for s in seeds:
        f = work / f"seed{s}" / "bench_commands.txt"
        ran += f.read_text().splitlines() if f.is_file() else []
    lines += ["", "## Commands (as run, per seed; a rerun skips the stages it finds done)", ""]
    lines += [f"    {c}" for c in (ran or commands)] + [""]
    if wall:
        lines += [
            "Wall time of this invocation: "
            + ", ".join(f"seed {s} {w / 60:.0f} min" for s, w in wall.items())
        ]
        lines.append("")
    # What the agents wrote: the first held-out game of the first seed, per arm.
    if seeds:
        lines += [f"## Sample transcripts (seed {seeds[0]}, first held-out game, greedy)", ""]
        for a in names:
            ep = per[seeds[0]].get(a, {}).get("episodes", [None])[0]
            if ep:
                acts = " → ".join(t["action"][:40] for t in ep["turns"])
                lines.append(f"- {a} ({ep['status']}, return {ep['return']}): {acts}")
        lines.append("")
    out = ROOT / "bench" / "RESULTS_hpl.md"
    out.write_text("\n".join(lines))
    result = {
        "seeds": seeds,
        "arms": {a: {str(s): per[s][a]["metrics"] for s in seeds if a in per[s]} for a in names},
        "arms_sampled": {
            a: {str(s): per_k[s][a]["metrics"] for s in seeds if a in per_k.get(s, {})} for a in names
        },
        "k": k,
        "data_counts": {str(s): counts[s] for s in seeds},
        "commands": commands,
        "overrides": _overrides(args, 0),
        "recipe": args.recipe,
        "resolved_recipe": resolved,
        **provenance(),
    }
    (ROOT / "bench" / "results_hpl.json").write_text(json.dumps(result, indent=1) + "\n")
    plt = pyplot()
    if plt is not None and rows:
        import statistics

        fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.4))
        series = [("env/success_rate", per, "greedy")]
        if k:
            series.append((f"env/success_avg@{k}", per_k, f"avg@{k}, T = 1"))
        width = 0.8 / len(series)
        for j, (key, src, label) in enumerate(series):
            means, errs = [], []
            for a in names:
                v = [src[s][a]["metrics"][key] for s in seeds if a in src.get(s, {})]
                means.append(statistics.mean(v) if v else 0.0)
                errs.append(statistics.stdev(v) if len(v) > 1 else 0.0)
            xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, means, width, yerr=errs, capsize=3, label=label)
        # Arms differ in how many seeds they have: the count is part of the label, never hidden.
        counts = [sum(a in per[s] for s in seeds) for a in names]
        ax.set_xticks(range(len(names)), [f"{a}\n({n} seeds)" for a, n in zip(names, counts)])
        ax.set_ylabel("held-out success rate")
        ax.set_title("TextWorld, 20 held-out games; mean ± std over seeds")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(ROOT / "bench" / "hpl.png", dpi=110)
    print("\n".join(lines[: 10 + len(rows)]))
    print(f"wrote {out}, bench/results_hpl.json, bench/hpl.png")


def _overrides(args: argparse.Namespace, seed: int) -> list[str]:
    games = Path(args.games).resolve()
    return [
        f"seed={seed}",
        f"strategy.options.build.tasks={games / 'train.jsonl'}",
        f"strategy.options.build.env_options.games_root={games}",
        *args.override,
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--segmentations", default="fixed_length,fixed_count,entropy")
    ap.add_argument("--arms", default="sft,eto,hpl")
    ap.add_argument("--recipe", default="recipes/hpl_textworld_tiny_cpu.yaml")
    ap.add_argument("--games", default="runs/textworld")
    ap.add_argument("--work", default="runs/bench_hpl")
    ap.add_argument("--k", type=int, default=8, help="sampled episodes per held-out game (0: greedy only)")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    commands, wall = [], {}
    for s in args.seeds:
        cmd = [
            sys.executable,
            "-m",
            "launch.hpl",
            args.recipe,
            "--work",
            str(Path(args.work) / f"seed{s}"),
            "--arms",
            args.arms,
            "--segmentations",
            args.segmentations,
        ]
        for o in _overrides(args, s):
            cmd += ["-o", o]
        commands.append(" ".join(["python", *cmd[1:]]))
        if args.render_only:
            continue
        _ensure_games(Path(args.games))
        print(f"[bench] seed {s}: {commands[-1]}", flush=True)
        log = Path(args.work) / f"seed{s}" / "bench_commands.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(commands[-1] + "\n")
        t0 = time.perf_counter()
        _run_resuming(cmd, log)
        if args.k:
            with log.open("a") as fh:
                fh.writelines(c + "\n" for c in _sampled_evals(args, Path(args.work) / f"seed{s}"))
        wall[s] = time.perf_counter() - t0
    render(args, commands, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
