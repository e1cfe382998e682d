"""Backward-compatible home of the ghost norms and the DP-SGD step, now in :mod:`frugalml.privacy`.

``from frugalml.nodes.privacy import GhostNorms, dp_sgd_step`` keeps working; new code imports
:mod:`frugalml.privacy` (where the notation and the per-layer norm derivations are documented, and where
:func:`~frugalml.privacy.register_norm_sampler` adds rules for new layer types).
"""

from __future__ import annotations

from typing import Any

from frugalml.privacy.ghost import GhostNorms, _capture, _saved_inputs
from frugalml.privacy.norms import _bag_of, _grouped_square_sum, register_norm_sampler, squared_norms, supported
from frugalml.privacy.step import _accumulate_clipped, dp_sgd_step

__all__ = [
    "GhostNorms",
    "_accumulate_clipped",
    "_bag_of",
    "_capture",
    "_grouped_square_sum",
    "_saved_inputs",
    "dp_sgd_step",
    "register_norm_sampler",
    "squared_norms",
]


def __getattr__(name: str) -> Any:
    """``SUPPORTED``: the layer classes with a registered norm rule, read from the registry when asked for."""
    if name == "SUPPORTED":
        return supported()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
