"""``params:ingest``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from frugalml.params.core import Strict, register_params


class SampleParams(Strict):
    """A fixed, seeded sample of messages (tests and quick runs)."""

    n: int = Field(gt=0)
    seed: int = 0


def _default_label_rule() -> dict[str, int | None]:
    return {"spam*": 1, "*ham*": 0}


@register_params("ingest")
class IngestParams(Strict):
    """Parsing, labelling and de-duplication of raw e-mail."""

    sample: SampleParams | None = None
    dedup_on: Literal["text", "raw", "none"] = "text"
    min_text_chars: int = Field(default=1, ge=0)
    max_body_chars: int = Field(default=200_000, gt=0)
    verify_message_checksums: bool = True
    # corpus folder (group) name pattern -> label, shell-style and case-insensitive; a message whose folder
    # matches no pattern, or patterns of two different labels, is quarantined (never defaulted to a label).
    # Overrides merge key by key over the defaults; a pattern set to null is removed.
    label_rule: dict[str, int | None] = Field(default_factory=_default_label_rule)
    # a body whose share of control / non-printable characters is above this is quarantined as binary_body;
    # isolated control characters (NUL, ESC, ...) below it are stripped
    max_control_share: float = Field(default=0.1, ge=0, le=1, allow_inf_nan=False)

    @field_validator("label_rule")
    @classmethod
    def _patterns(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        if any(not pattern.strip() for pattern in value):
            raise ValueError("label_rule patterns must not be empty")
        kept: dict[str, int | None] = {pattern: label for pattern, label in value.items() if label is not None}
        if not kept:
            raise ValueError("label_rule needs at least one pattern with a label, e.g. {'spam*': 1, '*ham*': 0}")
        return kept
