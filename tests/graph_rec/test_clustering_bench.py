"""The GraphLearner bench scripts (sweep grid, input baselines) on a tiny on-disk graph."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.graphs import blob_graph

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_runs_every_grid_point_with_its_settings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blob_graph(tmp_path / "blobs")
    out_dir = tmp_path / "sweep"
    _load("graph_rec_sweep").main(
        ["--dataset", str(tmp_path / "blobs"), "--grid", "epochs=12", "pca_dim=8,16", "embed_dim=32",
         "--seeds", "1", "--objective", "joint", "--jobs", "2", "--out-dir", str(out_dir)]
    )  # fmt: skip
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 12 |")]
    assert len(rows) == 2 and {r.split("|")[2].strip() for r in rows} == {"8", "16"}
    for pca in (8, 16):
        metrics = json.loads((out_dir / f"blobs_epochs12_pca_dim{pca}_embed_dim32.json").read_text())
        assert metrics["config"]["epochs"] == 12 and metrics["metrics"]["best/acc"]["mean"] > 60
    with pytest.raises(SystemExit, match="KEY=V1,V2"):
        _load("graph_rec_sweep").main(["--dataset", "x", "--grid", "epochs"])


def test_input_baselines_print_every_step_and_the_degree_row(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blob_graph(tmp_path / "blobs")
    _load("graph_rec_input_baselines").main(["--datasets", str(tmp_path / "blobs"), "--steps", "0", "2"])
    lines = capsys.readouterr().out.splitlines()
    smoothed = next(line for line in lines if "| Â^t X |" in line)
    cells = [float(c) for c in smoothed.strip("|").split("|")[2:]]
    assert len(cells) == 2 and cells[1] > 80  # two smoothing steps separate the three communities
    assert any("log(1 + degree)" in line for line in lines)
