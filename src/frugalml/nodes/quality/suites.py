"""Expectation suites as configuration: their schema, parsing into GX expectations, and the derived columns
(``_text``, ``_text_type``, ``_positive``) they may check; messages in the user's column names."""

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
POSITIVE = "_positive"  # derived: 1.0 where the label is data.positive_label, 0.0 another declared label, else NaN
DERIVED = (ROW, TEXT, TEXT_TYPE, POSITIVE)


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


def describe_column(column: str | None, schema: DataSchema) -> str | None:
    """A column as the user knows it: derived columns are named by the columns they come from.

    Args:
        column: A column an expectation reads (possibly derived).
        schema: ``params:data``.

    Returns:
        ``column`` itself, or for ``_text`` ``text of subject, body``, for ``_text_type`` ``type of subject,
        body`` and for ``_positive`` ``share of label = 1 ('spam')``.
    """
    texts = ", ".join(schema.text_columns)
    if column == TEXT:
        return f"text of {texts}"
    if column == TEXT_TYPE:
        return f"type of {texts}"
    if column == POSITIVE:
        names = dict(zip(schema.labels, schema.label_names)) if schema.label_names else {}
        name = f" ({names[schema.positive_label]!r})" if schema.positive_label in names else ""
        return f"share of {schema.label_column} = {schema.positive_label}{name}"
    return column


def _hint(expectation: str, column: str | None, schema: DataSchema) -> str:
    """What to do about a failure whose cause is known."""
    balance = expectation == "expect_column_mean_to_be_between" and column in (POSITIVE, schema.label_column)
    if balance:
        return (
            " (the labelled rows are (almost) all of one class: a classifier needs labelled rows of every "
            "class; add rows of the missing class, or check data.label_column, data.labels and data.positive_label)"
        )
    if expectation == "expect_column_to_exist" and column:
        return f" (the table has no column '{column}': rename it or set params:data to the table's columns)"
    return ""


def _positive_share(labels: pd.Series, schema: DataSchema) -> pd.Series:
    """1.0 / 0.0 for the positive / another declared label (values, names or numeric strings), NaN otherwise."""
    names = dict(zip(schema.label_names, schema.labels)) if schema.label_names else {}
    allowed = set(schema.labels)

    def value_of(value: Any) -> float:
        if isinstance(value, str):
            stripped = value.strip()
            if stripped in names:
                return 1.0 if names[stripped] == schema.positive_label else 0.0
            try:
                value = float(stripped)
            except ValueError:
                return np.nan
        if isinstance(value, bool | np.bool_):
            value = int(value)
        if isinstance(value, int | float | np.integer | np.floating) and not pd.isna(value):
            if float(value).is_integer() and int(value) in allowed:
                return 1.0 if int(value) == schema.positive_label else 0.0
        return np.nan

    return labels.map(value_of).astype(float)


def _gx_frame(frame: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    """The frame GX sees: original columns, a positional row id, the joined text and the positive-label share."""
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
    if schema.label_column in view.columns:
        view[POSITIVE] = _positive_share(view[schema.label_column], schema).to_numpy()
    else:
        view[POSITIVE] = np.nan
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
