"""Smoke runs of the node-classification runner and the comparison table on a synthetic graph with a
Planetoid-style split (and on Cora, marked slow)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graph_rec.data import default_data_root
from graph_rec.experiment import add_common_args, run_experiment
from graph_rec.transformer.compare import main as compare_main
from graph_rec.transformer.runner import SPEC

torch.set_num_threads(1)


def _sbm_folder(folder: Path, k: int = 3, n_per: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    feats = (rng.random((len(y), 12)) < 0.15).astype(np.float32)
    feats[np.arange(len(y)), y * 4 + rng.integers(0, 4, len(y))] = 1
    p = np.where(y[:, None] == y[None], 0.2, 0.01)
    a = np.triu(rng.random(p.shape) < p, 1)
    folder.mkdir(parents=True)
    sp.save_npz(folder / "features.npz", sp.csr_matrix(feats))
    sp.save_npz(folder / "adj.npz", sp.csr_matrix((a | a.T).astype(np.float32)))
    np.save(folder / "labels.npy", y)
    perm = rng.permutation(len(y))
    np.savez(folder / "split.npz", idx_train=perm[:15], idx_val=perm[15:45], idx_test=perm[45:])
    return folder


def run(dataset: Path | str, variant: str, *flags: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    add_common_args(parser, SPEC)
    argv = ["--dataset", str(dataset), "--variant", variant, "--seeds", "1", "--epochs", "10", "--max-nodes", "8",
            "--threads", "1", *flags]  # fmt: skip
    return run_experiment(SPEC, parser.parse_args(argv), argv)


@pytest.mark.parametrize("variant", ["gcn_only", "bias_edge_path", "virtual_node"])
def test_runner_smoke(tmp_path: Path, variant: str) -> None:
    folder = _sbm_folder(tmp_path / "sbm")
    out = run(folder, variant)
    assert out["variant"] == variant and 0 <= out["metrics"]["test/acc"]["mean"] <= 100
    assert len(out["per_seed"][0]["history"]) == 10 and out["budget"]["steps_per_seed"] == 10


def test_runner_needs_a_split(tmp_path: Path) -> None:
    folder = _sbm_folder(tmp_path / "sbm")
    (folder / "split.npz").unlink()
    with pytest.raises(ValueError, match=r"split\.npz"):
        run(folder, "vanilla")


def test_compare_writes_jsonl_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sbm_folder(tmp_path / "sbm")
    out = tmp_path / "cmp.jsonl"
    compare_main(["--datasets", "sbm", "--variants", "vanilla", "mask_1hop", "--seeds", "1", "--epochs", "5",
                  "--threads", "1", "--data-root", str(tmp_path), "--out", str(out)])  # fmt: skip
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["variant"] for r in lines] == ["vanilla", "mask_1hop"]
    table = capsys.readouterr().out
    assert "| reference | vanilla |" in table and "mask_1hop" in table


def test_compare_parallel_jobs_match_serial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sbm_folder(tmp_path / "sbm")
    common = ["--datasets", "sbm", "--variants", "vanilla", "mask_1hop", "--seeds", "1", "--epochs", "5",
              "--threads", "1", "--data-root", str(tmp_path)]  # fmt: skip
    compare_main([*common, "--out", str(tmp_path / "serial.jsonl")])
    compare_main([*common, "--out", str(tmp_path / "parallel.jsonl"), "--jobs", "2"])
    rows = {}
    for name in ("serial", "parallel"):
        lines = [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        rows[name] = {r["variant"]: r["metrics"]["test/acc"]["mean"] for r in lines}
    assert rows["parallel"] == rows["serial"]  # same seeds, same results, whichever process ran them


@pytest.mark.slow
@pytest.mark.skipif(not (default_data_root() / "cora").is_dir(), reason="no Cora data")
def test_cora_smoke_learns_something() -> None:
    out = run("cora", "gcn_before", "--epochs", "30", "--max-nodes", "16")
    assert out["metrics"]["test/acc"]["mean"] > 40  # 7 classes: chance is about 14-30 %
