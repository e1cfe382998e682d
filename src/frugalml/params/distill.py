"""``params:distill``: the student that learns the trained model's soft labels, the rows it learns them on, the gate.

The student's privacy is ``train.privacy`` (the same DP-SGD, spent again on every row it reads); its other
training settings are ``train``'s with ``distill.train`` merged over them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from frugalml.params.core import Strict, register_params
from frugalml.params.train import ModelParams, TrainParams

Source = Literal["train", "pool"]
_ROWS: tuple[Source, ...] = ("train", "pool")


@register_params("distill")
class DistillParams(Strict):
    """The distill stage (``kedro run --pipeline=distill``; in the default chain when ``enabled``)."""

    enabled: bool = False  # true: `make run` / `kedro run` also distils (and evaluates the student)
    student: ModelParams = Field(default_factory=ModelParams)  # a train.model block; default the n-gram bag
    # the rows the teacher labels: `train` (train_set, what the teacher was trained on), `pool` (unlabelled_pool)
    rows: list[Source] = Field(default_factory=lambda: list(_ROWS), min_length=1)
    temperature: float = Field(default=2.0, gt=0, le=100, allow_inf_nan=False)  # softens the teacher's probs
    # a training row's target: label_weight x its own label + (1 - label_weight) x the teacher's (pool rows: teacher's)
    label_weight: float = Field(default=0.5, ge=0, le=1, allow_inf_nan=False)
    train: dict[str, Any] = Field(default_factory=dict)  # the student's train settings (epochs, lr, batch_size...)
    # the gate: the student may lose at most this much dev accuracy against the teacher
    max_dev_accuracy_drop: float = Field(default=0.01, ge=0, le=1, allow_inf_nan=False)
    on_accuracy_drop: Literal["fail", "warn"] = "fail"

    @field_validator("rows")
    @classmethod
    def _unique(cls, value: list[Source]) -> list[Source]:
        if len(set(value)) != len(value):
            raise ValueError(f"each source at most once, got {value}")
        return value

    @field_validator("train")
    @classmethod
    def _no_privacy(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted({"privacy", "model", "targets"} & set(value))
        if taken:
            raise ValueError(
                f"{taken} cannot be set here: the student's privacy is train.privacy (one DP setting for every "
                "training of these rows), its model is distill.student, and it always learns soft targets"
            )
        TrainParams.model_validate(value)  # unknown keys and bad values are named now, not after the teacher ran
        return value
