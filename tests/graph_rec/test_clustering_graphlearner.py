"""GraphLearner pieces: augmentors, sparse filter vs dense reference, InfoNCE, refinement, objectives,
configs, and a smoke run of the CLI on a tiny synthetic graph (and on BAT when the data exist)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from graph_rec.clustering.augmentors import (
    AttributeAugmentor,
    StructureAugmentor,
    propagate,
    structure_mse,
)
from graph_rec.clustering.config import CONFIG_DIR, GraphLearnerConfig, load_config
from graph_rec.clustering.model import info_nce
from graph_rec.clustering.objectives import Losses, backward
from graph_rec.clustering.refine import high_confidence_mask, refinement_multiplier
from graph_rec.clustering.runner import SPEC
from graph_rec.clustering.trainer import refined_weights
from graph_rec.data import default_data_root
from graph_rec.data.graphs import load_graph
from graph_rec.experiment import add_common_args, run_experiment
from tests.support.graphs import blob_graph

torch.set_num_threads(1)


def _ring(n: int = 6) -> torch.Tensor:
    src = torch.arange(n)
    dst = (src + 1) % n
    return torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)


def _dense(edge_index: torch.Tensor, w: torch.Tensor, n: int) -> torch.Tensor:
    m = torch.zeros(n, n, dtype=w.dtype)
    m[edge_index[0], edge_index[1]] = w
    return m


def test_structure_augmentor_rows_sum_to_one_and_isolated_self_loop() -> None:
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # node 3 isolated
    aug = StructureAugmentor(5, 8)
    out_ei, w = aug(torch.randn(4, 5), ei)
    s = _dense(out_ei, w, 4)
    torch.testing.assert_close(s.sum(1), torch.ones(4))
    assert s[3, 3] == 1 and s[0, 0] == 0


def test_attribute_augmentor_unit_rows() -> None:
    out = AttributeAugmentor(7, 16)(torch.randn(5, 7))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_folded_augmentors_match_the_layer_by_layer_forms() -> None:
    """The folded attribute map and the per-node GAT scores give the released code's values and grads."""
    torch.manual_seed(0)
    x = torch.randn(6, 7, dtype=torch.float64)
    attr = AttributeAugmentor(7, 16).double()
    ref = torch.nn.functional.normalize(attr.lin2(attr.lin1(x)), dim=1)
    (g_ref,) = torch.autograd.grad(ref.square().sum() + ref[:, 0].sum(), attr.lin1.weight)
    out = attr(x)
    (g_out,) = torch.autograd.grad(out.square().sum() + out[:, 0].sum(), attr.lin1.weight)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g_out, g_ref)

    ei = _ring()
    struct = StructureAugmentor(7, 8).double()
    h = struct.proj(x)
    logits = torch.nn.functional.leaky_relu(torch.cat([h[ei[0]], h[ei[1]]], 1) @ struct.att, 0.1).squeeze(1)
    e = _dense(ei, logits.exp(), 6)
    torch.testing.assert_close(_dense(*struct(x, ei), 6), e / e.sum(1, keepdim=True))


def test_propagate_and_structure_mse_match_dense() -> None:
    n, ei = 6, _ring()
    w = torch.rand(ei.shape[1], dtype=torch.float64)
    x = torch.randn(n, 3, dtype=torch.float64)
    g = _dense(ei, w, n)
    torch.testing.assert_close(propagate(ei, w, x, 3), g @ g @ g @ x)
    a = _dense(ei, torch.ones_like(w), n)
    torch.testing.assert_close(structure_mse(ei, w, n), ((g + torch.eye(n, dtype=w.dtype) - a) ** 2).mean())


def test_segment_softmax_matches_pyg() -> None:
    from torch_geometric.utils import softmax as pyg_softmax

    from graph_rec.clustering.augmentors import segment_softmax

    index = torch.tensor([0, 2, 0, 2, 2, 4])  # groups 1 and 3 are empty
    logits = torch.randn(6, dtype=torch.float64, requires_grad=True) * 30
    torch.testing.assert_close(segment_softmax(logits, index, 5), pyg_softmax(logits, index, num_nodes=5))
    torch.autograd.gradcheck(lambda x: segment_softmax(x, index, 5), (logits.detach().requires_grad_(),))


def test_propagate_gradients_match_autograd_in_any_edge_order() -> None:
    # Edges shuffled out of (row, col) order and one weight-1 self-loop, as with_isolated_self_loops appends.
    n, ei = 6, _ring()
    ei = torch.cat([ei, torch.tensor([[2], [2]])], 1)[:, torch.randperm(ei.shape[1] + 1)]
    w = torch.rand(ei.shape[1], dtype=torch.float64, requires_grad=True)
    x = torch.randn(n, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda w, x: propagate(ei, w, x, 3), (w, x))
    g = _dense(ei, w, n)
    (propagate(ei, w, x, 2) ** 2).sum().backward()
    dw, dx = w.grad.clone(), x.grad.clone()
    w.grad = x.grad = None
    ((g @ g @ x) ** 2).sum().backward()
    torch.testing.assert_close((dw, dx), (w.grad, x.grad))


def test_info_nce_matches_formula() -> None:
    z1, z2 = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    s = torch.nn.functional.cosine_similarity(z1[:, None], z2[None], dim=-1) / 0.5
    e = s.exp()
    ref = -torch.log(e.diagonal() / (e.sum(1) - e.diagonal())).mean()
    torch.testing.assert_close(info_nce(z1, z2, 0.5), ref)
    assert info_nce(z1, z1, 0.1) < info_nce(z1, z2, 0.1)


def test_fused_info_nce_gradients() -> None:
    z1 = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: info_nce(a, b, 0.7), (z1, z2))
    # T = 0.01: logits up to 100 take the shifted-exponential branch
    assert torch.autograd.gradcheck(lambda a, b: info_nce(a, b, 0.01), (z1, z2))
    s = torch.nn.functional.cosine_similarity(z1[:, None], z2[None], dim=-1) / 0.01
    off = s.masked_fill(torch.eye(7, dtype=torch.bool), float("-inf"))
    torch.testing.assert_close(info_nce(z1, z2, 0.01), (off.logsumexp(1) - s.diagonal()).mean())
    # rows the Encoder already normalised: skipping the second normalisation changes nothing, gradients included
    x1, x2 = z1.detach().clone().requires_grad_(), z2.detach().clone().requires_grad_()
    enc = lambda x: torch.nn.functional.normalize(x, dim=1)  # noqa: E731
    twice = torch.autograd.grad(info_nce(enc(x1), enc(x2), 0.7), (x1, x2))
    once = torch.autograd.grad(info_nce(enc(x1), enc(x2), 0.7, unit_rows=True), (x1, x2))
    torch.testing.assert_close(once, twice)
    # bfloat16 products: same loss and gradients up to bf16 rounding
    a, b = torch.randn(300, 32, requires_grad=True), torch.randn(300, 32, requires_grad=True)
    exact = info_nce(a, b)
    ga = torch.autograd.grad(exact, a)[0]
    fast = info_nce(a, b, matmul_dtype=torch.bfloat16)
    gf = torch.autograd.grad(fast, a)[0]
    assert fast.dtype == torch.float32 and abs(fast.item() - exact.item()) < 1e-2
    assert torch.nn.functional.cosine_similarity(ga.flatten(), gf.flatten(), dim=0) > 0.99


def test_refinement_masks_confident_disagreeing_edges() -> None:
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    pred = torch.tensor([0, 1, 1])
    high = torch.tensor([True, True, False])
    f = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    m = refinement_multiplier(ei, pred, high, f, f)
    assert m[0] == 0 and m[1] == 0  # 0 and 1 confident with different labels
    assert (m[2:] >= 0).all() and (m[2:] <= 1).all()
    w = refined_weights(
        torch.tensor([[0, 1, 1, 2, 2], [1, 0, 2, 1, 2]]), torch.ones(5), torch.tensor([0.0, 1, 1, 1, 1]), 3
    )
    dense = _dense(torch.tensor([[0, 1, 1, 2, 2], [1, 0, 2, 1, 2]]), w, 3)
    torch.testing.assert_close(dense.sum(1)[1:], torch.ones(2))
    assert dense[0].sum() == 0  # node 0 has no self-loop entry to fall back on: row stays empty


def test_high_confidence_quantile() -> None:
    conf = torch.linspace(0, 1, 101)
    assert int(high_confidence_mask(conf, 0.95).sum()) == 6


def test_adversarial_flips_augmentor_gradient() -> None:
    enc = torch.nn.Parameter(torch.tensor(2.0))
    aug = torch.nn.Parameter(torch.tensor(3.0))
    lc = enc * aug  # d/d enc = 3, d/d aug = 2
    la = aug**2  # d/d aug = 6
    backward("adversarial", Losses(lc, la, 0.5), [enc], [aug])
    assert enc.grad.item() == 3 and aug.grad.item() == pytest.approx(-2 + 3)
    enc.grad = aug.grad = None
    backward("joint", Losses(enc * aug, aug**2, 0.5), [enc], [aug])
    assert enc.grad.item() == 3 and aug.grad.item() == pytest.approx(2 + 3)
    with pytest.raises(KeyError, match="adversarial"):
        backward("nope", Losses(lc, la, 0.5), [enc], [aug])


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    data = default_data_root() / path.stem
    if data.is_dir():
        g = load_graph(data)
        cfg.validate(g.num_features)
        assert cfg.n_clusters == g.num_classes
    else:
        cfg.validate()


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"n_clusters": 3, "learning_rate": 1}))
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(bad)
    bad.write_text(json.dumps({"n_clusters": "3"}))
    with pytest.raises(ValueError, match="n_clusters"):
        load_config(bad)
    with pytest.raises(ValueError, match="pca_dim"):
        GraphLearnerConfig(n_clusters=2, pca_dim=50).validate(num_features=10)


def test_set_overrides_any_field_and_bad_ones_blame_the_flag(tmp_path: Path) -> None:
    from graph_rec.clustering.config import parse_assignments

    good = tmp_path / "c.json"
    good.write_text(json.dumps({"n_clusters": 3}))
    sets = parse_assignments(["smooth_steps=3", "temperature=1", "objective=joint", "bf16=true"])
    cfg = load_config(good, sets)
    assert (cfg.smooth_steps, cfg.temperature, cfg.objective, cfg.bf16) == (3, 1.0, "joint", True)
    with pytest.raises(ValueError, match=r"overridden by --set.*learning_rate"):
        load_config(good, parse_assignments(["learning_rate=0.1"]))
    with pytest.raises(ValueError, match=r"overridden by --set.*smooth_steps='x'"):
        load_config(good, parse_assignments(["smooth_steps=x"]))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_assignments(["smooth_steps"])


def run(dataset: str | Path, *flags: str) -> dict[str, Any]:
    """The shared runner on parsed flags, as ``python -m graph_rec train graphlearner`` calls it."""
    import argparse

    parser = argparse.ArgumentParser()
    add_common_args(parser, SPEC)
    argv = [
        "--dataset",
        str(dataset),
        "--seeds",
        "1",
        "--epochs",
        "30",
        "--eval-every",
        "10",
        "--threads",
        "1",
    ]
    return run_experiment(SPEC, parser.parse_args([*argv, *flags]), argv)


@pytest.mark.parametrize(
    ("objective", "bf16", "accumulate"),
    [
        ("adversarial", False, False),
        ("joint", False, False),
        ("adversarial", True, False),
        ("joint", False, True),
    ],
)
def test_smoke_run_on_synthetic_graph(tmp_path: Path, objective: str, bf16: bool, accumulate: bool) -> None:
    blob_graph(tmp_path / "blobs")
    # refinement after epoch 10 every 10 epochs exercises stage 2 in a 30-epoch run
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            {
                "n_clusters": 3,
                "pca_dim": 16,
                "embed_dim": 32,
                "attr_hidden": 32,
                "refine_start": 10,
                "refine_every": 10,
                "lr_encoder": 1e-3,
                "final_n_init": 5,
                "accumulate_grads": accumulate,
            }
        )
    )
    out = run(
        tmp_path / "blobs", "--config", str(cfg), "--objective", objective, *(["--bf16"] if bf16 else [])
    )
    assert out["run"]["seeds"] == [0] and out["config"]["objective"] == objective == out["variant"]
    for key in ("best/acc", "best/nmi", "last/ari", "last/f1", "single/acc"):
        assert np.isfinite(out["metrics"][key]["mean"])
    assert out["metrics"]["best/acc"]["mean"] > 60  # three well separated communities
    history = out["per_seed"][0]["history"]
    assert [row["epoch"] for row in history] == list(range(30))
    assert "acc" in history[10] and "acc" not in history[11]
    # label-free selection: the evaluation epoch with the highest silhouette, scored afterwards by the labels
    evals = [row for row in history if "acc" in row]
    chosen = max(evals, key=lambda row: row["silhouette"])
    assert out["per_seed"][0]["extra"]["selected_epoch"] == chosen["epoch"]
    assert out["metrics"]["selected/acc"]["mean"] == chosen["acc"]


@pytest.mark.gpu
def test_smoke_run_on_cuda(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    blob_graph(tmp_path / "blobs")
    out = run(tmp_path / "blobs", "--device", "cuda", "--epochs", "20")
    assert out["run"]["device"] == "cuda" and out["metrics"]["best/acc"]["mean"] > 60


def test_accumulated_gradients_are_running_sums() -> None:
    """accumulate_grads hands Adam the sum of all step gradients, as the released code's missing zero_grad does."""
    from graph_rec.clustering.trainer import accumulate_gradients

    p = torch.nn.Parameter(torch.zeros(3))
    sums = [torch.zeros(3)]
    steps = [torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, -1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])]
    for k, g in enumerate(steps):
        p.grad = g.clone()  # each step's own, freshly computed gradient
        accumulate_gradients([p], sums)
        torch.testing.assert_close(p.grad, torch.stack(steps[: k + 1]).sum(0))


def test_silhouette_is_label_free_and_ranks_partitions() -> None:
    from graph_rec.metrics.clustering import silhouette

    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 5
    z = np.concatenate([c + rng.normal(size=(30, 8)) for c in centres])
    truth = np.repeat(np.arange(3), 30)
    assert silhouette(z, truth) > 0.5 > silhouette(z, rng.permutation(truth))
    assert silhouette(z, np.zeros(90, dtype=int)) == -1.0  # one cluster: the worst score, not an error
