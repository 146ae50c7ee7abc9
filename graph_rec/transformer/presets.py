"""Named model variants for the family comparison (one line each; ``GTConfig`` documents the fields)."""

from __future__ import annotations

from graph_rec.transformer.model import GTConfig

PRESETS: dict[str, GTConfig] = {
    # reference points
    "gcn_only": GTConfig(gnn="gcn", gnn_placement="before", gnn_layers=2, layers=0),
    "vanilla": GTConfig(),
    # family 1: GNN as auxiliary module
    "gcn_before": GTConfig(gnn="gcn", gnn_placement="before"),
    "sage_alternating": GTConfig(gnn="sage", gnn_placement="alternating"),
    "gat_parallel": GTConfig(gnn="gat", gnn_placement="parallel"),
    "gin_before": GTConfig(gnn="gin", gnn_placement="before"),
    # family 2: positional encodings
    "pe_degree": GTConfig(pe=("degree",)),
    "pe_laplacian": GTConfig(pe=("laplacian",)),
    "pe_svd": GTConfig(pe=("svd",)),
    # family 3: structure-aware attention
    "bias_spd": GTConfig(biases=("spd",)),
    "bias_edge_path": GTConfig(biases=("spd", "edge_path")),
    "bias_hop": GTConfig(biases=("hop",)),
    "mask_1hop": GTConfig(mask="1hop"),
    "mask_nhop": GTConfig(mask="nhop", mask_hops=2),
    "virtual_node": GTConfig(biases=("spd",), virtual_node=True),
}
