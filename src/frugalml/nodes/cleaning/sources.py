"""Hand labels plus weak labels -> one frame with the shared label columns of :mod:`frugalml.labels`."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from frugalml.errors import EmptyDatasetError, SchemaError
from frugalml.labels import CONFIDENCE_COLUMN, GOLD, SOURCE_COLUMN, WEAK, prob_columns
from frugalml.nodes.cleaning.inputs import REASON_COLUMN, check_pred_probs, class_indices
from frugalml.nodes.split import id_column_of
from frugalml.params import DataSchema

logger = logging.getLogger(__name__)


def _require_columns(frame: pd.DataFrame, schema: DataSchema, what: str) -> None:
    required = [*schema.text_columns, schema.label_column, id_column_of(schema)]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise SchemaError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)[:30]}")


def _with_label_columns(frame: pd.DataFrame, schema: DataSchema, *, source: str, what: str) -> pd.DataFrame:
    """A copy with ``label_source``, ``label_confidence`` and ``label_prob_<value>`` filled where absent."""
    out = frame.copy()
    y = class_indices(out[schema.label_column], schema, what=what)
    columns = prob_columns(schema.labels)
    present = [c for c in columns if c in out.columns]
    if present and len(present) != len(columns):
        raise SchemaError(f"{what} has soft-label column(s) {present} but not all of {columns}")
    one_hot = np.eye(len(schema.labels))[y]
    soft = np.array(out[columns].apply(pd.to_numeric, errors="coerce"), dtype=np.float64) if present else one_hot
    unset = np.isnan(soft).all(axis=1)
    soft[unset] = one_hot[unset]
    check_pred_probs(soft, len(schema.labels), ids=out[id_column_of(schema)], what=f"{what} {columns}")
    out[columns] = soft
    if SOURCE_COLUMN not in out.columns:
        out[SOURCE_COLUMN] = source
    out[SOURCE_COLUMN] = out[SOURCE_COLUMN].fillna(source).astype(str)
    confidence = soft[np.arange(len(out)), y]
    if CONFIDENCE_COLUMN in out.columns:
        given = pd.to_numeric(out[CONFIDENCE_COLUMN], errors="coerce").to_numpy(dtype=np.float64)
        confidence = np.where(np.isnan(given), confidence, given)
    out[CONFIDENCE_COLUMN] = confidence
    return out


def merge_labelled_rows(
    train_labelled: pd.DataFrame, weak_labels: pd.DataFrame | None, schema: DataSchema
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The work of :func:`~frugalml.nodes.cleaning.merge_label_sources`, on a parsed schema.

    Args:
        train_labelled: Hand-labelled training rows.
        weak_labels: The weak_label stage's output, or ``None``.
        schema: The dataset schema.

    Returns:
        The merged rows, and the weak rows that carry no hard label (with a ``reason``).

    Raises:
        EmptyDatasetError: When there are no hand-labelled rows.
        SchemaError: On missing columns, undeclared labels, incomplete soft labels, or an id that is both
            hand- and weak-labelled (or repeats).
    """
    if train_labelled.empty:
        raise EmptyDatasetError("train_labelled has no rows to clean")
    _require_columns(train_labelled, schema, "train_labelled")
    gold = _with_label_columns(train_labelled, schema, source=GOLD, what="train_labelled")
    frames, rejected = [gold], train_labelled.iloc[:0].assign(**{REASON_COLUMN: pd.Series(dtype=str)})
    if weak_labels is not None and len(weak_labels):
        _require_columns(weak_labels, schema, "weak_labels")
        unlabelled = weak_labels[schema.label_column].isna()
        rejected = weak_labels[unlabelled].assign(**{REASON_COLUMN: "weak_label_missing: no hard label to clean"})
        weak = _with_label_columns(weak_labels[~unlabelled], schema, source=WEAK, what="weak_labels")
        frames.append(weak)
    merged = pd.concat(frames, ignore_index=True)
    id_column = id_column_of(schema)
    repeated = merged[id_column][merged[id_column].duplicated()]
    if len(repeated):
        raise SchemaError(
            f"id column '{id_column}' repeats across train_labelled and weak_labels: "
            f"{repeated.unique()[:5].tolist()} ({repeated.nunique()} ids)"
        )
    logger.info("cleaning %d rows (%d hand-labelled, %d weak)", len(merged), len(gold), len(merged) - len(gold))
    return merged, rejected.reset_index(drop=True)
