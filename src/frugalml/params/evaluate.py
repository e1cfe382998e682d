"""``params:evaluate``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from frugalml.params.core import Strict, register_params


@register_params("evaluate")
class EvaluateParams(Strict):
    """Evaluation settings, and what a model no better than the majority class does to the run."""

    threshold: float = Field(default=0.5, gt=0, lt=1)
    calibration_bins: int = Field(default=15, ge=2)
    # a model whose predictions collapse to one class, or that does not beat the majority class by the margin
    # below: fail stops the run (ModelError, after the report, figures and predictions are saved); warn logs it
    useless_model: Literal["fail", "warn"] = "fail"
    # the share of the majority baseline's errors the model must fix: (accuracy - majority) / (1 - majority)
    min_error_reduction_over_majority: float = Field(default=0.05, ge=0, lt=1, allow_inf_nan=False)
    # the share of the way from chance macro-F1 (1 / K, guessing at the class shares) to 1 the model must go:
    # (macro_f1 - 1/K) / (1 - 1/K); catches a model that buys accuracy by giving up on the minority classes
    min_macro_f1_gain_over_chance: float = Field(default=0.05, ge=0, lt=1, allow_inf_nan=False)
    # precision/recall/F1/roc_auc/average_precision of data.positive_label under their binary names: auto = for a
    # binary task only; true = also for K > 2 classes (one class against the rest); false = never
    positive_class_metrics: bool | Literal["auto"] = "auto"
