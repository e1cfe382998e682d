"""Expectation suites as configuration: their schema, parsing into GX expectations, and the derived columns
(``_text``, ``_text_type``, ``_label``, ``_label_share``, ``_label_balance``, ``_positive``) they may check;
messages in the user's column names.

Class balance for any number of classes K = len(data.labels) >= 2 is read from the derived label columns:
``_label`` (the declared label of a row, by value or by name; missing when the label is missing or outside
data.labels), ``_label_share`` (the share of the labelled rows that have this row's class) and
``_label_balance`` (that share times K: 1.0 is an even split, so one bound means the same for 2 and 8 classes).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from frugalml.errors import ParameterError
from frugalml.params import DataSchema

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

logger = logging.getLogger(__name__)

ROW = "_row"  # positional row number given to GX to map failures back to rows
TEXT = "_text"  # derived: the schema's text columns joined by a newline
TEXT_TYPE = "_text_type"  # derived: "str" when every text value is text (or missing), else the odd type's name
LABEL = "_label"  # derived: the declared label value (by value, name or numeric string), NaN when missing/undeclared
LABEL_SHARE = "_label_share"  # derived: share of the labelled rows in this row's class (NaN where _label is)
LABEL_BALANCE = "_label_balance"  # derived: _label_share * K (1.0 = an even split of K classes)
POSITIVE = "_positive"  # derived: 1.0 where the label is data.positive_label, 0.0 another declared label, else NaN
DERIVED = (ROW, TEXT, TEXT_TYPE, LABEL, LABEL_SHARE, LABEL_BALANCE, POSITIVE)
CLASS_COLUMNS = (LABEL, LABEL_SHARE, LABEL_BALANCE)


class ExpectationSpec(BaseModel):
    """One expectation of a suite file."""

    model_config = ConfigDict(extra="forbid")

    expectation: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    severity: Literal["error", "warn"] = "error"
    quarantine: bool = False


class SuiteSpec(BaseModel):
    """A suite file (``conf/base/expectations/*.yml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    max_quarantine_share: float = Field(default=0.05, ge=0, le=1)
    expectations: list[ExpectationSpec] = Field(min_length=1)


def _substitute(value: Any, schema: DataSchema) -> Any:
    """``"{data.label_column}"``-style tokens in kwargs take values from ``params:data``."""
    if isinstance(value, str) and value.startswith("{data.") and value.endswith("}"):
        key = value[len("{data.") : -1]
        if key not in DataSchema.model_fields:
            raise ParameterError(f"suite token {value!r}: params:data has no key '{key}'")
        return getattr(schema, key)
    if isinstance(value, list):
        return [_substitute(v, schema) for v in value]
    return value


def parse_suite(suite: dict[str, Any], schema: DataSchema) -> tuple[SuiteSpec, list[Any]]:
    """Validate a suite file and build its GX expectations.

    Args:
        suite: The suite file's content.
        schema: ``params:data`` (for ``{data.*}`` tokens).

    Returns:
        The spec and one GX ``Expectation`` per entry (``meta.frugalml_index`` = its position).

    Raises:
        ParameterError: An unknown key, an unknown expectation name or bad expectation arguments.
    """
    import great_expectations.expectations as gxe

    try:
        spec = SuiteSpec.model_validate(suite)
    except ValidationError as error:
        raise ParameterError(f"expectation suite {suite.get('name', '?')!r}: {error}") from None
    built = []
    for index, item in enumerate(spec.expectations):
        class_name = "".join(part.title() for part in item.expectation.split("_"))
        expectation_class = getattr(gxe, class_name, None)
        if expectation_class is None:
            raise ParameterError(f"suite '{spec.name}' entry {index}: unknown GX expectation '{item.expectation}'")
        kwargs = {key: _substitute(value, schema) for key, value in item.kwargs.items()}
        try:
            built.append(expectation_class(**kwargs, meta={"frugalml_index": index, "severity": item.severity}))
        except (ValidationError, TypeError, ValueError) as error:
            raise ParameterError(
                f"suite '{spec.name}' entry {index} ({item.expectation}): bad arguments {kwargs}: {error}"
            ) from None
    return spec, built


def class_name(value: Any, schema: DataSchema) -> str:
    """A declared class as the user knows it: ``3 ('abuse')`` when it has a name, else ``3``."""
    names = dict(zip(schema.labels, schema.label_names)) if schema.label_names else {}
    return f"{value} ({names[value]!r})" if value in names else str(value)


def describe_column(column: str | None, schema: DataSchema) -> str | None:
    """A column as the user knows it: derived columns are named by the columns they come from.

    Args:
        column: A column an expectation reads (possibly derived).
        schema: ``params:data``.

    Returns:
        ``column`` itself, or for ``_text`` ``text of subject, body``, for ``_text_type`` ``type of subject,
        body``, for ``_label`` ``classes of label``, for ``_label_share`` ``class shares of label``, for
        ``_label_balance`` ``class shares of label x 2 classes`` and for ``_positive`` ``share of label = 1
        ('spam')``.
    """
    texts = ", ".join(schema.text_columns)
    derived = {
        TEXT: f"text of {texts}",
        TEXT_TYPE: f"type of {texts}",
        LABEL: f"classes of {schema.label_column}",
        LABEL_SHARE: f"class shares of {schema.label_column}",
        LABEL_BALANCE: f"class shares of {schema.label_column} x {len(schema.labels)} classes",
        POSITIVE: f"share of {schema.label_column} = {class_name(schema.positive_label, schema)}",
    }
    return derived.get(column, column) if column else column


def _hint(expectation: str, column: str | None, schema: DataSchema) -> str:
    """What to do about a failure whose cause is known."""
    balance = expectation == "expect_column_mean_to_be_between" and column in (POSITIVE, schema.label_column)
    if balance:
        return (
            " (the labelled rows are (almost) all of one class: a classifier needs labelled rows of every "
            "class; add rows of the missing class, or check data.label_column, data.labels and data.positive_label)"
        )
    if expectation == "expect_column_values_to_be_in_set" and column in (LABEL, schema.label_column):
        return (
            f" (labels outside data.labels {schema.labels}: correct those rows' labels, or declare the class in "
            "data.labels and data.label_names)"
        )
    if expectation == "expect_column_to_exist" and column:
        return f" (the table has no column '{column}': rename it or set params:data to the table's columns)"
    return ""


def _percent(share: float) -> str:
    return f"{100 * share:.3g}%"


def class_balance_failure(
    expectation: str, column: str | None, kwargs: dict[str, Any], *, view: pd.DataFrame, schema: DataSchema, suite: str
) -> str | None:
    """What a failed class-balance expectation tells the user: which classes, their share, the bound, the fix.

    Covers ``expect_column_distinct_values_to_contain_set`` on ``_label`` (or the label column) and
    ``expect_column_min/max_to_be_between`` on ``_label_share`` / ``_label_balance``; ``None`` for any other.

    Args:
        expectation: The expectation's name.
        column: The column it reads (tokens substituted).
        kwargs: Its arguments (tokens substituted).
        view: The frame GX saw (with the derived label columns).
        schema: ``params:data``.
        suite: The suite's name (where the bound lives).

    Returns:
        The message after the expectation's label, or ``None``.
    """
    presence = expectation == "expect_column_distinct_values_to_contain_set" and column in (LABEL, schema.label_column)
    minimum = expectation == "expect_column_min_to_be_between"
    key = "min_value" if minimum else "max_value"
    bounded = expectation in ("expect_column_min_to_be_between", "expect_column_max_to_be_between")
    if not (presence or (bounded and column in (LABEL_SHARE, LABEL_BALANCE) and kwargs.get(key) is not None)):
        return None
    counts = view[LABEL].value_counts()
    labels = list(dict.fromkeys([*schema.labels, *(kwargs.get("value_set") or [])]))
    rows = {value: int(counts.get(float(value), 0)) for value in labels}
    labelled = sum(rows.values())
    if labelled == 0:
        return (
            f"no row holds a label of data.labels {schema.labels} in column '{schema.label_column}': a classifier "
            "needs labelled rows of every class; check data.label_column, data.labels and data.label_names"
            if presence else "no labelled rows to measure"
        )  # fmt: skip
    observed = ", ".join(f"{class_name(value, schema)}: {count}" for value, count in rows.items())
    if presence:
        missing = [class_name(v, schema) for v in kwargs.get("value_set") or schema.labels if rows.get(v, 0) == 0]
        present = [class_name(v, schema) for v, count in rows.items() if count]
        lead = (
            f"the {labelled} labelled rows are all of one class, {present[0]}" if len(present) == 1
            else f"class {missing[0]} has no labelled rows" if len(missing) == 1
            else f"classes {', '.join(missing)} have no labelled rows"
        )  # fmt: skip
        return (
            f"{lead} (rows per class: {observed}; allowed: every class of data.labels present): a classifier "
            f"needs labelled rows of every class; add rows of the missing class{'es' if len(missing) > 1 else ''} "
            + ", ".join(missing)
            + (", or remove it from data.labels (and data.label_names)" if len(schema.labels) > 2 else "")
        )
    classes = len(schema.labels)
    bound = float(kwargs[key]) / (classes if column == LABEL_BALANCE else 1)
    scale = f": {key} {kwargs[key]} x an even share of 1/{classes}" if column == LABEL_BALANCE else ""
    shares = {value: count / labelled for value, count in rows.items()}
    where = f"suite '{suite}' (conf/base/expectations/{suite}.yml, or your copy of it)"
    if minimum:
        offenders = [v for v, share in shares.items() if rows[v] and share < bound]
        allowed = f"allowed ≥ {_percent(bound)}{scale}"
        fix = f"add labelled rows of that class, merge it into another class, or lower min_value in {where}"
    else:
        offenders = [v for v, share in shares.items() if share > bound]
        allowed = f"allowed ≤ {_percent(bound)}{scale}"
        fix = f"add labelled rows of the other classes, or raise max_value in {where}"
    if not offenders:  # GX and pandas disagree at the boundary: show what there is
        return f"rows per class: {observed} ({allowed})"
    shown = "; ".join(
        f"class {class_name(v, schema)} is {_percent(shares[v])} of the {labelled} labelled rows ({rows[v]} rows)"
        for v in offenders
    )
    return f"{shown} ({allowed}): {fix}"


def _declared_labels(labels: pd.Series, schema: DataSchema) -> pd.Series:
    """The declared label value of each row (by value, name or numeric string) as a float, NaN otherwise."""
    names = dict(zip(schema.label_names, schema.labels)) if schema.label_names else {}
    allowed = set(schema.labels)

    def value_of(value: Any) -> float:
        if isinstance(value, str):
            stripped = value.strip()
            if stripped in names:
                return float(names[stripped])
            try:
                value = float(stripped)
            except ValueError:
                return np.nan
        if isinstance(value, bool | np.bool_):
            value = int(value)
        if isinstance(value, int | float | np.integer | np.floating) and not pd.isna(value):
            if float(value).is_integer() and int(value) in allowed:
                return float(value)
        return np.nan

    return labels.map(value_of).astype(float)


def _label_columns(view: pd.DataFrame, schema: DataSchema) -> None:
    """Add ``_label``, ``_label_share``, ``_label_balance`` and ``_positive`` to ``view`` (in place)."""
    if schema.label_column in view.columns:
        label = _declared_labels(view[schema.label_column], schema)
    else:
        label = pd.Series(np.nan, index=view.index, dtype=float)
    share = label.map(label.value_counts(normalize=True)).astype(float)
    view[LABEL] = label.to_numpy()
    view[LABEL_SHARE] = share.to_numpy()
    view[LABEL_BALANCE] = (share * len(schema.labels)).to_numpy()
    view[POSITIVE] = (label == schema.positive_label).astype(float).where(label.notna()).to_numpy()


def _gx_frame(frame: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    """The frame GX sees: original columns, a positional row id, the joined text and the derived label columns."""
    view = frame.reset_index(drop=True).copy()
    view[ROW] = np.arange(len(view))
    columns = [c for c in schema.text_columns if c in view.columns]

    def as_text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    def odd_type(row: pd.Series) -> str:
        for value in row:
            if not isinstance(value, str) and value is not None and not (isinstance(value, float) and np.isnan(value)):
                return type(value).__name__
        return "str"

    if columns:
        view[TEXT] = view[columns].apply(lambda row: "\n".join(as_text(v) for v in row), axis=1)
        view[TEXT_TYPE] = view[columns].apply(odd_type, axis=1)
    else:
        view[TEXT] = ""
        view[TEXT_TYPE] = "str"
    _label_columns(view, schema)
    return view


def _reads(item: ExpectationSpec, schema: DataSchema) -> set[str]:
    """The columns an expectation reads (``column``, ``column_A``/``column_B``, ``column_list``)."""
    read: set[str] = set()
    for key, value in item.kwargs.items():
        value = _substitute(value, schema)
        if key in ("column", "column_A", "column_B") and isinstance(value, str):
            read.add(value)
        elif key == "column_list" and isinstance(value, list):
            read.update(v for v in value if isinstance(v, str))
    return read
