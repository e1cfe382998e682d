"""Check a labelled text table against its declared schema, then split it into the project's sets.

Notation: N rows in; L labelled, U unlabelled (label missing). Sets out (ARCHITECTURE.md, 03_primary):
``train_labelled`` (fit), ``dev_labelled`` (early stopping, tuning), ``dev_gold`` (small, kept apart for
later stages: writing labelling functions, calibrating gates), ``test_gold`` (final evaluation only) and
``unlabelled_pool`` (rows without a label, plus any share of train whose labels are hidden on purpose).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from frugalml.errors import EmptyDatasetError, SchemaError
from frugalml.params import DataSchema, SplitParams, parse_params

logger = logging.getLogger(__name__)

ROW_ID = "row_id"


def id_column_of(schema: DataSchema) -> str:
    """The column that identifies rows (``row_id`` when the schema declares none).

    Args:
        schema: The dataset schema.

    Returns:
        The column name.
    """
    return schema.id_column or ROW_ID


def _coerce_labels(labels: pd.Series, schema: DataSchema) -> pd.Series:
    """Map label names to values and integral floats to ints; leave missing as <NA>; raise on the rest."""
    names = dict(zip(schema.label_names, schema.labels)) if schema.label_names else {}
    allowed = set(schema.labels)

    def convert(value: Any) -> Any:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return pd.NA
        if isinstance(value, str):
            stripped = value.strip()
            if stripped == "":
                return pd.NA
            if stripped in names:
                return names[stripped]
            try:
                number = float(stripped)
            except ValueError:
                return value
            value = number
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return int(value)
        if isinstance(value, bool | np.bool_):
            return int(value)
        return value

    converted = labels.map(convert)
    bad = converted[converted.notna() & ~converted.isin(allowed)]
    if len(bad):
        counts = labels.loc[bad.index].astype(str).value_counts().head(10)
        shown = ", ".join(f"{value!r} ({count} rows)" for value, count in counts.items())
        raise SchemaError(
            f"column '{labels.name}' holds labels outside the declared set {sorted(allowed)}"
            f"{' / ' + str(schema.label_names) if schema.label_names else ''}: {shown}"
        )
    return converted.astype("Int64")


def validate_text_dataset(frame: pd.DataFrame, data: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check a (text, label) table against the schema in ``params:data``.

    Args:
        frame: Any table: the parsed e-mails or a user's own CSV/Parquet.
        data: ``params:data`` (see :class:`frugalml.params.DataSchema`).

    Returns:
        ``validated`` (a copy with a nullable-int label column and an id column) and ``quarantine`` (rows
        whose text columns are all empty, with a ``reason``).

    Raises:
        SchemaError: A declared column is missing, labels fall outside the declared set, or ids repeat.
        EmptyDatasetError: The table has no rows.
    """
    schema = parse_params(DataSchema, data, name="data")
    if frame.empty:
        raise EmptyDatasetError("the dataset has no rows")
    required = [*schema.text_columns, schema.label_column]
    if schema.id_column:
        required.append(schema.id_column)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise SchemaError(
            f"dataset lacks column(s) {missing} declared in params:data; it has {list(frame.columns)[:30]}"
        )
    validated = frame.copy()
    for column in schema.text_columns:
        non_text = validated[column].map(lambda v: v is not None and not isinstance(v, str) and not pd.isna(v))
        if non_text.any():
            validated[column] = validated[column].map(lambda v: "" if v is None or pd.isna(v) else str(v))
        validated[column] = validated[column].fillna("").astype(str)
    validated[schema.label_column] = _coerce_labels(validated[schema.label_column], schema)
    id_column = id_column_of(schema)
    if schema.id_column is None:
        joined = validated[schema.text_columns].agg("\x1f".join, axis=1)
        validated[id_column] = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:20] for t in joined]
        # identical texts get the same content id; make ids unique while keeping them stable
        repeat = validated.groupby(id_column).cumcount()
        validated.loc[repeat > 0, id_column] += "-" + repeat[repeat > 0].astype(str)
    duplicated_ids = validated[id_column][validated[id_column].duplicated()]
    if len(duplicated_ids):
        raise SchemaError(
            f"id column '{id_column}' repeats {duplicated_ids.nunique()} value(s), e.g. "
            f"{duplicated_ids.unique()[:5].tolist()}"
        )
    empty = validated[schema.text_columns].apply(lambda col: col.str.strip() == "").all(axis=1)
    quarantine = validated.loc[empty].assign(reason="empty_text: every text column is empty")
    validated = validated.loc[~empty].reset_index(drop=True)
    if validated.empty:
        raise EmptyDatasetError(f"every row has empty text in {schema.text_columns}")
    logger.info("validated %d rows (%d quarantined for empty text)", len(validated), len(quarantine))
    return validated, quarantine.reset_index(drop=True)


def _stratified(
    frame: pd.DataFrame, size: float | int, label: str, seed: int, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = frame[label].value_counts()
    if (counts < 2).any():
        raise EmptyDatasetError(
            f"cannot stratify the {what} split: class(es) {counts[counts < 2].index.tolist()} have fewer "
            f"than 2 labelled rows ({counts.to_dict()})"
        )
    rest, taken = train_test_split(frame, test_size=size, stratify=frame[label], random_state=seed)
    return rest, taken


def _matches(values: pd.Series, patterns: list[str]) -> pd.Series:
    return values.astype(str).map(lambda v: any(fnmatch.fnmatchcase(v, p) for p in patterns))


def split_dataset(
    validated: pd.DataFrame, split: dict[str, Any], data: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Split validated rows into train / dev / gold dev / test / unlabelled pool.

    Args:
        validated: Output of :func:`validate_text_dataset`.
        split: ``params:split`` (see :class:`frugalml.params.SplitParams`).
        data: ``params:data``.
        seed: ``params:seed``.

    Returns:
        ``train_labelled``, ``dev_labelled``, ``dev_gold``, ``test_gold``, ``unlabelled_pool`` and split
        metrics (set sizes and positive rates).

    Raises:
        EmptyDatasetError: When a set would be empty or a class too small to stratify.
        SchemaError: When the temporal column is missing.
    """
    config = parse_params(SplitParams, split, name="split")
    schema = parse_params(DataSchema, data, name="data")
    label = schema.label_column
    labelled = validated[validated[label].notna()]
    pool = validated[validated[label].isna()]
    if labelled.empty:
        raise EmptyDatasetError("no labelled rows to split")

    if config.strategy == "random":
        rest, test = _stratified(labelled, config.test_fraction, label, seed, "test")
    else:
        column = config.temporal.column or schema.group_column
        if column is None or column not in labelled.columns:
            raise SchemaError(
                f"temporal split needs column {column!r} (split.temporal.column, else data.group_column), "
                "which the dataset lacks"
            )
        in_train = _matches(labelled[column], config.temporal.train_patterns)
        in_test = _matches(labelled[column], config.temporal.test_patterns) & ~in_train
        rest, test = labelled[in_train], labelled[in_test]
        unassigned = int((~in_train & ~in_test).sum())
        if unassigned:
            logger.warning("temporal split: %d labelled rows match neither era; kept in the pool", unassigned)
            pool = pd.concat([pool, labelled[~in_train & ~in_test].assign(**{label: pd.NA})])
        if rest.empty or test.empty:
            raise EmptyDatasetError(
                f"temporal split on '{column}' gave {len(rest)} train and {len(test)} test rows "
                f"(patterns {config.temporal.train_patterns} / {config.temporal.test_patterns}; values "
                f"{sorted(labelled[column].astype(str).unique())[:10]})"
            )

    gold_size = min(config.gold_dev_size, len(rest) // 10)
    if gold_size < config.gold_dev_size:
        logger.warning("gold dev set shrunk to %d rows (10%% of %d)", gold_size, len(rest))
    if gold_size >= 2:
        rest, dev_gold = _stratified(rest, gold_size, label, seed + 1, "gold dev")
    else:
        dev_gold = rest.iloc[:0]
    train, dev = _stratified(rest, config.dev_fraction, label, seed + 2, "dev")
    if config.unlabelled_fraction > 0:
        train, hidden = _stratified(train, config.unlabelled_fraction, label, seed + 3, "unlabelled")
        pool = pd.concat([pool, hidden.assign(**{label: pd.NA})])
    pool = pool.assign(**{label: pool[label].astype("Int64")})

    sets = {"train": train, "dev": dev, "dev_gold": dev_gold, "test": test, "unlabelled": pool}
    metrics: dict[str, Any] = {}
    for name, frame in sets.items():
        metrics[f"{name}_rows"] = len(frame)
        if name != "unlabelled" and len(frame):
            metrics[f"{name}_positive_rate"] = float((frame[label] == schema.positive_label).mean())
    logger.info("split (%s): %s", config.strategy, {k: v for k, v in metrics.items() if k.endswith("_rows")})
    out = [frame.reset_index(drop=True) for frame in sets.values()]
    return (*out, {k: {"value": float(v), "step": 0} for k, v in metrics.items()})  # type: ignore[return-value]
