"""What every cleaning stage reads and checks: column names, class indices, probability and fold checks.

Notation (see :mod:`frugalml.nodes.cleaning`): N rows, C classes (``params:data.labels``, in that order), K
folds. ``labels`` is (N,) class indices in ``0..C-1``; ``pred_probs`` is (N, C).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from frugalml.errors import EmptyDatasetError, ProbabilityError, SchemaError
from frugalml.nodes.split import id_column_of
from frugalml.params import DataSchema

PRED_PREFIX = "pred_prob_"
FOLD_COLUMN = "fold"
REASON_COLUMN = "reason"
PROBABILITY_TOLERANCE = 1e-3  # |row sum - 1| allowed in pred_probs


def pred_prob_columns(labels: list[int]) -> list[str]:
    """Out-of-fold probability column names, in the order of ``labels``.

    Args:
        labels: ``params:data.labels``.

    Returns:
        ``pred_prob_<value>`` per label.
    """
    return [f"{PRED_PREFIX}{value}" for value in labels]


def text_lists(frame: pd.DataFrame, schema: DataSchema) -> list[list[str]]:
    """The text columns of ``frame`` as lists of strings (missing text: empty), in ``schema.text_columns`` order."""
    return [frame[column].fillna("").astype(str).tolist() for column in schema.text_columns]


def label_name(schema: DataSchema, value: Any) -> str:
    """The declared name of label ``value`` (the value itself when it is not declared)."""
    names = dict(zip(schema.labels, schema.label_names or [str(v) for v in schema.labels], strict=True))
    return str(names.get(int(value), value))


def class_indices(labels: pd.Series, schema: DataSchema, *, what: str = "training data") -> np.ndarray:
    """Label values -> class indices, refusing missing or undeclared labels.

    Args:
        labels: A label column.
        schema: The dataset schema.
        what: The dataset's name, for messages.

    Returns:
        (N,) int64 indices into ``schema.labels``.

    Raises:
        EmptyDatasetError: When labels are missing.
        SchemaError: When labels fall outside ``schema.labels``.
    """
    if labels.isna().any():
        raise EmptyDatasetError(f"{int(labels.isna().sum())} rows of the {what} have no label")
    index = {value: position for position, value in enumerate(schema.labels)}

    def position(value: Any) -> int | None:
        integral = isinstance(value, int | np.integer) or (
            isinstance(value, float | np.floating) and float(value).is_integer()
        )
        return index.get(int(value)) if integral and not isinstance(value, bool) else None

    mapped = labels.map(position)
    bad = labels[mapped.isna()]
    if len(bad):
        raise SchemaError(
            f"column '{labels.name}' of the {what} holds labels outside the declared set {schema.labels}: "
            f"{bad.astype(str).value_counts().head(5).to_dict()}"
        )
    return mapped.to_numpy(dtype=np.int64)


def check_pred_probs(pred_probs: np.ndarray, n_classes: int, *, ids: Any = None, what: str = "pred_probs") -> None:
    """Refuse probabilities that are not distributions over the declared classes.

    Args:
        pred_probs: (N, C) probabilities.
        n_classes: C.
        ids: (N,) row ids, to name offending rows.
        what: What the array is, for messages.

    Raises:
        ProbabilityError: On a wrong shape, NaN or infinite values, values outside [0, 1], or rows whose sum
            is not 1 (within 1e-3).
    """
    if pred_probs.ndim != 2 or pred_probs.shape[1] != n_classes:
        raise ProbabilityError(
            f"{what} must be (N, {n_classes}), one column per declared label; got {pred_probs.shape}"
        )
    names = np.asarray(ids) if ids is not None else np.arange(len(pred_probs))

    def fail(rows: np.ndarray, problem: str) -> None:
        raise ProbabilityError(f"{what}: {int(rows.sum())} row(s) {problem}, e.g. ids {names[rows][:5].tolist()}")

    finite = np.isfinite(pred_probs).all(axis=1)
    if not finite.all():
        fail(~finite, "hold NaN or infinite probabilities")
    outside = np.asarray(((pred_probs < 0) | (pred_probs > 1)).any(axis=1))
    if outside.any():
        fail(outside, "hold probabilities outside [0, 1]")
    off = np.abs(pred_probs.sum(axis=1) - 1.0) > PROBABILITY_TOLERANCE
    if off.any():
        fail(off, f"do not sum to 1 (sums {np.round(pred_probs.sum(axis=1)[off][:3], 4).tolist()})")


def align_pred_probs(frame: pd.DataFrame, pred_probs: pd.DataFrame, schema: DataSchema) -> np.ndarray:
    """The probability rows of ``frame``'s ids, in ``frame``'s order.

    Args:
        frame: Labelled rows.
        pred_probs: Out-of-fold probabilities with the id column and ``pred_prob_<value>`` columns.
        schema: The dataset schema.

    Returns:
        (N, C) probabilities aligned with ``frame``.

    Raises:
        ProbabilityError: When columns are missing, ids repeat, or the ids differ between the two frames.
    """
    id_column, columns = id_column_of(schema), pred_prob_columns(schema.labels)
    missing = [c for c in [id_column, *columns] if c not in pred_probs.columns]
    if missing:
        raise ProbabilityError(f"pred_probs lacks column(s) {missing}; it has {list(pred_probs.columns)[:20]}")
    repeated = pred_probs[id_column][pred_probs[id_column].duplicated()]
    if len(repeated):
        raise ProbabilityError(f"pred_probs repeats ids, e.g. {repeated.head(5).tolist()}")
    indexed = pred_probs.set_index(id_column)
    wanted = pd.Index(frame[id_column])
    absent, extra = wanted.difference(indexed.index), indexed.index.difference(wanted)
    if len(absent) or len(extra):
        raise ProbabilityError(
            f"ids do not match between the labelled rows and pred_probs: {len(absent)} labelled row(s) without "
            f"probabilities (e.g. {absent[:3].tolist()}), {len(extra)} probability row(s) without a labelled row "
            f"(e.g. {extra[:3].tolist()})"
        )
    return indexed.loc[wanted, columns].to_numpy(dtype=np.float64)


def check_folds(labels: np.ndarray, folds: int, schema: DataSchema) -> None:
    """Refuse data that stratified K-fold cannot split.

    Args:
        labels: (N,) class indices.
        folds: K.
        schema: The dataset schema (for label names).

    Raises:
        EmptyDatasetError: When only one class is present, or a class has fewer than K rows.
    """
    counts = np.bincount(labels, minlength=len(schema.labels))
    names = schema.label_names or [str(v) for v in schema.labels]
    present = np.flatnonzero(counts)
    if len(present) < 2:
        only = names[present[0]] if len(present) else "none"
        raise EmptyDatasetError(f"label cleaning needs at least two classes; the training set holds only {only!r}")
    small = [f"{names[k]!r} ({counts[k]} rows)" for k in range(len(counts)) if 0 < counts[k] < folds]
    if small:
        raise EmptyDatasetError(
            f"clean.folds is {folds} but class(es) {', '.join(small)} have fewer rows than folds; "
            "lower clean.folds or label more rows"
        )
