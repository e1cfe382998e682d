"""``params:evaluate``."""

from __future__ import annotations

from pydantic import Field

from frugalml.params.core import Strict, register_params


@register_params("evaluate")
class EvaluateParams(Strict):
    """Evaluation settings."""

    threshold: float = Field(default=0.5, gt=0, lt=1)
    calibration_bins: int = Field(default=15, ge=2)
