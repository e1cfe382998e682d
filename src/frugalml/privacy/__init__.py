"""Differential privacy for torch models: ghost norms, the DP-SGD step and the training bookkeeping.

A library below :mod:`frugalml.nodes` (it imports none of nodes, pipelines, datasets, governance or hooks):

- :mod:`frugalml.privacy.norms`: the per-layer norm rules and their registry (:func:`register_norm_sampler`).
- :mod:`frugalml.privacy.ghost`: :class:`GhostNorms`, per-sample gradient norms during one backward pass.
- :mod:`frugalml.privacy.step`: :func:`dp_sgd_step`, a clipped, noised step by book-keeping.
- :mod:`frugalml.privacy.training`: :class:`PrivateTraining`, Poisson batches, calibrated noise, the accountant.
"""

from __future__ import annotations

from frugalml.privacy.ghost import GhostNorms, validate_layers
from frugalml.privacy.norms import (
    NORM_SAMPLERS,
    NormSampler,
    norm_sampler,
    register_norm_sampler,
    save_first_input,
    squared_norms,
    supported,
)
from frugalml.privacy.step import dp_sgd_step
from frugalml.privacy.training import PrivateTraining, check_dp_compatible

__all__ = [
    "NORM_SAMPLERS",
    "GhostNorms",
    "NormSampler",
    "PrivateTraining",
    "check_dp_compatible",
    "dp_sgd_step",
    "norm_sampler",
    "register_norm_sampler",
    "save_first_input",
    "squared_norms",
    "supported",
    "validate_layers",
]
