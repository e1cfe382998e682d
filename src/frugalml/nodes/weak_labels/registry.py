"""Choosing LFs: ``params:weak_label.lfs`` (names, ``family:<name>``, ``all``) -> LF specs with class indices."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from frugalml.errors import ParameterError
from frugalml.nodes.weak_labels import library  # noqa: F401  (importing the library registers its rules)
from frugalml.nodes.weak_labels.spec import ABSTAIN, LABELLING_FUNCTIONS, LFSpec

logger = logging.getLogger(__name__)


def registered_lfs() -> dict[str, LFSpec]:
    """All registered LFs (the library's and the user's).

    Returns:
        Name -> spec.
    """
    return LABELLING_FUNCTIONS.items()


def create_lfs(selection: list[str], label_names: list[str], columns: Iterable[str] | None = None) -> list[LFSpec]:
    """Resolve ``params:weak_label.lfs`` into LF specs with class indices.

    Names are strict: a named LF must exist and vote a label the data has. ``all`` and ``family:<name>``
    select the LFs that *fit* the data: those voting one of ``label_names`` and (when ``columns`` is given)
    reading only columns the data has; the others are skipped with a log line.

    Args:
        selection: LF names, ``family:<name>`` entries, or ``all``.
        label_names: ``params:data.label_names`` (library rules vote by name).
        columns: The data's columns, to skip LFs of ``all``/families that cannot run on it.

    Returns:
        The LFs, in selection order, without duplicates (may be empty when nothing fits).

    Raises:
        ParameterError: On an unknown name or family, or a named library rule voting a label the data lacks.
    """
    registry = registered_lfs()
    available = set(columns) if columns is not None else None
    chosen: list[LFSpec] = []
    skipped: list[str] = []
    for entry in selection:
        if entry == "all" or entry.startswith("family:"):
            family = None if entry == "all" else entry.split(":", 1)[1]
            matches = [spec for spec in registry.values() if family is None or spec.family == family]
            if family is not None and not matches:
                families = sorted({spec.family for spec in registry.values()})
                raise ParameterError(f"weak_label.lfs: no LF family '{family}' (families: {families})")
            fits = [
                spec for spec in matches
                if (spec.vote is None or spec.vote in label_names)
                and (available is None or set(spec.columns) <= available)
            ]  # fmt: skip
            skipped += [spec.name for spec in matches if spec not in fits]
            matches = fits
        elif entry in registry:
            matches = [registry[entry]]
        else:
            raise ParameterError(
                f"weak_label.lfs: unknown labelling function '{entry}' (registered: {sorted(registry)}); "
                "register your own with frugalml.nodes.weak_labels.register_lf"
            )
        chosen.extend(spec for spec in matches if spec.name not in {c.name for c in chosen})
    if skipped:
        logger.info("weak_label.lfs: skipped %d LFs that do not fit this data: %s", len(skipped), sorted(set(skipped)))
    resolved = []
    for spec in chosen:
        if spec.vote is not None:
            if spec.vote not in label_names:
                raise ParameterError(
                    f"labelling function '{spec.name}' votes '{spec.vote}', which is not in data.label_names "
                    f"{label_names}: choose LFs that fit your labels"
                )
            resolved.append(_bind_vote(spec, label_names.index(spec.vote)))
        else:
            resolved.append(spec)
    return resolved


def _bind_vote(spec: LFSpec, index: int) -> LFSpec:
    condition, frame_condition = spec.function, spec.vectorized

    def row_lf(row: Any) -> int:
        return index if condition(row) else ABSTAIN

    def frame_lf(frame: pd.DataFrame) -> np.ndarray:
        assert frame_condition is not None
        return np.where(np.asarray(frame_condition(frame), dtype=bool), index, ABSTAIN)

    return LFSpec(
        name=spec.name,
        function=row_lf,
        family=spec.family,
        columns=spec.columns,
        rationale=spec.rationale,
        vectorized=frame_lf if frame_condition is not None else None,
        vote=spec.vote,
    )
