"""The gate's two nodes: validate (always returns the evidence) and enforce (stops the run or passes rows on)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from frugalml.errors import DataQualityError
from frugalml.nodes.quality.checkpoint import _exception, _plain, _run_checkpoint, _safe_for_parquet
from frugalml.nodes.quality.suites import (
    ROW,
    TEXT,
    TEXT_TYPE,
    _gx_frame,
    _hint,
    _reads,
    _substitute,
    class_balance_failure,
    describe_column,
    parse_suite,
)
from frugalml.params import DataSchema, QualityParams, parse_params
from frugalml.tracking import as_metrics

logger = logging.getLogger(__name__)


def _missing_text_failure(frame: pd.DataFrame, spec: Any, schema: DataSchema) -> str | None:
    """The failure to report when the suite checks the derived text and the batch lacks a text column."""
    derived_text = any(_reads(item, schema) & {TEXT, TEXT_TYPE} for item in spec.expectations)
    missing_text = [column for column in schema.text_columns if column not in frame.columns]
    if not (derived_text and missing_text):
        return None
    return (
        f"the batch lacks text column(s) {missing_text} of data.text_columns {schema.text_columns} (it has "
        f"{list(frame.columns)[:30]}): rename the table's columns or set data.text_columns; the text checks "
        "did not run"
    )


def _result_entry(result: Any, item: Any, index: int, *, schema: DataSchema, view: pd.DataFrame, example_ids: int):
    """One expectation's outcome as a report entry, with its failing rows and a label in the user's words."""
    details = result.result or {}
    failing_rows = [int(row[ROW]) for row in details.get("unexpected_index_list") or [] if ROW in row]
    exception = _exception(result)
    column = _substitute(item.kwargs.get("column"), schema)
    described = describe_column(column, schema)
    id_column = schema.id_column if schema.id_column in view.columns else None
    examples = (
        view.loc[failing_rows[:example_ids], id_column].map(_plain).tolist() if id_column
        else failing_rows[:example_ids]
    )  # fmt: skip
    entry = {
        "index": index,
        "expectation": item.expectation,
        "column": described,
        "gx_column": column,
        "severity": item.severity,
        "quarantine": item.quarantine,
        "success": bool(result.success) and exception is None,
        "observed_value": _plain(details.get("observed_value")),
        "unexpected_count": _plain(details.get("unexpected_count")),
        "unexpected_percent": _plain(details.get("unexpected_percent")),
        "example_ids": examples,
        "exception": exception,
        "unexpected_values": _unexpected_values(details),
        "allowed": _allowed({key: _substitute(value, schema) for key, value in item.kwargs.items()}),
    }
    label = f"{item.expectation}({described})" if column else item.expectation
    return entry, failing_rows, label


def _short(value: Any, limit: int = 60) -> Any:
    value = _plain(value)
    return value[:limit] + "..." if isinstance(value, str) and len(value) > limit else value


def _unexpected_values(details: dict[str, Any]) -> list[list[Any]]:
    """The most frequent unexpected values with their row counts (shortened: a value may be a whole text)."""
    counts = details.get("partial_unexpected_counts") or []
    return [[_short(item.get("value")), _plain(item.get("count"))] for item in counts[:5] if isinstance(item, dict)]


def _number(value: Any) -> str | None:
    if value is None:
        return None
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _allowed(kwargs: dict[str, Any]) -> str | None:
    """The bound or set an expectation allows, in words (``allowed 0.05 to 0.95``, ``allowed ≥ 20``)."""
    low, high = (_number(kwargs.get(key)) for key in ("min_value", "max_value"))
    if low is not None and high is not None:
        return f"allowed {low} to {high}"
    if low is not None or high is not None:
        return f"allowed ≥ {low}" if low is not None else f"allowed ≤ {high}"
    if isinstance(kwargs.get("value_set"), list):
        return f"allowed values {_short(kwargs['value_set'], 200)}"
    if kwargs.get("type_list"):
        return f"allowed types {kwargs['type_list']}"
    return None


def _failure_message(entry: dict[str, Any], label: str, schema: DataSchema, detail: str | None = None) -> str:
    """What a failed (non-quarantining) expectation tells the user: what was observed, what is allowed, and a
    hint when the cause is known (``detail``: the class-balance sentence, which says all of that itself)."""
    exception, observed, examples = entry["exception"], entry["observed_value"], entry["example_ids"]
    if detail and not exception:
        return f"{label}: {detail}"
    parts = [f"error {exception}"] if exception else [f"observed {observed!r}"] if observed is not None else []
    if entry["unexpected_count"]:
        values = ", ".join(f"{value!r} ({count} rows)" for value, count in entry["unexpected_values"])
        parts.append(f"{entry['unexpected_count']} unexpected rows" + (f" (values {values})" if values else ""))
    if entry["allowed"] and not exception:
        parts.append(entry["allowed"])
    if examples:
        parts.append(f"e.g. ids {examples}")
    hint = "" if exception else _hint(entry["expectation"], entry["gx_column"], schema)
    return f"{label}: {', '.join(parts)}{hint}" if parts else f"{label}:{hint}"


def _sort_results(
    checkpoint_result: Any,
    spec: Any,
    schema: DataSchema,
    view: pd.DataFrame,
    *,
    example_ids: int,
    report: dict[str, Any],
) -> tuple[dict[int, list[str]], dict[str, Any]]:
    """Record every expectation's outcome in ``report``; return the quarantined rows' reasons and the metrics."""
    reasons: dict[int, list[str]] = {}
    figures: dict[str, float] = {}
    for validation in checkpoint_result.run_results.values():
        for result in sorted(validation.results, key=lambda r: r.expectation_config.meta["frugalml_index"]):
            index = result.expectation_config.meta["frugalml_index"]
            item = spec.expectations[index]
            entry, failing_rows, label = _result_entry(
                result, item, index, schema=schema, view=view, example_ids=example_ids
            )
            report["results"].append(entry)
            key = f"{spec.name}.{index:02d}_{item.expectation}" + (
                f".{entry['gx_column']}" if entry["gx_column"] else ""
            )
            figures[f"{key}.success"] = entry["success"]
            if entry["unexpected_percent"] is not None:
                figures[f"{key}.unexpected_percent"] = entry["unexpected_percent"]
            if entry["success"]:
                continue
            if item.quarantine and entry["exception"] is None and failing_rows:
                for row in failing_rows:
                    reasons.setdefault(row, []).append(label)
                continue
            target = report["failures"] if item.severity == "error" else report["warnings"]
            kwargs = {key: _substitute(value, schema) for key, value in item.kwargs.items()}
            detail = class_balance_failure(
                item.expectation, entry["gx_column"], kwargs, view=view, schema=schema, suite=spec.name
            )
            target.append(_failure_message(entry, label, schema, detail))
    return reasons, as_metrics(figures)


def validate_with_suite(
    frame: pd.DataFrame, suite: dict[str, Any], params: dict[str, Any], data: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], dict[str, Any], dict[str, bytes]]:
    """Run an expectation suite on a batch (GX Checkpoint) and sort its rows.

    Args:
        frame: The batch.
        suite: A suite file's content (see ``conf/base/expectations/``).
        params: ``params:quality``.
        data: ``params:data``.

    Returns:
        ``passed`` (rows not quarantined), ``quarantine`` (rows with a ``reason``), the report (verdict,
        per-expectation results, offending ids), metrics for MLflow and the Data Docs site
        (relative path -> bytes).

    Raises:
        ParameterError: The suite file is invalid.
    """
    config = parse_params(QualityParams, params, name="quality")
    schema = parse_params(DataSchema, data, name="data")
    suite = {key: value for key, value in suite.items() if key != "note"}
    spec, expectations = parse_suite(suite, schema)
    started = time.perf_counter()
    share_limit = config.max_quarantine_share if config.max_quarantine_share is not None else spec.max_quarantine_share
    report: dict[str, Any] = {"suite": spec.name, "rows": len(frame), "results": [], "failures": [], "warnings": []}
    if frame.empty:
        report["failures"].append("the batch has no rows")
        report.update(success=False, rows_passed=0, rows_quarantined=0, quarantine_share=0.0)
        return frame, frame.assign(reason=pd.Series(dtype=str)), report, {}, {}

    missing = _missing_text_failure(frame, spec, schema)
    if missing:  # every row would be quarantined as "no text": name the columns instead
        report["failures"].append(missing)
        report.update(success=False, rows_passed=len(frame), rows_quarantined=0, quarantine_share=0.0,
                      max_quarantine_share=share_limit, seconds=time.perf_counter() - started)  # fmt: skip
        quarantine = frame.iloc[0:0].assign(reason=pd.Series(dtype=str), suite=spec.name)
        return frame, _safe_for_parquet(quarantine), report, as_metrics({f"{spec.name}.passed": 0.0}), {}

    view = _gx_frame(frame, schema)
    checkpoint_result, docs = _run_checkpoint(view, spec.name, expectations)
    reasons, metrics = _sort_results(
        checkpoint_result, spec, schema, view, example_ids=config.example_ids, report=report
    )

    quarantined_rows = sorted(reasons)
    share = len(quarantined_rows) / len(view)
    if share > share_limit:
        report["failures"].append(
            f"{len(quarantined_rows)} of {len(view)} rows ({share:.1%}) fail row-level expectations, above "
            f"max_quarantine_share {share_limit:.1%}: the batch is stopped (rows kept in the quarantine)"
        )
    quarantine = frame.reset_index(drop=True).iloc[quarantined_rows].copy()
    quarantine["reason"] = ["; ".join(reasons[row]) for row in quarantined_rows]
    quarantine["suite"] = spec.name
    passed = frame.reset_index(drop=True).drop(index=quarantined_rows).reset_index(drop=True)
    report.update(
        success=not report["failures"],
        rows_passed=len(passed),
        rows_quarantined=len(quarantine),
        quarantine_share=share,
        max_quarantine_share=share_limit,
        seconds=time.perf_counter() - started,
    )
    metrics.update(
        as_metrics({"passed": report["success"], "rows_quarantined": len(quarantine), "quarantine_share": share},
                   prefix=f"{spec.name}.")
    )  # fmt: skip
    for warning in report["warnings"]:
        logger.warning("quality gate '%s' warning: %s", spec.name, warning)
    logger.info(
        "quality gate '%s': %s (%d rows, %d quarantined, %.1fs)",
        spec.name, "passed" if report["success"] else "FAILED", len(frame), len(quarantine), report["seconds"],
    )  # fmt: skip
    return passed, _safe_for_parquet(quarantine), report, metrics, docs


def enforce_quality_gate(passed: pd.DataFrame, report: dict[str, Any]) -> pd.DataFrame:
    """Stop the run when the gate failed; otherwise pass the clean rows on.

    Args:
        passed: Rows that passed the row-level expectations.
        report: The report of :func:`validate_with_suite`.

    Returns:
        ``passed``, unchanged.

    Raises:
        DataQualityError: Listing each failed expectation with its column, observed value and example ids.
    """
    if not report["success"]:
        lines = "\n  - ".join(report["failures"])
        raise DataQualityError(
            f"quality gate '{report['suite']}' failed on {report['rows']} rows:\n  - {lines}\n"
            "See the Data Docs and quality report in data/08_reporting (and the MLflow run)."
        )
    return passed
