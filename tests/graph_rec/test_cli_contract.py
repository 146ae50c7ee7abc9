"""The one CLI contract of ``python -m graph_rec train MODEL`` across every registered model, on tiny data.

Each model runs once with every common flag (--device, --seeds/--seed, --split-seed, --config, --set,
--threads, --data-root, --out) and must write a result file with the reproducibility fields; metric names,
output paths, the split/init seed separation and ``report`` are checked on top. Whole file: ~30-60 s on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graph_rec.__main__ import build_parser, main
from graph_rec.experiment import DEFAULT_THREADS, SCHEMA
from graph_rec.registry import MODEL_HOME, load_all

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
N_USERS, N_ITEMS, PER_USER = 40, 130, 10


def _write_pairs(path: Path, pairs: list[tuple[int, int]]) -> None:
    path.write_text("".join(f"{u}\t{i}\n" for u, i in pairs))


def make_cdr_pair(root: Path) -> int:
    """``root/amazon_cdr/{x_y,y_x}``: two domains, same users, two taste groups. x_y ships a 99-negative list in
    which 3 rows hold their own positive (the shipped-data defect the loader cleans); y_x has sampled negatives.
    Returns the number of planted positives."""
    rng = np.random.default_rng(0)
    planted = 0
    for name in ("x_y", "y_x"):
        folder = root / "amazon_cdr" / name
        folder.mkdir(parents=True)
        train, test = [], []
        for u in range(N_USERS):
            group = np.arange(N_ITEMS // 2) + (u % 2) * (N_ITEMS // 2)
            items = rng.choice(group, PER_USER + 1, replace=False)
            train += [(u, int(i)) for i in items[:-1]]
            test.append((u, int(items[-1])))
        _write_pairs(folder / "train.txt", train)
        _write_pairs(folder / "test_original.txt", test)
        if name == "x_y":
            lines = []
            for r, (u, pos) in enumerate(test):
                seen = {i for v, i in train if v == u} | {pos}
                negs = [i for i in rng.permutation(N_ITEMS).tolist() if i not in seen][:99]
                if r < 3:  # plant the positive among its own negatives
                    negs[5] = pos
                    planted += 1
                lines.append(f"({u},{pos})\t" + "\t".join(map(str, negs)))
            (folder / "test_neg_bitgcf.txt").write_text("\n".join(lines) + "\n")
        else:
            _write_pairs(folder / "test.txt", test)
    return planted


def make_graph(folder: Path, k: int = 3, n_per: int = 20) -> None:
    """k communities with class-specific words and a Planetoid-style split (clustering and classification)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(k), n_per)
    feats = (rng.random((len(y), 30)) < 0.1).astype(np.float32)
    feats[np.arange(len(y)), y * 10 + rng.integers(0, 10, len(y))] = 1
    a = np.triu(rng.random((len(y), len(y))) < np.where(y[:, None] == y[None], 0.3, 0.01), 1)
    folder.mkdir(parents=True)
    sp.save_npz(folder / "features.npz", sp.csr_matrix(feats))
    sp.save_npz(folder / "adj.npz", sp.csr_matrix((a | a.T).astype(np.float32)))
    np.save(folder / "labels.npy", y)
    perm = rng.permutation(len(y))
    np.savez(folder / "split.npz", idx_train=perm[:12], idx_val=perm[12:30], idx_test=perm[30:])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("data")
    make_graph(r / "blobs")
    r.joinpath("planted.txt").write_text(str(make_cdr_pair(r)))
    return r


# Smallest settings per model (data, epochs, widths); the common flags are added by `common`.
SMALL: dict[str, list[str]] = {
    "graphlearner": ["--dataset", "blobs", "--epochs", "4", "--eval-every", "2", "--set", "pca_dim=8",
                     "--set", "embed_dim=16", "--set", "attr_hidden=16", "--set", "final_n_init=2",
                     "--set", "monitor_n_init=1", "--no-bf16"],
    "graph_transformer": ["--dataset", "blobs", "--variant", "vanilla", "--epochs", "3", "--set", "max_nodes=6",
                          "--eval-every", "1"],
    "lightgcn": ["--dataset", "amazon_cdr/x_y", "--epochs", "2", "--set", "core=2", "--batch-size", "128",
                 "--dim", "8", "--eval-every", "1"],
    "hgformer": ["--dataset", "amazon_cdr/x_y", "--epochs", "2", "--set", "core=2", "--batch-size", "128",
                 "--dim", "8", "--eval-every", "1", "--heads", "1", "--n-features", "8", "--layers", "1"],
    "hcts": ["--dataset", "amazon_cdr/x_y", "--epochs", "1", "--batch-size", "128", "--dim", "8", "--layers", "1"],
    "bitgcf": ["--dataset", "amazon_cdr/x_y", "--epochs", "1", "--batch-size", "128", "--dim", "8"],
    "gmt": ["--dataset", "amazon_cdr/x_y", "--epochs", "1", "--batch-size", "256", "--dim", "8", "--n1", "2",
            "--n2", "2", "--layers", "1", "--samples", "1"],
    "fm": ["--dataset", "amazon_cdr/x_y", "--epochs", "1", "--dim", "8"],
}  # fmt: skip
LR_FIELD = {"graphlearner": "lr_encoder"}  # the field the --config file sets (others: "lr")
# Every metric is WHERE/NAME with NAME from one vocabulary, whichever runner wrote it.
METRIC = re.compile(r"^(test|valid|test_partner|oracle|selected|best|last|single)/(acc|nmi|ari|f1|auc|logloss|mrr|(recall|ndcg|hr)@\d+)$")  # fmt: skip


def run_cli(model: str, root: Path, out: Path, *extra: str, device: str = "cpu") -> dict[str, Any]:
    cfg = out.with_suffix(".cfg")  # not *.json: `report` folders hold results only
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(json.dumps({LR_FIELD.get(model, "lr"): 0.0123}))
    common = ["--data-root", str(root), "--device", device, "--seeds", "2", "--seed", "3", "--split-seed", "1",
              "--threads", "1", "--config", str(cfg), "--out", str(out)]  # fmt: skip
    assert main(["train", model, *SMALL[model], *common, *extra]) == 0
    return json.loads(out.read_text())


def test_every_registered_model_is_covered() -> None:
    assert set(SMALL) == set(MODEL_HOME) == set(load_all())


def test_same_defaults_for_the_common_flags() -> None:
    parser = build_parser(load_all())
    for model in MODEL_HOME:
        args = parser.parse_args(["train", model, "--dataset", "d"])
        assert (args.threads, args.device, args.split_seed, args.seed) == (DEFAULT_THREADS, "cpu", 0, 0), (
            model
        )
        assert args.config is None and args.set is None and args.out is None


@pytest.mark.parametrize("model", sorted(SMALL))
def test_common_flags_and_result_file(model: str, root: Path, tmp_path: Path) -> None:
    r = run_cli(model, root, tmp_path / "r.json")
    assert r["schema"] == SCHEMA and r["model"] == model and r["variant"]
    assert r["command"][:4] == ["python", "-m", "graph_rec", "train"] and "--split-seed" in r["command"]
    # resolved config: the --config file's value is there, and --set won where both were given
    assert r["config"][LR_FIELD.get(model, "lr")] == 0.0123
    assert r["run"] == {"seeds": [3, 4], "split_seed": 1, "device": "cpu", "threads": 1}
    prov = r["provenance"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert prov["git_commit"] == head and isinstance(prov["git_dirty"], bool)
    assert all(prov["packages"][p] for p in ("torch", "numpy", "scipy", "scikit-learn"))
    assert prov["data_files"], "no data checksums"
    for name, digest in prov["data_files"].items():
        path = Path(name) if Path(name).is_absolute() else root / name
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest(), name
    # metrics: shared names, mean/std over both seeds, per-seed values and histories
    assert r["headline"] and set(r["headline"]) <= set(r["metrics"])
    for key, agg in r["metrics"].items():
        assert METRIC.match(key), key
        vals = [s["metrics"][key] for s in r["per_seed"]]
        assert (
            agg["n"] == 2
            and agg["mean"] == pytest.approx(np.mean(vals))
            and agg["std"] == pytest.approx(np.std(vals))
        )
    assert [s["seed"] for s in r["per_seed"]] == [3, 4]
    for s in r["per_seed"]:
        assert s["steps"] > 0 and s["history"] and all("epoch" in row for row in s["history"])
    assert r["budget"]["steps_per_seed"] == r["per_seed"][0]["steps"]
    assert r["budget"]["epochs"] == r["config"]["epochs"]


def test_set_beats_config_file_and_flag_beats_set(root: Path, tmp_path: Path) -> None:
    r = run_cli("fm", root, tmp_path / "a.json", "--set", "lr=0.5")
    assert r["config"]["lr"] == 0.5
    r = run_cli("fm", root, tmp_path / "b.json", "--set", "lr=0.5", "--lr", "0.25")
    assert r["config"]["lr"] == 0.25


def test_bad_settings_exit_2_with_one_line_naming_the_key(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--data-root", str(root), "--out", str(tmp_path / "x.json")]
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    cases = [
        (
            ["fm", *SMALL["fm"], "--set", "learning_rate=0.5"],
            r"overridden by --set.*unknown keys \['learning_rate'\]",
        ),
        (["lightgcn", *SMALL["lightgcn"], "--set", "protocol=xyz"], "protocol='xyz'; choose one of"),
        (["hcts", *SMALL["hcts"], "--set", "tau=warm"], "tau='warm' should be float"),
        (["gmt", *SMALL["gmt"], "--config", str(bad)], "one JSON object"),
        (["bitgcf", *SMALL["bitgcf"], "--set", "reg"], "write KEY=VALUE"),
        (
            ["graphlearner", *SMALL["graphlearner"], "--set", "pca_dim=999"],
            "pca_dim=999 exceeds the 30 input",
        ),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(["train", *argv, *base]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "x.json").exists()


def test_split_seed_fixes_the_split_while_the_init_seed_varies(root: Path, tmp_path: Path) -> None:
    def run(seed: str, split_seed: str) -> dict[str, Any]:
        return run_cli("lightgcn", root, tmp_path / f"{seed}_{split_seed}.json", "--seed", seed, "--seeds", "1",
                       "--split-seed", split_seed)  # fmt: skip

    a, b, c = run("0", "5"), run("1", "5"), run("0", "6")
    assert a["data"]["split_fingerprint"] == b["data"]["split_fingerprint"] != c["data"]["split_fingerprint"]
    assert a["per_seed"][0]["metrics"] != b["per_seed"][0]["metrics"]  # the init seed does change the model


def test_default_out_path_names_model_dataset_variant(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["train", "graphlearner", *SMALL["graphlearner"], "--data-root", str(root), "--seeds", "1"]
    main([*base, "--objective", "joint"])
    main([*base, "--objective", "adversarial"])
    main([*base, "--objective", "joint", "--set", "alpha=0.25"])
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert len(files) == 3 and all(f.startswith("runs/graph_rec/graphlearner/blobs/") for f in files), files
    names = {Path(f).stem for f in files}
    assert {"joint", "adversarial"} <= {n.split("-")[0] for n in names} and len(names) == 3
    # the defaults of a model get the plain name
    main(["train", "fm", "--dataset", "amazon_cdr/x_y", "--data-root", str(root)])
    assert (tmp_path / "runs/graph_rec/fm/amazon_cdr-x_y/default.json").is_file()


def test_same_metric_names_for_the_same_test_rows(root: Path, tmp_path: Path) -> None:
    """LightGCN (loo) and the cross-domain models score domain A's leave-one-out rows under the same keys."""
    keys = {}
    for model in ("lightgcn", "bitgcf"):
        extra = ["--protocol", "loo"] if model == "lightgcn" else []
        keys[model] = set(run_cli(model, root, tmp_path / f"{model}.json", *extra)["metrics"])
    assert {"test/hr@10", "test/ndcg@10", "test/mrr"} <= keys["lightgcn"] & keys["bitgcf"]


def test_planted_positives_are_removed_from_shipped_negatives(root: Path, tmp_path: Path) -> None:
    r = run_cli("bitgcf", root, tmp_path / "r.json")
    planted = int((root / "planted.txt").read_text())
    assert r["data"]["negatives"] == ["shipped", "sampled(seed=1)"]
    assert r["data"]["negatives_positives_replaced"] == [planted, 0]


def test_report_prints_one_row_per_result(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli("fm", root, tmp_path / "runs" / "fm.json")
    run_cli("lightgcn", root, tmp_path / "runs" / "lightgcn.json", "--protocol", "loo")
    (tmp_path / "runs" / "other.json").write_text("{}")  # not a result file: skipped
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines[0].startswith("| model | dataset | variant | test/auc | test/logloss | test/hr@10")
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert set(rows) == {"fm", "lightgcn"} and "skipping" in out.err
    fm = json.loads((tmp_path / "runs" / "fm.json").read_text())
    auc = fm["metrics"]["test/auc"]
    assert f"{auc['mean']:.4f} ± {auc['std']:.4f}" in rows["fm"]
    assert f"| 2 | {fm['budget']['steps_per_seed']} | 1 |" in rows["fm"]
    assert rows["lightgcn"].count("–") == 2  # no AUC/LogLoss for a ranking model


@pytest.mark.gpu
@pytest.mark.parametrize("model", sorted(SMALL))
def test_every_model_runs_on_cuda(model: str, root: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    r = run_cli(model, root, tmp_path / "r.json", device="cuda")
    assert r["run"]["device"] == "cuda" and r["provenance"]["cuda_device"]


@pytest.mark.parametrize("model", ["lightgcn", "hgformer", "hcts", "bitgcf", "gmt", "fm"])
def test_step_budget_is_exact(model: str, root: Path, tmp_path: Path) -> None:
    """``steps`` is the equal-budget knob of every recommender/CTR model: exactly that many optimiser steps."""
    r = run_cli(model, root, tmp_path / "r.json", "--set", "steps=5", "--seeds", "1")
    assert [s["steps"] for s in r["per_seed"]] == [5]
    assert r["budget"]["step_budget"] == 5 and r["budget"]["steps_per_seed"] == 5
    assert r["budget"]["epochs"] == len(r["per_seed"][0]["history"])
    assert r["overrides"]["steps"] == 5


def test_tune_writes_the_best_point_with_its_grid(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "tuned.json"
    base = ["lightgcn", *SMALL["lightgcn"], "--data-root", str(root), "--seeds", "2", "--threads", "1"]
    assert main(["tune", *base, "--grid", "lr=0.001,0.05", "--grid", "reg=0.0001,0.01", "--select",
                 "valid/recall@20", "--out", str(out)]) == 0  # fmt: skip
    r = json.loads(out.read_text())
    t = r["tuning"]
    assert t["grid"] == {"lr": [0.001, 0.05], "reg": [0.0001, 0.01]} and len(t["points"]) == 4
    assert t["select"] == "valid/recall@20" and t["direction"] == "max" and t["on_test"] is False
    best = max(t["points"], key=lambda p: p["mean"])
    assert t["chosen"] == best["settings"]
    assert {k: r["config"][k] for k in t["chosen"]} == t["chosen"]  # the file's run is the chosen point
    assert r["metrics"]["valid/recall@20"]["mean"] == pytest.approx(best["mean"])
    assert r["command"][3] == "tune"
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "tuned: 4 points on valid/recall@20" in capsys.readouterr().out
    # selecting on test labels is refused unless asked for, and then recorded
    err_base = ["tune", *base, "--grid", "lr=0.001,0.05", "--out", str(tmp_path / "t.json")]
    capsys.readouterr()
    assert main([*err_base, "--select", "test/recall@20"]) == 2
    assert "--select-on-test" in capsys.readouterr().err and not (tmp_path / "t.json").exists()
    assert main([*err_base, "--select", "test/recall@20", "--select-on-test", "--seeds", "1"]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["tuning"]["on_test"] is True
    for grid, message in (
        ("learning_rate=1,2", "not a config field"),
        ("lr", "expected KEY=V1,V2"),
        ("dim=4,8", "also given as its own flag --dim"),  # SMALL sets --dim 8
    ):
        assert main(["tune", *base, "--grid", grid, "--select", "valid/recall@20"]) == 2
        assert message in capsys.readouterr().err
