"""The label and era of a corpus folder (``ingest.label_rule``): a folder no rule labels is never ham."""

from __future__ import annotations

import fnmatch
import math
from typing import Any

from frugalml.errors import SchemaError
from frugalml.params import IngestParams


def _label_outcome(group: Any, rule: dict[str, int | None]) -> tuple[int | None, str | None]:
    """The label of a corpus folder under ``rule``, or ``None`` and the quarantine reason."""
    name = "" if group is None or (isinstance(group, float) and math.isnan(group)) else str(group)
    folder = name.lower()
    matched = {p: label for p, label in rule.items() if label is not None and fnmatch.fnmatchcase(folder, p.lower())}
    labels = set(matched.values())
    if len(labels) == 1:
        return labels.pop(), None
    if labels:
        return None, (
            f"ambiguous_group: folder '{name}' matches ingest.label_rule patterns {list(matched)} of labels "
            f"{sorted(labels)}"
        )
    return None, f"unlabelled_group: folder '{name}' matches no ingest.label_rule pattern {list(rule)}"


def label_from_group(group: str, rule: dict[str, int | None] | None = None) -> int:
    """The label of a corpus group (folder) by ``ingest.label_rule``: shell patterns, case-insensitive.

    The default rule labels the SpamAssassin corpus: ``spam*`` is spam (1), ``*ham*`` is ham (0). A folder
    that matches no pattern is never given a label by default.

    Args:
        group: A corpus group such as ``easy-ham-1`` or ``spam-2``.
        rule: Pattern -> label (``ingest.label_rule``); ``None``: the default rule.

    Returns:
        The label.

    Raises:
        SchemaError: When the folder matches no pattern, or patterns of different labels.
    """
    label, reason = _label_outcome(group, rule if rule is not None else IngestParams().label_rule)
    if label is None:
        raise SchemaError(str(reason))
    return label


def era_from_group(group: str) -> int:
    """The collection era of a corpus group (``*-1`` = 1, ``*-2`` = 2; 0 when unknown).

    Args:
        group: A corpus group.

    Returns:
        The era number.
    """
    tail = group.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
