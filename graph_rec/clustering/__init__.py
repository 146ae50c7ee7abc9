"""GraphLearner: node clustering with learnable attribute and structure augmentors (Yang et al., MM 2024).

``python -m graph_rec train graphlearner --dataset cora`` trains, evaluates and prints ACC/NMI/ARI/F1.
The module layout follows the algorithm: ``preprocess`` (PCA, smoothing), ``augmentors`` (the two
learnable views), ``model`` (shared encoder + InfoNCE), ``objectives`` (adversarial / joint updates),
``refine`` (stage-2 pseudo-label and cross-view refinement), ``trainer`` (one seed) and ``runner`` (CLI).
"""
