"""Check a labelled text table against its declared schema, then split it into the project's sets.

Notation: N rows in; L labelled, U unlabelled (label missing). Sets out (ARCHITECTURE.md, 03_primary):
``train_labelled`` (fit), ``dev_labelled`` (early stopping, tuning), ``dev_gold`` (small, kept apart for
later stages: writing labelling functions, calibrating gates), ``test_gold`` (final evaluation only) and
``unlabelled_pool`` (rows without a label, plus any share of train whose labels are hidden on purpose).

A user's own table is checked before any gate (:func:`check_table`: declared columns present, no index that
pandas inferred from a ragged CSV); :func:`validate_text_dataset` then quarantines rows with empty or binary
text and the copies of repeated texts (so no copy can straddle train and test), and strips isolated control
characters; :func:`split_dataset` refuses a table whose labelled rows hold a single class, saying so.
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
from frugalml.nodes.ingest import MIN_CONTROL_BASE
from frugalml.params import DataSchema, SplitParams, parse_params
from frugalml.tracking import as_metrics

logger = logging.getLogger(__name__)

ROW_ID = "row_id"
# control characters other than tab, line feed, vertical tab, form feed and carriage return (as in ingest;
# surrogates cannot occur in pandas' Arrow-backed strings)
_CONTROL = "[\x00-\x08\x0e-\x1f\x7f-\x9f]"


def id_column_of(schema: DataSchema) -> str:
    """The column that identifies rows (``row_id`` when the schema declares none).

    Args:
        schema: The dataset schema.

    Returns:
        The column name.
    """
    return schema.id_column or ROW_ID


def require_columns(frame: pd.DataFrame, schema: DataSchema) -> None:
    """The columns ``params:data`` declares must exist, and the rows must not be shifted by a ragged CSV.

    Args:
        frame: The table.
        schema: Its declared schema.

    Raises:
        SchemaError: Naming each missing column and its role (text, label, id), or the inferred index.
    """
    roles = [("text column", "data.text_columns", c) for c in schema.text_columns]
    roles.append(("label column", "data.label_column", schema.label_column))
    if schema.id_column:
        roles.append(("id column", "data.id_column", schema.id_column))
    missing = [(role, key, column) for role, key, column in roles if column not in frame.columns]
    if missing:
        what = "; ".join(f"{role} '{column}' ({key})" for role, key, column in missing)
        raise SchemaError(
            f"dataset lacks column(s) {[column for _, _, column in missing]} declared in params:data: {what}; "
            f"it has {list(frame.columns)[:30]}. Rename the table's columns or set params:data to them"
            + (" (data.id_column: null derives ids from the text)" if any(k == "data.id_column" for _, k, _ in missing)
               else "")
        )  # fmt: skip
    index = frame.index
    if (
        not isinstance(index, pd.RangeIndex)
        and index.nlevels == 1
        and index.name is None
        and not pd.api.types.is_integer_dtype(index)
        and len(index)
    ):
        raise SchemaError(
            f"the table has an unnamed index of values such as {[str(v)[:40] for v in index[:3]]} instead of "
            "row numbers: pandas does this when every row of a CSV has one field more than its header, and then "
            f"each value sits one column to the left of its name (column '{frame.columns[0]}' holds "
            f"{str(frame.iloc[0, 0])[:40]!r}). Fix the file (quote text that contains the separator, remove "
            "trailing separators), or read it with type: frugalml.datasets.corpus.TextTableDataset, which names "
            "the ragged lines"
        )


def check_table(frame: pd.DataFrame, data: dict[str, Any]) -> pd.DataFrame:
    """A cheap schema check in front of the quality gate, so that a bad table is named before any gate runs.

    Args:
        frame: The table (the parsed e-mails or a user's own CSV/Parquet).
        data: ``params:data`` (see :class:`frugalml.params.DataSchema`).

    Returns:
        ``frame``, unchanged.

    Raises:
        SchemaError: A declared column is missing, or the rows were shifted by a ragged CSV.
        EmptyDatasetError: The table has no rows.
    """
    schema = parse_params(DataSchema, data, name="data")
    if frame.empty:
        raise EmptyDatasetError("the dataset has no rows")
    require_columns(frame, schema)
    return frame


def _text_key(texts: pd.DataFrame) -> pd.Series:
    """Normalised content key of each row's text columns (case and whitespace ignored, as ingest does)."""
    if texts.empty:
        return pd.Series([], index=texts.index, dtype=object)
    joined = texts.agg("\n".join, axis=1)
    return joined.map(lambda t: hashlib.sha256(" ".join(t.lower().split()).encode("utf-8", "replace")).hexdigest())


def _duplicates(validated: pd.DataFrame, schema: DataSchema, id_column: str) -> pd.Series:
    """Reason per repeated row (``duplicate_of:<id>``, ``duplicate_label_conflict_of:<id>``), '' for the kept.

    Of each set of copies the first labelled row is kept (the first row when none is labelled).
    """
    label = validated[schema.label_column]
    keys = _text_key(validated[schema.text_columns])
    order = pd.DataFrame({"key": keys, "unlabelled": label.isna().to_numpy(), "position": np.arange(len(keys))},
                         index=validated.index).sort_values(["unlabelled", "position"], kind="stable")  # fmt: skip
    first = order.drop_duplicates("key")
    kept_index = pd.Series(first.index, index=first["key"].to_numpy())
    reasons = pd.Series("", index=validated.index, dtype=object)
    repeated = ~validated.index.isin(first.index)
    for index in validated.index[repeated]:
        kept = kept_index[keys[index]]
        conflict = pd.notna(label[index]) and pd.notna(label[kept]) and label[index] != label[kept]
        kind = "duplicate_label_conflict" if conflict else "duplicate"
        reasons[index] = f"{kind}_of:{validated.at[kept, id_column]}"
    return reasons


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
        ``validated`` (a copy with a nullable-int label column, an id column and isolated control characters
        stripped from the text columns) and ``quarantine`` (with a ``reason``: ``empty_text`` when every text
        column is empty, ``binary_text`` when more than ``data.max_control_share`` of the text is control or
        undecodable characters, ``duplicate_of:<id>`` / ``duplicate_label_conflict_of:<id>`` for the copies of
        a normalised text under ``data.dedup_on: text``).

    Raises:
        SchemaError: A declared column is missing, labels fall outside the declared set, or ids repeat.
        EmptyDatasetError: The table has no rows.
    """
    schema = parse_params(DataSchema, data, name="data")
    if frame.empty:
        raise EmptyDatasetError("the dataset has no rows")
    require_columns(frame, schema)
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
    repeated_id = validated[id_column].duplicated()
    if repeated_id.any() and schema.dedup_on == "text":
        # a whole copy of a row (same id, text and label) is a duplicate, quarantined below; the same id on
        # another text or label is an error
        copy = pd.DataFrame({"id": validated[id_column], "key": _text_key(validated[schema.text_columns]),
                             "label": validated[schema.label_column]}).duplicated()  # fmt: skip
        repeated_id &= ~copy
    duplicated_ids = validated[id_column][repeated_id]
    if len(duplicated_ids):
        raise SchemaError(
            f"id column '{id_column}' repeats {duplicated_ids.nunique()} value(s) on different rows, e.g. "
            f"{duplicated_ids.unique()[:5].tolist()}"
        )
    reasons = pd.Series("", index=validated.index, dtype=object)
    texts = validated[schema.text_columns]
    controls = sum(texts[c].str.count(_CONTROL) for c in schema.text_columns)
    undecodable = sum(texts[c].str.count("\ufffd") for c in schema.text_columns)
    length = sum(texts[c].str.len() for c in schema.text_columns) + len(schema.text_columns) - 1
    share = (controls + undecodable) / np.maximum(length, MIN_CONTROL_BASE)
    binary = share > schema.max_control_share
    reasons[binary] = [
        f"binary_text: {value:.0%} of the text in {schema.text_columns} is control or undecodable characters "
        f"(above data.max_control_share {schema.max_control_share:.0%})"
        for value in share[binary]
    ]
    stripped = (controls > 0) & ~binary
    for column in schema.text_columns:
        validated.loc[stripped, column] = validated.loc[stripped, column].str.replace(_CONTROL, "", regex=True)
    empty = validated[schema.text_columns].apply(lambda col: col.str.strip() == "").all(axis=1) & (reasons == "")
    reasons[empty] = "empty_text: every text column is empty"
    if schema.dedup_on == "text":
        usable = reasons == ""
        reasons[usable] = _duplicates(validated[usable], schema, id_column)
    rejected = reasons != ""
    quarantine = validated.loc[rejected].assign(reason=reasons[rejected])
    validated = validated.loc[~rejected].reset_index(drop=True)
    if validated.empty:
        raise EmptyDatasetError(
            f"no usable row: every row has empty, binary or repeated text in {schema.text_columns} "
            f"(reasons: {quarantine['reason'].str.split(':').str[0].value_counts().to_dict()})"
        )
    counts = quarantine["reason"].str.split(":").str[0].value_counts().to_dict()
    logger.info("validated %d rows (%d quarantined: %s; control characters stripped in %d rows)",
                len(validated), len(quarantine), counts, int(stripped.sum()))  # fmt: skip
    return validated, quarantine.reset_index(drop=True)


def _stratified(
    frame: pd.DataFrame, size: float | int, label: str, seed: int, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = frame[label].value_counts()
    if (counts < 2).any():
        raise EmptyDatasetError(
            f"cannot stratify the {what} split: class(es) {counts[counts < 2].index.tolist()} have fewer "
            f"than 2 labelled rows ({counts.to_dict()}); label more rows of that class"
        )
    rest, taken = train_test_split(frame, test_size=size, stratify=frame[label], random_state=seed)
    return rest, taken


def _matches(values: pd.Series, patterns: list[str]) -> pd.Series:
    return values.astype(str).map(lambda v: any(fnmatch.fnmatchcase(v, p) for p in patterns))


def _require_two_classes(labelled: pd.DataFrame, pool: pd.DataFrame, schema: DataSchema) -> None:
    """Refuse labelled rows of a single class, naming the classes the table lacks."""
    label = schema.label_column
    present = sorted(labelled[label].unique().tolist())
    if len(present) >= 2:
        return
    names = dict(zip(schema.labels, schema.label_names)) if schema.label_names else {}
    shown = [f"{value} ({names[value]!r})" if value in names else str(value) for value in present]
    others = [f"{value} ({names[value]!r})" if value in names else str(value)
              for value in schema.labels if value not in present]  # fmt: skip
    raise EmptyDatasetError(
        f"the {len(labelled)} labelled rows of column '{label}' are all of one class, {shown[0]}: a classifier "
        f"needs labelled rows of every class. Add rows labelled {' or '.join(others)} to the table (or check "
        f"data.label_column, data.labels and data.label_names); rows with an empty label go to the "
        f"unlabelled pool ({len(pool)} here)"
    )


def _temporal(
    labelled: pd.DataFrame, pool: pd.DataFrame, config: SplitParams, schema: DataSchema
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train on the rows whose era column matches the train patterns, test on the test patterns; the rest
    (labelled rows of neither era) go to the pool. Returns (rest, test, pool)."""
    label = schema.label_column
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
    return rest, test, pool


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
    _require_two_classes(labelled, pool, schema)
    if config.strategy == "random":
        rest, test = _stratified(labelled, config.test_fraction, label, seed, "test")
    else:
        rest, test, pool = _temporal(labelled, pool, config, schema)

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
    return (*out, as_metrics(metrics))  # type: ignore[return-value]
