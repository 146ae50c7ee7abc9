"""``python -m graph_rec`` — ``train MODEL --dataset NAME [options]``, ``tune MODEL --grid K=V1,V2 --select M
[options]``, ``list``, ``report RUNS...``.

``train`` runs the shared contract of :mod:`graph_rec.experiment` (every model takes the same flags and writes
the same result file); ``report`` prints the markdown table of result files (:mod:`graph_rec.report`).
"""

from __future__ import annotations

import argparse
import sys

from graph_rec.config import ConfigError
from graph_rec.experiment import ModelSpec, add_common_args, run_experiment, write_result
from graph_rec.registry import MODEL_HOME, load_all, load_model
from graph_rec.tune import add_tune_args, run_tune


def build_parser(models: dict[str, ModelSpec] | None = None) -> argparse.ArgumentParser:
    models = load_all() if models is None else models
    parser = argparse.ArgumentParser(prog="python -m graph_rec")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train and evaluate a model, write its result file")
    msub = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    for spec in models.values():
        add_common_args(msub.add_parser(spec.name, help=spec.help), spec)
    tune = sub.add_parser("tune", help="grid-search config fields, write the best point's result file")
    tsub = tune.add_subparsers(dest="model", required=True, metavar="MODEL")
    for spec in models.values():
        tp = tsub.add_parser(spec.name, help=spec.help)
        add_common_args(tp, spec)
        add_tune_args(tp)
    sub.add_parser("list", help="list the registered models")
    rep = sub.add_parser("report", help="markdown table of result files (or folders of them)")
    rep.add_argument("runs", nargs="+", help="result JSON files or folders searched recursively")
    rep.add_argument("--metrics", nargs="+", default=None, help="metric keys (default: each run's headline)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `train MODEL ...` imports MODEL's module only; `list`, --help and typos see every model.
    chosen = argv[1] if len(argv) > 1 and argv[0] in ("train", "tune") and argv[1] in MODEL_HOME else None
    if argv[:1] == ["report"]:
        models: dict[str, ModelSpec] = {}
    else:
        models = {chosen: load_model(chosen)} if chosen else load_all()
    args = build_parser(models).parse_args(argv)
    if args.command == "list":
        for spec in models.values():
            print(f"{spec.name:24s} {spec.help}")
        return 0
    if args.command == "report":
        from graph_rec.report import load_runs, render

        print(render(load_runs(args.runs), args.metrics))
        return 0
    try:
        run = run_tune if args.command == "tune" else run_experiment
        result = run(models[args.model], args, argv)
    except ConfigError as e:  # a bad setting: one line naming the key, no traceback
        print(f"python -m graph_rec: {e}", file=sys.stderr)
        return 2
    out = write_result(result)
    from graph_rec.report import render

    print(render([result]))
    print(f"result written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
