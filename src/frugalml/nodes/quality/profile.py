"""A starting suite proposed from a trusted batch (``--params=profile=true``), for review; never applied."""

from __future__ import annotations

from typing import Any

import pandas as pd

from frugalml.nodes.quality.checkpoint import _plain
from frugalml.nodes.quality.suites import LABEL, LABEL_BALANCE, TEXT, TEXT_TYPE, _gx_frame
from frugalml.params import DataSchema, parse_params


def _column_expectations(values: pd.Series, column: str, schema: DataSchema, rows: int) -> list[dict[str, Any]]:
    """The expectations proposed for one column: existence, nulls, uniqueness, then a range or a value set."""
    out: list[dict[str, Any]] = []
    if values.map(lambda v: isinstance(v, bytes)).any():
        return out  # raw payloads are not profiled
    out.append({"expectation": "expect_column_to_exist", "kwargs": {"column": column}})
    nulls = float(values.isna().mean())
    entry: dict[str, Any] = {"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": column}}
    if nulls:
        entry["kwargs"]["mostly"] = round(max(0.0, 1 - nulls - 0.01), 3)
        entry["severity"] = "warn"
    out.append(entry)
    non_null = values.dropna()
    if non_null.empty:
        return out
    if non_null.is_unique and (column == schema.id_column or column.endswith("id")):
        out.append({"expectation": "expect_column_values_to_be_unique", "kwargs": {"column": column}})
    if pd.api.types.is_bool_dtype(values):
        return out
    if pd.api.types.is_numeric_dtype(values):
        low, high = float(non_null.min()), float(non_null.max())
        margin = 0.1 * (high - low)
        if non_null.nunique() <= 20:
            out.append({
                "expectation": "expect_column_values_to_be_in_set",
                "kwargs": {"column": column, "value_set": sorted(_plain(v) for v in non_null.unique())},
                "quarantine": True,
            })  # fmt: skip
        else:
            out.append({
                "expectation": "expect_column_values_to_be_between",
                "kwargs": {"column": column, "min_value": low - margin, "max_value": high + margin},
                "severity": "warn",
            })  # fmt: skip
    elif values.map(lambda v: isinstance(v, str)).all() or pd.api.types.is_string_dtype(values):
        lengths = non_null.astype(str).str.len()
        out.append({
            "expectation": "expect_column_value_lengths_to_be_between",
            "kwargs": {"column": column, "max_value": int(lengths.max() * 1.5) + 10},
            "quarantine": True,
        })  # fmt: skip
        if non_null.nunique() <= 20 and rows >= 100:
            out.append({
                "expectation": "expect_column_values_to_be_in_set",
                "kwargs": {"column": column, "value_set": sorted(str(v) for v in non_null.unique())},
                "severity": "warn",
            })  # fmt: skip
    return out


def _class_expectations(view: pd.DataFrame, schema: DataSchema) -> list[dict[str, Any]]:
    """Class balance, for any number of classes: every declared class present (when the batch has them all),
    none under half the smallest observed share of an even split (``_label_balance``)."""
    balance = view[LABEL_BALANCE].dropna()
    if balance.empty:
        return []
    out: list[dict[str, Any]] = []
    if view[LABEL].nunique() == len(schema.labels):
        out.append({"expectation": "expect_column_distinct_values_to_contain_set",
                    "kwargs": {"column": LABEL, "value_set": "{data.labels}"}})  # fmt: skip
    out.append({"expectation": "expect_column_min_to_be_between",
                "kwargs": {"column": LABEL_BALANCE, "min_value": round(float(balance.min()) / 2, 3)}})  # fmt: skip
    return out


def propose_suite(frame: pd.DataFrame, profile: bool, data: dict[str, Any]) -> dict[str, Any]:
    """Propose a starting suite from a trusted batch (``--params=profile=true``), for review; never applied.

    GX 1.24 has no profiler, so this looks at the data itself: row count, per column nulls, uniqueness,
    numeric ranges, small value sets and text lengths, plus the derived ``_text`` checks and the class balance
    (every declared class present, each at least half its observed share of an even split).

    Args:
        frame: A batch you trust.
        profile: Whether to profile at all (``params:profile``).
        data: ``params:data``.

    Returns:
        A suite in the format of ``conf/base/expectations/*.yml`` (with a ``note``), or only a ``note`` when
        profiling is off.
    """
    if not profile:
        return {"note": "profiling is off: run `kedro run --pipelines=quality --params=profile=true`"}
    schema = parse_params(DataSchema, data, name="data")
    view = _gx_frame(frame, schema)
    rows = len(view)
    expectations: list[dict[str, Any]] = [
        {"expectation": "expect_table_row_count_to_be_between", "kwargs": {"min_value": max(1, rows // 10)}}
    ]
    for column in frame.columns:
        expectations += _column_expectations(frame[column], column, schema, rows)
    unique_share = float(view[TEXT].nunique() / rows) if rows else 1.0
    expectations += [
        {"expectation": "expect_column_values_to_be_in_set", "kwargs": {"column": TEXT_TYPE, "value_set": ["str"]},
         "quarantine": True},
        {"expectation": "expect_column_values_to_match_regex", "kwargs": {"column": TEXT, "regex": r"\S"},
         "quarantine": True},
        {"expectation": "expect_column_proportion_of_unique_values_to_be_between",
         "kwargs": {"column": TEXT, "min_value": round(max(0.0, unique_share - 0.05), 3)}, "severity": "warn"},
    ]  # fmt: skip
    expectations += _class_expectations(view, schema)
    return {
        "note": f"proposed from a trusted batch of {rows} rows: review, edit, then copy into conf/base/expectations/",
        "name": "proposed",
        "max_quarantine_share": 0.05,
        "expectations": expectations,
    }
