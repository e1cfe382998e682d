"""``params:weak_label``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from frugalml.params.core import Strict, register_params


@register_params("weak_label")
class WeakLabelParams(Strict):
    """Weak labelling: which LFs, how they are applied, how their votes are combined (nodes/weak_labels.py)."""

    lfs: list[str] = Field(default_factory=lambda: ["all"], min_length=1)  # names, family:<name>, or all
    applier: Literal["pandas", "vectorized", "dask"] = "vectorized"
    n_parallel: int = Field(default=2, ge=1)
    max_lf_failure_share: float = Field(default=0.5, ge=0, le=1)
    label_model: Literal["snorkel", "majority"] = "snorkel"
    class_balance: Literal["dev", "estimate"] | list[float] = "estimate"
    label_model_epochs: int = Field(default=500, gt=0)
    label_model_lr: float = Field(default=0.01, gt=0)
    label_model_l2: float = Field(default=0.0, ge=0)
    abstain_policy: Literal["drop", "prior"] = "drop"
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    leave_one_out: bool = True
    progress: bool = True

    @field_validator("class_balance")
    @classmethod
    def _balance(cls, value: Any) -> Any:
        if isinstance(value, list) and (any(p <= 0 for p in value) or abs(sum(value) - 1) > 1e-6):
            raise ValueError(f"class_balance must be positive and sum to 1, got {value}")
        return value
