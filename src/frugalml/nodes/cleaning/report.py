"""The review queue and the ``label_issues`` report: counts by class, HTML page, JSON summary, metrics."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from frugalml.labels import CONFIDENCE_COLUMN, SOURCE_COLUMN
from frugalml.nodes.cleaning.inputs import label_name
from frugalml.nodes.split import id_column_of
from frugalml.params import CleanParams, DataSchema
from frugalml.tracking import Metrics, as_metrics

OUTCOME_METRICS = ("rows", "gold_rows", "weak_rows", "weak_rejected", "label_issues", "relabelled", "removed",
                   "review_queue", "train_clean_rows")  # fmt: skip
DATA_ISSUE_METRICS = ("near_duplicates", "near_duplicate_sets", "exact_duplicates", "outliers", "non_iid_p_value")

# --- review queue ---------------------------------------------------------------------------------------------


def _issue_types(quality: pd.DataFrame) -> pd.Series:
    kinds = [("label_issue", "is_label_issue"), ("near_duplicate", "is_near_duplicate"), ("outlier", "is_outlier")]
    present = [(kind, quality[column].fillna(False).to_numpy(dtype=bool)) for kind, column in kinds
               if column in quality.columns]  # fmt: skip
    names = [";".join(kind for kind, flags in present if flags[i]) for i in range(len(quality))]
    return pd.Series(names, index=quality.index, dtype=object)


def review_queue(
    frame: pd.DataFrame,
    quality: pd.DataFrame,
    *,
    flagged: np.ndarray,
    action: np.ndarray,
    schema: DataSchema,
    config: CleanParams,
) -> pd.DataFrame:
    """Every flagged row, label issues first, then by label quality (most suspicious first).

    Args:
        frame: Labelled rows (their text).
        quality: Their ``label_quality`` rows, positionally aligned (a RangeIndex).
        flagged: (N,) bool, the rows to list.
        action: (N,) what the policy did to each row (``relabelled``, ``removed``, ``review``).
        schema: The dataset schema.
        config: ``params:clean`` (``review_text_chars``).

    Returns:
        Id, source, confidence, given and suggested label (value and name), ``suggested_confidence``,
        ``label_quality``, ``near_duplicate_of`` (when checked), ``issues``, ``action`` and the texts, cut
        to ``clean.review_text_chars``.
    """
    id_column = id_column_of(schema)
    keep = [id_column, SOURCE_COLUMN, CONFIDENCE_COLUMN, "given_label", "suggested_label", "suggested_confidence",
            "label_quality", "near_duplicate_of"]  # fmt: skip
    queue = quality.loc[flagged, [c for c in keep if c in quality.columns]].copy()
    queue.insert(4, "given_label_name", queue["given_label"].map(lambda v: label_name(schema, v)))
    queue.insert(6, "suggested_label_name", queue["suggested_label"].map(lambda v: label_name(schema, v)))
    queue["issues"] = _issue_types(quality.loc[flagged])
    queue["action"] = action[flagged]
    limit = config.review_text_chars
    for column in schema.text_columns:
        text = frame.loc[flagged, column].fillna("").astype(str)
        queue[column] = text.map(lambda t: t if len(t) <= limit else t[:limit] + "…").to_numpy()
    order = queue["issues"].str.contains("label_issue").map({True: 0, False: 1})
    return (
        queue.assign(_order=order)
        .sort_values(["_order", "label_quality"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )


# --- report ---------------------------------------------------------------------------------------------------


def issue_counts_by_class(label_quality: pd.DataFrame, schema: DataSchema) -> list[dict[str, Any]]:
    """Label issues per given class, with the classes the model suggests instead.

    Args:
        label_quality: :func:`~frugalml.nodes.cleaning.find_label_issues`.
        schema: The dataset schema.

    Returns:
        One dict per declared class: ``label``, ``name``, ``rows``, ``label_issues``, ``share`` and
        ``suggested`` (suggested class name -> count).
    """
    out = []
    for value in schema.labels:
        rows = label_quality[label_quality["given_label"] == value]
        flagged = rows[rows["is_label_issue"].fillna(False).astype(bool)]
        suggested = flagged["suggested_label"].map(lambda v: label_name(schema, v)).value_counts().to_dict()
        out.append({"label": value, "name": label_name(schema, value), "rows": len(rows),
                    "label_issues": len(flagged), "share": len(flagged) / len(rows) if len(rows) else 0.0,
                    "suggested": suggested})  # fmt: skip
    return out


def label_issue_summary(
    outcome: dict[str, Any], by_class: list[dict[str, Any]], data_issues: dict[str, Any], config: CleanParams
) -> dict[str, Any]:
    """The JSON summary of the report: outcome, counts by class, data issues and the method's parameters."""
    return {
        "outcome": outcome,
        "by_class": by_class,
        "data_issues": data_issues,
        "filter_by": config.filter_by,
        "exclude_by": config.exclude_by or config.filter_by,
        "rank_by": config.rank_by,
        "folds": config.folds,
        "rounds": config.rounds,
        "models": config.models,
    }


def label_issue_metrics(
    outcome: dict[str, Any], by_class: list[dict[str, Any]], data_issues: dict[str, Any]
) -> Metrics:
    """MLflow metrics: the outcome counts, ``label_issues.<class name>`` and ``data_issues.<check>``."""
    metrics = as_metrics({key: outcome[key] for key in OUTCOME_METRICS})
    metrics.update(as_metrics({c["name"]: c["label_issues"] for c in by_class}, prefix="label_issues."))
    checked = {key: data_issues[key] for key in DATA_ISSUE_METRICS if key in data_issues}
    metrics.update(as_metrics(checked, prefix="data_issues."))
    return metrics


def queue_records(review_queue: pd.DataFrame, schema: DataSchema) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The review queue with its texts as strings, and as JSON records (missing values as ``None``)."""
    texts = {c: review_queue[c].fillna("").astype(str) for c in schema.text_columns if c in review_queue.columns}
    queue = review_queue.assign(**texts)  # a CSV round trip reads empty text back as NaN
    return queue, queue.astype(object).where(queue.notna(), None).to_dict(orient="records")


def render_label_issues_html(summary: dict[str, Any], queue: pd.DataFrame, schema: DataSchema, top: int) -> str:
    """A self-contained HTML page: outcome, counts by class, data issues and the top suspects.

    Args:
        summary: :func:`~frugalml.nodes.cleaning.report_label_issues`'s JSON summary.
        queue: The review queue (most suspicious first).
        schema: The dataset schema.
        top: How many suspects to list.

    Returns:
        HTML text.
    """
    esc = html.escape
    outcome = summary["outcome"]
    by_class = "".join(
        f"<tr><td>{esc(c['name'])}</td><td>{c['rows']}</td><td>{c['label_issues']}</td><td>{c['share']:.2%}</td>"
        f"<td>{esc(', '.join(f'{k}: {v}' for k, v in c['suggested'].items()))}</td></tr>"
        for c in summary["by_class"]
    )
    data_issues = summary["data_issues"]
    data_rows = "".join(
        f"<tr><td>{esc(key)}</td><td>{value}</td></tr>" for key, value in data_issues.items() if key not in {"checked"}
    )
    id_column = id_column_of(schema)
    preview = schema.text_columns[0]
    suspects = "".join(
        f"<tr><td>{esc(str(r[id_column]))}</td><td>{esc(str(r[SOURCE_COLUMN]))}</td>"
        f"<td>{esc(str(r['given_label_name']))}</td><td>{esc(str(r['suggested_label_name']))}</td>"
        f"<td>{r['suggested_confidence']:.3f}</td><td>{r['label_quality']:.4f}</td><td>{esc(str(r['issues']))}</td>"
        f"<td>{esc(str(r['action']))}</td><td>{esc(str(r[preview])[:160])}</td></tr>"
        for _, r in queue.head(top).iterrows()
    )
    counts = ", ".join(f"{key}: {outcome[key]}" for key in ("rows", "gold_rows", "weak_rows", "label_issues",
                                                          "relabelled", "removed", "review_queue"))  # fmt: skip
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>frugalml label issues</title><style>"
        "body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
        "vertical-align:top;text-align:left}</style></head><body>"
        f"<h1>Label issues: {outcome['label_issues']} of {outcome['rows']} rows</h1>"
        f"<p>policy: {esc(outcome['policy'])} (weak labels: {esc(outcome['weak_policy'])}); "
        f"method: {esc(summary['filter_by'])} on out-of-fold probabilities ({summary['folds']} folds, "
        f"{summary['rounds']} round(s), rows left out between rounds by {esc(summary['exclude_by'])}, models "
        f"{esc(', '.join(summary['models']))}). {esc(counts)}</p>"
        "<h2>By class</h2><table><tr><th>given label</th><th>rows</th><th>label issues</th><th>share</th>"
        f"<th>model suggests</th></tr>{by_class}</table>"
        f"<h2>Data issues</h2><table><tr><th>check</th><th>value</th></tr>{data_rows}</table>"
        f"<h2>Top {min(top, len(queue))} suspects</h2><table><tr><th>id</th><th>source</th><th>given</th>"
        "<th>suggested</th><th>p(suggested)</th><th>label quality</th><th>issues</th><th>action</th>"
        f"<th>{esc(preview)}</th></tr>{suspects}</table>"
        "<p>Label quality is cleanlab's score of the given label (low = suspicious). The full list is the "
        "review queue (label_review_queue.csv / .json).</p></body></html>"
    )
