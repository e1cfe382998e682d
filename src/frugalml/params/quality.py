"""``params:quality`` (the gates) and ``params:drift``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from frugalml.params.core import Strict, register_params


@register_params("quality")
class QualityParams(Strict):
    """Data-quality gate options (the suites themselves are files: ``conf/base/expectations/*.yml``)."""

    max_quarantine_share: float | None = Field(default=None, ge=0, le=1)  # null: each suite's own value
    example_ids: int = Field(default=5, ge=0)


class DriftThresholds(Strict):
    """Effect sizes above which a batch counts as drifted (see :mod:`frugalml.nodes.drift`)."""

    label_prior: float = Field(default=0.10, gt=0)
    length_ks: float = Field(default=0.15, gt=0)
    token_js: float = Field(default=0.03, gt=0)
    oov_rate: float = Field(default=0.05, gt=0)
    indicator_share: float = Field(default=0.10, gt=0)


@register_params("drift")
class DriftParams(Strict):
    """Drift detection between the reference (champion's training data) and a new batch."""

    enabled: bool = True
    action: Literal["flag", "block"] = "flag"
    indicator_columns: list[str] = Field(
        default_factory=lambda: ["html_only", "list_id:nonempty", "in_reply_to:nonempty", "attachment_count:positive"]
    )
    token_buckets: int = Field(default=2**18, ge=16)
    seed: int = 0
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)
