"""The one run contract behind ``python -m graph_rec train MODEL``: flags, seeds, device, config, result file.

A model registers a :class:`ModelSpec` (its config dataclass, how to load the data once, how to train and
evaluate one seed). :func:`run_experiment` does everything else, the same way for every model:

* threads (``--threads``, default 2) for torch and the BLAS pools, the device (``--device``; a missing CUDA
  device fails at once);
* data loaded once with ``--split-seed`` (splits, sampled negatives, synthetic data), which stays fixed while
  the init seed varies over ``--seed .. --seed + --seeds - 1``;
* the config resolved from defaults / ``--config`` / ``--set`` / field flags (:mod:`graph_rec.config`);
* per seed: ``seed_everything(seed)`` then the model's ``run_seed``; metrics use the shared names
  ``WHERE/METRIC`` (``test/recall@20``, ``valid/acc``, ``test/auc``, ``last/nmi``...);
* a result file (schema below) a reviewer can reproduce from, at ``runs/graph_rec/MODEL/DATASET/VARIANT.json``
  (``VARIANT-HASH.json`` when any setting differs from the defaults, so different runs never overwrite
  each other).

Result file (``schema: graph_rec.result/1``): model, dataset, variant, command (argv), config (resolved),
run (seeds, split_seed, device, threads), provenance (git commit and dirty flag, package versions, python,
platform, sha256 of every data file, start/finish time), headline (the metric keys a table shows), metrics
({key: {mean, std, n}}, population std), per_seed ([{seed, metrics, steps, train_seconds, history, extra}]),
budget (optimisation steps per seed, epochs), data (dataset statistics), wall_seconds, out (the path written).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import json
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from graph_rec import config as config_lib
from graph_rec.data import default_data_root

SCHEMA = "graph_rec.result/1"
DEFAULT_THREADS = 2  # a 2-core machine's cores; every runner uses the same default
PACKAGES = ("torch", "torch_geometric", "numpy", "scipy", "scikit-learn", "geoopt", "threadpoolctl")
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunContext:
    """What every model's hooks may read besides its config."""

    dataset: str  # as given: a name under the data root or a folder path
    data_root: str | None
    split_seed: int  # seeds the data split / sampled negatives / synthetic data, fixed across init seeds
    device: torch.device
    threads: int
    log: Callable[[str], None] = print


@dataclass
class SeedOutcome:
    """One seed's result, as a model's ``run_seed`` returns it."""

    metrics: dict[str, float]  # shared names WHERE/METRIC, e.g. "test/recall@20"
    steps: int  # optimiser steps taken (the budget a comparison must equalise)
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    train_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # model-specific facts (best epoch, curvatures...)


def default_variant(cfg: Any) -> str:
    return "default"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    help: str
    config: type  # a dataclass of int/float/str/bool fields
    load: Callable[[RunContext], Any]  # the data, once per run
    run_seed: Callable[[Any, Any, int, RunContext], SeedOutcome]  # (cfg, data, seed, ctx)
    headline: Callable[[Any], tuple[str, ...]]  # (cfg) -> the metric keys a README table shows
    variant: Callable[[Any], str] = default_variant  # (cfg) -> the output-path tag
    # (ctx, data) -> (base settings, where they came from), e.g. a per-dataset config file
    base_config: Callable[[RunContext, Any], tuple[dict[str, Any], str]] | None = None
    prepare: Callable[[Any, Any, RunContext], Any] | None = None  # (cfg, data, ctx) -> data for run_seed
    describe: Callable[[Any], dict[str, Any]] | None = (
        None  # (prepared data) -> dataset statistics for the file
    )
    data_folders: Callable[[RunContext], list[Path]] | None = None  # folders whose files are checksummed
    default_seeds: int = 1


def add_common_args(p: argparse.ArgumentParser, spec: ModelSpec) -> None:
    p.add_argument("--dataset", required=True, help="dataset name under --data-root, or a folder path")
    p.add_argument(
        "--data-root", default=None, help="folder holding the datasets (default: ../shared/data/graph)"
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1 (default cpu)")
    p.add_argument(
        "--seeds",
        type=int,
        default=spec.default_seeds,
        help=f"init seeds to run (default {spec.default_seeds})",
    )
    p.add_argument("--seed", type=int, default=0, help="first init seed: runs seed .. seed + seeds - 1")
    p.add_argument(
        "--split-seed", type=int, default=0, help="data split / negatives seed, fixed across seeds"
    )
    p.add_argument("--config", default=None, help="JSON file of config fields (over the defaults)")
    p.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="override any config field (repeatable)",
    )
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch / BLAS CPU threads")
    p.add_argument(
        "--out", default=None, help="result JSON (default runs/graph_rec/MODEL/DATASET/VARIANT.json)"
    )
    config_lib.add_field_flags(p, spec.config)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: no CUDA device is visible to torch; use --device cpu")
    return device


def dataset_slug(dataset: str) -> str:
    """``amazon_cdr/sport_cloth`` -> ``amazon_cdr-sport_cloth``; a folder path -> its name."""
    p = Path(dataset)
    return p.name if p.is_dir() else dataset.strip("/").replace("/", "-")


def default_folders(ctx: RunContext) -> list[Path]:
    p = Path(ctx.dataset)
    if p.is_dir():
        return [p]
    q = Path(ctx.data_root or default_data_root()) / ctx.dataset
    return [q] if q.is_dir() else []


def file_checksums(folders: list[Path]) -> dict[str, str]:
    """sha256 of every file directly in the folders, keyed by path (relative to the data root when inside)."""
    root = default_data_root()
    out = {}
    for folder in folders:
        for f in sorted(p for p in folder.resolve().iterdir() if p.is_file()):
            key = str(f.relative_to(root)) if f.is_relative_to(root) else str(f)
            out[key] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def git_state() -> dict[str, Any]:
    def git(*cmd: str) -> str | None:
        try:
            r = subprocess.run(["git", *cmd], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """{key: {mean, std, n}} over the seeds that report the key (population std, as the papers)."""
    keys = list(dict.fromkeys(k for m in per_seed for k in m))
    out = {}
    for k in keys:
        vals = np.array([m[k] for m in per_seed if k in m], dtype=np.float64)
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": len(vals)}
    return out


def settings_hash(cfg: Any, seeds: list[int], split_seed: int) -> str:
    blob = json.dumps(
        {"config": dataclasses.asdict(cfg), "seeds": seeds, "split_seed": split_seed}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def default_out_path(spec: ModelSpec, ctx: RunContext, cfg: Any, default_cfg: Any, seeds: list[int]) -> Path:
    """Defaults get the plain name; any other setting adds a hash of the settings, so runs never collide."""
    name = spec.variant(cfg)
    default_seeds = list(range(spec.default_seeds))
    here = settings_hash(cfg, seeds, ctx.split_seed)
    if here != settings_hash(default_cfg, default_seeds, 0):
        name = f"{name}-{here}"
    return Path("runs/graph_rec") / spec.name / dataset_slug(ctx.dataset) / f"{name}.json"


def budget(cfg: Any, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Optimiser steps per seed and epochs; with a step budget (``steps`` > 0) the epochs actually begun."""
    steps = [r["steps"] for r in per_seed]
    out: dict[str, Any] = {"steps_per_seed": int(np.mean(steps)), "epochs": getattr(cfg, "epochs", None)}
    if getattr(cfg, "steps", 0):
        out["step_budget"] = cfg.steps
        out["epochs"] = max(len(r["history"]) for r in per_seed)
    return out


def run_experiment(
    spec: ModelSpec, args: argparse.Namespace, argv: list[str] | None = None
) -> dict[str, Any]:
    """Train and evaluate ``spec`` for every seed; returns the result dict (see the module docstring)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    ctx = RunContext(args.dataset, args.data_root, args.split_seed, resolve_device(args.device), args.threads)
    with threadpool_limits(args.threads):
        data = spec.load(ctx)
        base, source = spec.base_config(ctx, data) if spec.base_config else ({}, f"{spec.name} defaults")
        flags = config_lib.flag_values(args, spec.config)
        cfg = config_lib.resolve(spec.config, base, source, args.config, args.set, flags)
        default_cfg = config_lib.config_from_dict(spec.config, base, source)
        prepared = spec.prepare(cfg, data, ctx) if spec.prepare else data
        seeds = list(range(args.seed, args.seed + args.seeds))
        if not seeds:
            raise ValueError(f"--seeds {args.seeds}: run at least one seed")
        per_seed = []
        for seed in seeds:
            seed_everything(seed)
            o = spec.run_seed(cfg, prepared, seed, ctx)
            shown = " ".join(f"{k} {o.metrics[k]:.4g}" for k in spec.headline(cfg) if k in o.metrics)
            ctx.log(f"seed {seed}: {shown} ({o.steps} steps, train {o.train_seconds:.1f}s)")
            per_seed.append(
                {"seed": seed, "metrics": o.metrics, "steps": o.steps, "train_seconds": round(o.train_seconds, 2),
                 "history": o.history, "extra": o.extra}
            )  # fmt: skip
    result = {
        "schema": SCHEMA,
        "model": spec.name,
        "dataset": dataset_slug(args.dataset),
        "variant": spec.variant(cfg),
        "command": ["python", "-m", "graph_rec", *(argv if argv is not None else sys.argv[1:])],
        "config": dataclasses.asdict(cfg),
        "run": {
            "seeds": seeds,
            "split_seed": ctx.split_seed,
            "device": str(ctx.device),
            "threads": ctx.threads,
        },
        "provenance": {
            **git_state(),
            "packages": package_versions(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cuda_device": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else None,
            "data_files": file_checksums((spec.data_folders or default_folders)(ctx)),
            "started_at": started,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        "headline": list(spec.headline(cfg)),
        "metrics": aggregate([r["metrics"] for r in per_seed]),
        "overrides": {
            k: v for k, v in dataclasses.asdict(cfg).items() if dataclasses.asdict(default_cfg)[k] != v
        },
        "budget": budget(cfg, per_seed),
        "data": spec.describe(prepared) if spec.describe else {},
        "per_seed": per_seed,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out) if args.out else default_out_path(spec, ctx, cfg, default_cfg, seeds)
    result["out"] = str(out)
    return result


def write_result(result: dict[str, Any]) -> Path:
    out = Path(result["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, sort_keys=False))
    return out
