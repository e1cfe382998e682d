"""Data-quality gates: Great Expectations (GX 1.x) suites from configuration, row-level quarantine, Data Docs.

Notation: N rows in a batch; a suite is a list of expectations, each with a *severity* (``error`` stops the
run, ``warn`` is reported) and optionally ``quarantine: true`` (row-level: failing rows leave the batch with
their reason; the batch goes on while the quarantined share stays at or under ``max_quarantine_share``).

A gate is two nodes so that the evidence survives a failure: :func:`validate_with_suite` always returns the
report, the quarantine, the metrics and the Data Docs (saved by the catalog), and :func:`enforce_quality_gate`
then stops the run with :class:`~frugalml.errors.DataQualityError` or passes the clean rows on.

Messages speak the user's terms: an expectation on a derived column (``_text``, ``_text_type``,
``_positive``) is named by the columns it derives from (``text of message``, ``share of category = 1
('abuse')``), and a failure that has a known cause says which parameter or fix addresses it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from frugalml.errors import DataQualityError, ParameterError
from frugalml.params import DataSchema, QualityParams, parse_params

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


def _run_checkpoint(view: pd.DataFrame, name: str, expectations: list[Any]) -> tuple[Any, dict[str, bytes]]:
    """Validate with a GX Checkpoint in an ephemeral context; Data Docs are built into a temp folder."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    with tempfile.TemporaryDirectory(prefix="gx-docs-") as docs_dir:
        for site in list(context.list_data_docs_sites()):
            context.delete_data_docs_site(site)
        context.add_data_docs_site(
            "frugalml",
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        batch = context.data_sources.add_pandas("frugalml").add_dataframe_asset(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=f"{name}_validation", data=batch.add_batch_definition_whole_dataframe("batch"), suite=suite
            )
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{name}_gate",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["frugalml"])],
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [ROW],
                    "return_unexpected_index_query": False,
                },
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": view})
        docs = {
            str(path.relative_to(docs_dir)): path.read_bytes() for path in Path(docs_dir).rglob("*") if path.is_file()
        }
    return result, docs


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value[:20]]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in list(value.items())[:20]}
    if isinstance(value, bytes):
        return repr(value[:40])
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _exception(result: Any) -> str | None:
    info = result.exception_info or {}
    items = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(item.get("exception_message")) for item in items if item.get("raised_exception")]
    return "; ".join(messages)[:500] or None


def _safe_for_parquet(frame: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows may hold bytes in text columns: keep them losslessly as latin-1 text and say so."""
    out = frame.copy()
    bytes_columns = []
    for column in out.columns:
        if out[column].dtype == object and out[column].map(lambda v: isinstance(v, bytes)).any():
            bytes_columns.append(column)
            out[column] = out[column].map(lambda v: v.decode("latin-1") if isinstance(v, bytes) else v)
    out["bytes_columns"] = ",".join(bytes_columns)
    return out


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

    derived_text = any(_reads(item, schema) & {TEXT, TEXT_TYPE} for item in spec.expectations)
    missing_text = [column for column in schema.text_columns if column not in frame.columns]
    if derived_text and missing_text:  # every row would be quarantined as "no text": name the columns instead
        report["failures"].append(
            f"the batch lacks text column(s) {missing_text} of data.text_columns {schema.text_columns} (it has "
            f"{list(frame.columns)[:30]}): rename the table's columns or set data.text_columns; the text checks "
            "did not run"
        )
        report.update(success=False, rows_passed=len(frame), rows_quarantined=0, quarantine_share=0.0,
                      max_quarantine_share=share_limit, seconds=time.perf_counter() - started)  # fmt: skip
        metrics = {f"{spec.name}.passed": {"value": 0.0, "step": 0}}
        quarantine = frame.iloc[0:0].assign(reason=pd.Series(dtype=str), suite=spec.name)
        return frame, _safe_for_parquet(quarantine), report, metrics, {}

    view = _gx_frame(frame, schema)
    checkpoint_result, docs = _run_checkpoint(view, spec.name, expectations)
    id_column = schema.id_column if schema.id_column in view.columns else None
    reasons: dict[int, list[str]] = {}
    metrics: dict[str, Any] = {}
    for validation in checkpoint_result.run_results.values():
        for result in sorted(validation.results, key=lambda r: r.expectation_config.meta["frugalml_index"]):
            index = result.expectation_config.meta["frugalml_index"]
            item = spec.expectations[index]
            details = result.result or {}
            failing_rows = [int(row[ROW]) for row in details.get("unexpected_index_list") or [] if ROW in row]
            exception = _exception(result)
            column = _substitute(item.kwargs.get("column"), schema)
            described = describe_column(column, schema)
            label = f"{item.expectation}({described})" if column else item.expectation
            examples = (
                view.loc[failing_rows[: config.example_ids], id_column].map(_plain).tolist()
                if id_column
                else failing_rows[: config.example_ids]
            )
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
            }
            report["results"].append(entry)
            key = f"{spec.name}.{index:02d}_{item.expectation}" + (f".{column}" if column else "")
            metrics[f"{key}.success"] = {"value": float(entry["success"]), "step": 0}
            if entry["unexpected_percent"] is not None:
                metrics[f"{key}.unexpected_percent"] = {"value": float(entry["unexpected_percent"]), "step": 0}
            if entry["success"]:
                continue
            if item.quarantine and exception is None and failing_rows:
                for row in failing_rows:
                    reasons.setdefault(row, []).append(label)
                continue
            observed = entry["observed_value"]
            message = (
                f"{label}: "
                + (f"error {exception}" if exception else f"observed {observed!r}" if observed is not None else "")
                + (f", {entry['unexpected_count']} unexpected rows" if entry["unexpected_count"] else "")
                + (f", e.g. ids {examples}" if examples else "")
                + ("" if exception else _hint(item.expectation, column, schema))
            )
            (report["failures"] if item.severity == "error" else report["warnings"]).append(message)

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
        {
            f"{spec.name}.passed": {"value": float(report["success"]), "step": 0},
            f"{spec.name}.rows_quarantined": {"value": float(len(quarantine)), "step": 0},
            f"{spec.name}.quarantine_share": {"value": share, "step": 0},
        }
    )
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


def propose_suite(frame: pd.DataFrame, profile: bool, data: dict[str, Any]) -> dict[str, Any]:
    """Propose a starting suite from a trusted batch (``--params=profile=true``), for review; never applied.

    GX 1.24 has no profiler, so this looks at the data itself: row count, per column nulls, uniqueness,
    numeric ranges, small value sets and text lengths, plus the derived ``_text`` checks.

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
        values = frame[column]
        if values.map(lambda v: isinstance(v, bytes)).any():
            continue  # raw payloads are not profiled
        expectations.append({"expectation": "expect_column_to_exist", "kwargs": {"column": column}})
        nulls = float(values.isna().mean())
        entry: dict[str, Any] = {"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": column}}
        if nulls:
            entry["kwargs"]["mostly"] = round(max(0.0, 1 - nulls - 0.01), 3)
            entry["severity"] = "warn"
        expectations.append(entry)
        non_null = values.dropna()
        if non_null.empty:
            continue
        if non_null.is_unique and (column == schema.id_column or column.endswith("id")):
            expectations.append({"expectation": "expect_column_values_to_be_unique", "kwargs": {"column": column}})
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values):
            low, high = float(non_null.min()), float(non_null.max())
            margin = 0.1 * (high - low)
            if non_null.nunique() <= 20:
                expectations.append({
                    "expectation": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": column, "value_set": sorted(_plain(v) for v in non_null.unique())},
                    "quarantine": True,
                })  # fmt: skip
            else:
                expectations.append({
                    "expectation": "expect_column_values_to_be_between",
                    "kwargs": {"column": column, "min_value": low - margin, "max_value": high + margin},
                    "severity": "warn",
                })  # fmt: skip
        elif values.map(lambda v: isinstance(v, str)).all() or pd.api.types.is_string_dtype(values):
            lengths = non_null.astype(str).str.len()
            expectations.append({
                "expectation": "expect_column_value_lengths_to_be_between",
                "kwargs": {"column": column, "max_value": int(lengths.max() * 1.5) + 10},
                "quarantine": True,
            })  # fmt: skip
            if non_null.nunique() <= 20 and rows >= 100:
                expectations.append({
                    "expectation": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": column, "value_set": sorted(str(v) for v in non_null.unique())},
                    "severity": "warn",
                })  # fmt: skip
    unique_share = float(view[TEXT].nunique() / rows) if rows else 1.0
    expectations += [
        {"expectation": "expect_column_values_to_be_in_set", "kwargs": {"column": TEXT_TYPE, "value_set": ["str"]},
         "quarantine": True},
        {"expectation": "expect_column_values_to_match_regex", "kwargs": {"column": TEXT, "regex": r"\S"},
         "quarantine": True},
        {"expectation": "expect_column_proportion_of_unique_values_to_be_between",
         "kwargs": {"column": TEXT, "min_value": round(max(0.0, unique_share - 0.05), 3)}, "severity": "warn"},
    ]  # fmt: skip
    return {
        "note": f"proposed from a trusted batch of {rows} rows: review, edit, then copy into conf/base/expectations/",
        "name": "proposed",
        "max_quarantine_share": 0.05,
        "expectations": expectations,
    }
