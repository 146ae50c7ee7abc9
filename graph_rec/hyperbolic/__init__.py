"""Lorentz-model toolkit shared by Hgformer and HCTS: maps and distances (:mod:`.lorentz`, built on geoopt)
and layers (:mod:`.layers`)."""

from graph_rec.hyperbolic import lorentz
from graph_rec.hyperbolic.layers import HypLinear, LorentzBatchNorm

__all__ = ["HypLinear", "LorentzBatchNorm", "lorentz"]
