"""``params:split``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from frugalml.params.core import Strict, register_params


class TemporalSplit(Strict):
    """Train on one era, test on a later one (shell-style patterns on a column)."""

    column: str | None = None  # null: params:data.group_column
    train_patterns: list[str] = Field(default_factory=lambda: ["*-1"], min_length=1)
    test_patterns: list[str] = Field(default_factory=lambda: ["*-2"], min_length=1)


@register_params("split")
class SplitParams(Strict):
    """How labelled rows become train / dev / gold-dev / test sets."""

    strategy: Literal["random", "temporal"] = "random"
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    dev_fraction: float = Field(default=0.1, gt=0, lt=1)
    gold_dev_size: int = Field(default=200, ge=0)
    unlabelled_fraction: float = Field(default=0.0, ge=0, lt=1)
    temporal: TemporalSplit = Field(default_factory=TemporalSplit)
