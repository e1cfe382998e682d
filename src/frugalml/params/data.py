"""The shared blocks: ``data`` (which columns hold what) and ``tracking`` (datasets recorded with log_input)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from frugalml.params.core import Strict, register_params


@register_params("data")
class DataSchema(Strict):
    """Which columns of a text dataset hold what. A user's own CSV/Parquet is described here."""

    text_columns: list[str] = Field(default_factory=lambda: ["subject", "body"], min_length=1)
    label_column: str = "label"
    id_column: str | None = "email_id"
    labels: list[int] = Field(default_factory=lambda: [0, 1], min_length=2)
    label_names: list[str] = Field(default_factory=lambda: ["ham", "spam"])
    positive_label: int = 1
    group_column: str | None = "group"
    # rows whose normalised text repeats an earlier row's go to validation_quarantine (none: keep every copy)
    dedup_on: Literal["text", "none"] = "text"
    # text whose share of control / non-printable characters is above this is quarantined as binary_text;
    # isolated control characters (NUL, ESC, ...) below it are stripped
    max_control_share: float = Field(default=0.1, ge=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> DataSchema:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct, got {self.labels}")
        if self.label_names and len(self.label_names) != len(self.labels):
            raise ValueError("label_names must have one name per label")
        if len(set(self.label_names)) != len(self.label_names):
            raise ValueError(
                f"label_names must be distinct (each names a class, and a probability_<name> column of the served "
                f"model), got {self.label_names}"
            )
        if self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label} is not in labels {self.labels}")
        return self


@register_params("tracking")
class TrackingParams(Strict):
    """Which catalog datasets are recorded with ``mlflow.log_input`` when loaded."""

    log_inputs: dict[str, Literal["training", "validation", "testing", "raw"]] = Field(default_factory=dict)
