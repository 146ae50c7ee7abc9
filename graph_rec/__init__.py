"""graph_rec: single-node graph and recommendation models (GraphLearner, graph-transformer parts,
Hgformer, HCTS, GMT). Self-contained: never imports ray, vllm or deepspeed."""
