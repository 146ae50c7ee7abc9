"""Attributed-graph folder loader: the bundled datasets load with the documented statistics, a user's
folder in the same format works, and a bad folder names the missing file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from graph_rec.data import default_data_root
from graph_rec.data.graphs import load_graph

DATA = default_data_root()
needs_data = pytest.mark.skipif(not (DATA / "cora").is_dir(), reason=f"no graph data under {DATA}")

# (nodes, features, undirected edges without self-loops, classes) from each folder's PROVENANCE.md
STATS = {
    "cora": (2708, 1433, 5278, 7),
    "citeseer": (3327, 3703, 4552, 6),
    "bat": (131, 81, 1003, 4),
    "eat": (399, 203, 5993, 4),
}


def test_default_data_root_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRAPH_REC_DATA", str(tmp_path))
    assert default_data_root() == tmp_path.resolve()
    monkeypatch.delenv("GRAPH_REC_DATA")
    assert default_data_root().parts[-3:] == ("shared", "data", "graph")


@needs_data
@pytest.mark.parametrize("name", sorted(STATS))
def test_bundled_datasets_match_provenance(name: str) -> None:
    g = load_graph(name)
    n, d, e, k = STATS[name]
    assert (g.num_nodes, g.num_features, g.num_classes) == (n, d, k)
    off_diag = sp.triu(g.adj, k=1)
    assert off_diag.nnz == e
    assert (g.adj != g.adj.T).nnz == 0
    assert g.labels.shape == (n,) and g.labels.dtype == np.int64


@needs_data
def test_citeseer_mask_and_split() -> None:
    g = load_graph("citeseer")
    assert int((~g.label_mask).sum()) == 15
    assert g.split is not None
    assert {k: len(v) for k, v in g.split.items()} == {"idx_train": 120, "idx_val": 500, "idx_test": 1000}


def _write_folder(folder: Path, directed: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols = [0, 1, 2], [1, 2, 3]
    adj = sp.coo_matrix((np.ones(3, np.float32), (rows, cols)), shape=(4, 4))
    if not directed:
        adj = adj + adj.T
    sp.save_npz(folder / "adj.npz", sp.csr_matrix(adj))
    sp.save_npz(folder / "features.npz", sp.csr_matrix(np.eye(4, 3, dtype=np.float32)))
    np.save(folder / "labels.npy", np.array([0, 0, 1, 1]))


def test_user_folder_by_path_and_symmetrised(tmp_path: Path) -> None:
    _write_folder(tmp_path / "mine", directed=True)
    g = load_graph(tmp_path / "mine")
    assert g.name == "mine" and g.num_nodes == 4 and g.split is None
    assert (g.adj != g.adj.T).nnz == 0 and g.adj.nnz == 6
    assert g.label_mask.all()
    # by name under an explicit data root
    assert load_graph("mine", data_root=tmp_path).num_classes == 2


def test_missing_file_is_named(tmp_path: Path) -> None:
    _write_folder(tmp_path / "bad")
    (tmp_path / "bad" / "labels.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"labels\.npy"):
        load_graph(tmp_path / "bad")


def test_unknown_dataset_lists_available(tmp_path: Path) -> None:
    _write_folder(tmp_path / "only")
    with pytest.raises(FileNotFoundError, match="only"):
        load_graph("nope", data_root=tmp_path)


def test_shape_mismatch_is_reported(tmp_path: Path) -> None:
    _write_folder(tmp_path / "odd")
    np.save(tmp_path / "odd" / "labels.npy", np.array([0, 1]))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        load_graph(tmp_path / "odd")


def test_model_home_table_matches_what_the_modules_register() -> None:
    import importlib

    from graph_rec import registry

    for name, module in registry.MODEL_HOME.items():
        importlib.import_module(module)
        assert registry._MODELS[name].run_seed.__module__ == module, name
    assert set(registry.load_all()) == set(registry.MODEL_HOME)


def test_train_imports_only_the_chosen_model_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from graph_rec.__main__ import main\n"
        "try:\n    main(['train', 'graphlearner', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('graph_rec.', 'torch_geometric'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert "graph_rec.clustering.runner" in loaded
    assert "graph_rec.transformer" not in loaded and "graph_rec.recsys" not in loaded
    assert "torch_geometric" not in loaded  # GraphLearner needs no PyG (2 s of imports)


def test_retain_freed_memory_keeps_large_blocks_in_the_process() -> None:
    import subprocess
    import sys

    # Allocate four 8 MB blocks and free them, 50 times (an epoch's pattern): glibc trims the freed top of
    # the heap and faults the pages in again each time; with the tuning they are faulted in once.
    code = (
        "import resource, sys, numpy as np\n"
        "from graph_rec.allocator import retain_freed_memory\n"
        "on = sys.argv[1] == 'on' and retain_freed_memory()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(50):\n    blocks = [np.ones(1024 * 1024) for _ in range(4)]; del blocks\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc tuning is Linux-only")
    faults = {
        mode: int(
            subprocess.run(
                [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("off", "on")
    }
    assert faults["on"] * 5 < faults["off"], faults
