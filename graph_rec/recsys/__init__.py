"""Recommendation on user–item graphs: data pipeline and ranking metrics, LightGCN, Hgformer (hyperbolic graph
transformer), HCTS (hyperbolic cross-domain transfer) and a BiTGCF-style Euclidean transfer baseline.
Runners for the CLI live in :mod:`.runners` and :mod:`.cross_runners`."""
