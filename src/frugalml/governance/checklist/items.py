"""Checklist items and what they add up to: each passes, fails, is unknown or skipped, with a reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

STATUSES = ("pass", "fail", "unknown", "skipped")
#: Statuses that make ``frugalml check`` exit 1: a deployment gate never treats "could not tell" as safe.
BLOCKING_STATUSES = frozenset({"fail", "unknown"})


@dataclass(frozen=True)
class CheckItem:
    """One checklist line."""

    name: str
    status: str  # pass | fail | unknown | skipped
    detail: str


def exit_status(items: Sequence[CheckItem]) -> int:
    """The exit status of ``frugalml check``: 1 when any item fails or is unknown, else 0.

    Args:
        items: The checklist's items.

    Returns:
        0 or 1.
    """
    return 1 if any(item.status in BLOCKING_STATUSES for item in items) else 0
