"""``python -m graph_rec tune MODEL --grid KEY=V1,V2 ... --select METRIC [every train flag]``: a small grid.

Every grid point is a whole ``train`` run (every seed, the same split seed, data and budget); the point with
the best mean of ``--select`` (highest, or lowest with ``--minimize``) wins and only its result file is
written, with a ``tuning`` section: the grid, the selection metric and direction, and every point's settings,
mean ± std and wall seconds. This is how a README's baselines are tuned, so the grid travels with the number.

Selecting on a ``test/*`` metric picks settings with the test labels. It is refused unless
``--select-on-test`` is given, and then recorded (``tuning.on_test``) so the report can say so; use it only
for a baseline under a protocol without a validation split (leave-one-out, CTR), where it can only flatter
the baseline against the model it is compared with.
"""

from __future__ import annotations

import argparse
import copy
import itertools
from pathlib import Path
from typing import Any

from graph_rec import config as config_lib
from graph_rec.config import ConfigError
from graph_rec.experiment import ModelSpec, run_experiment


def add_tune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="a config field and its candidate values (repeatable; the grid is their product)",
    )
    p.add_argument("--select", required=True, metavar="METRIC", help="selection metric, e.g. valid/recall@20")
    p.add_argument("--minimize", action="store_true", help="lower is better (e.g. a log-loss)")
    p.add_argument(
        "--select-on-test", action="store_true", help="allow a test/* selection metric (recorded in the file)"
    )


def parse_grid(items: list[str], cls: type) -> dict[str, list[str]]:
    names = config_lib.field_types(cls)
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not values.strip():
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,...")
        if key not in names:
            raise ConfigError(f"--grid {key}: not a config field of this model (fields: {', '.join(names)})")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice")
        grid[key] = [v.strip() for v in values.split(",")]
    return grid


def tuned_path(out: str) -> str:
    p = Path(out)
    return str(p.with_name(f"{p.stem}-tuned{p.suffix}"))


def run_tune(spec: ModelSpec, args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    grid = parse_grid(args.grid, spec.config)
    clash = sorted(set(grid) & set(config_lib.flag_values(args, spec.config)))
    if clash:
        raise ConfigError(f"--grid {clash[0]}: also given as its own flag --{clash[0].replace('_', '-')}")
    if args.select.startswith("test") and not args.select_on_test:
        raise ConfigError(
            f"--select {args.select}: choosing settings on test labels; select on a valid/* metric, or pass "
            "--select-on-test (recorded in the result file; for baselines only)"
        )
    points: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values))
        point = copy.copy(args)
        point.set = [*(args.set or []), *(f"{k}={v}" for k, v in settings.items())]
        point.out = None
        print(f"tune {spec.name}: {' '.join(f'{k}={v}' for k, v in settings.items())}", flush=True)
        result = run_experiment(spec, point, argv)
        m = result["metrics"].get(args.select)
        if m is None:
            raise ConfigError(
                f"--select {args.select}: not a metric of {spec.name} ({', '.join(result['metrics'])})"
            )
        typed = {k: result["config"][k] for k in settings}
        points.append(
            {"settings": typed, "mean": m["mean"], "std": m["std"], "wall_seconds": result["wall_seconds"]}
        )
        if best is None or (m["mean"] < best["_v"] if args.minimize else m["mean"] > best["_v"]):
            best = {**result, "_v": m["mean"], "_settings": typed}
    assert best is not None
    chosen = best.pop("_settings")
    best.pop("_v")
    best["tuning"] = {
        "grid": {k: list(dict.fromkeys(p["settings"][k] for p in points)) for k in grid},
        "select": args.select,
        "direction": "min" if args.minimize else "max",
        "on_test": args.select.startswith("test"),
        "chosen": chosen,
        "points": points,
        "wall_seconds_all_points": round(sum(p["wall_seconds"] for p in points), 1),
    }
    best["out"] = args.out or tuned_path(best["out"])
    return best
