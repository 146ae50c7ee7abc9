"""`python -m graph_rec train MODEL --dataset NAME [options]`: train, evaluate, print and save metrics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from graph_rec.registry import MODEL_HOME, ModelEntry, load_all, load_model


def build_parser(models: dict[str, ModelEntry] | None = None) -> argparse.ArgumentParser:
    models = load_all() if models is None else models
    parser = argparse.ArgumentParser(prog="python -m graph_rec")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train and evaluate a model")
    msub = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    for entry in models.values():
        p = msub.add_parser(entry.name, help=entry.help)
        p.add_argument("--dataset", required=True, help="dataset name under --data-root, or a folder path")
        p.add_argument(
            "--data-root", default=None, help="folder holding the datasets (default: ../shared/data/graph)"
        )
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--out", default=None, help="write metrics JSON here (default: runs/graph_rec/MODEL_DATASET.json)"
        )
        if entry.add_args is not None:
            entry.add_args(p)
    sub.add_parser("list", help="list the registered models")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `train MODEL ...` imports MODEL's module only; `list`, --help and typos see every model.
    chosen = argv[1] if len(argv) > 1 and argv[0] == "train" and argv[1] in MODEL_HOME else None
    models = {chosen: load_model(chosen)} if chosen else load_all()
    args = build_parser(models).parse_args(argv)
    if args.command == "list":
        for entry in models.values():
            print(f"{entry.name:24s} {entry.help}")
        return 0
    metrics = models[args.model].runner(args)
    out = Path(args.out or f"runs/graph_rec/{args.model}_{Path(str(args.dataset)).name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"metrics written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
