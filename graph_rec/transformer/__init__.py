"""Graph-transformer components: the survey's three families in one pluggable encoder.

(1) GNN as an auxiliary module (``gnn.py``: GCN / GraphSAGE / GAT / GIN placed before, alternating
with, or in parallel to the attention layers); (2) positional encodings (``encodings.py``: degree,
Laplacian eigenvectors with random sign flip, SVD); (3) structure-aware attention (``bias.py``:
shortest-path-distance bias per head, edge encoding along shortest paths, n-hop Â^k bias, 1-hop /
n-hop masks) plus a virtual super node. ``model.py`` composes them from a ``GTConfig``;
``sampling.py`` builds the ego-subgraph token sequences; ``runner.py`` is the node-classification
comparison (``python -m graph_rec train graph_transformer --dataset cora --variant NAME``).
"""
