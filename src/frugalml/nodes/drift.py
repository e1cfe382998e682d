"""Drift between a reference batch (what the current model was trained on) and a new batch.

Notation: R reference rows, C current rows. Signals, each an effect size compared with a threshold (effect
sizes, not p-values: with thousands of rows every tiny difference is "significant"):

1. ``label_prior`` — |share of the positive label in C - in R| (rows with a label only).
2. ``length_ks.<column>`` — two-sample Kolmogorov–Smirnov statistic of character lengths per text column.
3. ``token_js`` — Jensen–Shannon divergence (base 2) of hashed-unigram frequency distributions, minus the
   divergence a same-size random slice of R shows against the rest of R (sampling noise is not drift).
4. ``oov_rate`` — share of C's tokens whose hash bucket never occurs in R, minus the same share for that
   slice of R against the rest of R.
5. ``share.<column>`` — |mean in C - mean in R| of indicator columns (e.g. HTML-only, has a List-Id).

A batch drifts when any signal exceeds its threshold; the report says which, and recommends retraining.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.spatial.distance import jensenshannon  # noqa: E402
from scipy.stats import ks_2samp  # noqa: E402

from frugalml.errors import DataQualityError  # noqa: E402
from frugalml.models.hashing import HashingConfig, HashingFeaturizer  # noqa: E402
from frugalml.params import DataSchema, DriftParams, parse_params  # noqa: E402
from frugalml.tracking import as_metrics

logger = logging.getLogger(__name__)


def _indicator(frame: pd.DataFrame, spec: str) -> pd.Series | None:
    """``column`` (bool/0-1) or ``column:nonempty`` (text present) -> float series; None when absent."""
    column, _, mode = spec.partition(":")
    if column not in frame.columns:
        return None
    values = frame[column]
    if mode == "nonempty":
        return values.fillna("").astype(str).str.strip().ne("").astype(float)
    if mode == "positive":
        return (pd.to_numeric(values, errors="coerce").fillna(0) > 0).astype(float)
    return values.fillna(False).astype(float)


def _token_counts(frame: pd.DataFrame, columns: list[str], buckets: int) -> np.ndarray:
    featurizer = HashingFeaturizer(HashingConfig(buckets=buckets, word_ngrams=(1, 1), char_ngrams=None))
    fields = [frame[c].fillna("").astype(str).tolist() for c in columns]
    return np.asarray(featurizer.transform(fields).sum(axis=0)).ravel()


def _oov(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    total = current_counts.sum()
    return float(current_counts[reference_counts == 0].sum() / total) if total else 0.0


def drift_signals(
    reference: pd.DataFrame, current: pd.DataFrame, params: dict[str, Any], data: dict[str, Any]
) -> dict[str, float]:
    """Compute every drift signal.

    Args:
        reference: The reference batch.
        current: The new batch.
        params: ``params:drift``.
        data: ``params:data``.

    Returns:
        Signal name -> effect size.
    """
    config = parse_params(DriftParams, params, name="drift")
    schema = parse_params(DataSchema, data, name="data")
    signals: dict[str, float] = {}
    label = schema.label_column
    if label in reference.columns and label in current.columns:
        ref_labels = pd.to_numeric(reference[label], errors="coerce").dropna()
        cur_labels = pd.to_numeric(current[label], errors="coerce").dropna()
        if len(ref_labels) and len(cur_labels):
            signals["label_prior"] = abs(
                float((cur_labels == schema.positive_label).mean() - (ref_labels == schema.positive_label).mean())
            )
    columns = [c for c in schema.text_columns if c in reference.columns and c in current.columns]
    for column in columns:
        ref_len = reference[column].fillna("").astype(str).str.len()
        cur_len = current[column].fillna("").astype(str).str.len()
        signals[f"length_ks.{column}"] = float(ks_2samp(ref_len, cur_len).statistic)
    if columns:
        ref_counts = _token_counts(reference, columns, config.token_buckets)
        cur_counts = _token_counts(current, columns, config.token_buckets)
        if ref_counts.sum() and cur_counts.sum():
            # same-distribution baseline at the same sample size: a random |C|-row slice of R (at most half
            # of R) against the rest of R. Both token signals are reported in excess of that baseline, so a
            # small batch is not "drifted" merely because small samples look different.
            size = max(1, min(len(current), len(reference) // 2))
            picked = np.zeros(len(reference), dtype=bool)
            picked[np.random.default_rng(config.seed).choice(len(reference), size=size, replace=False)] = True
            rest_counts = _token_counts(reference[~picked], columns, config.token_buckets)
            slice_counts = _token_counts(reference[picked], columns, config.token_buckets)
            baseline_js = float(jensenshannon(rest_counts, slice_counts, base=2)) if slice_counts.sum() else 0.0
            signals["token_js"] = max(0.0, float(jensenshannon(ref_counts, cur_counts, base=2)) - baseline_js)
            signals["oov_rate"] = max(0.0, _oov(ref_counts, cur_counts) - _oov(rest_counts, slice_counts))
    for spec in config.indicator_columns:
        ref_values, cur_values = _indicator(reference, spec), _indicator(current, spec)
        if ref_values is not None and cur_values is not None and len(ref_values) and len(cur_values):
            signals[f"share.{spec.partition(':')[0]}"] = abs(float(cur_values.mean() - ref_values.mean()))
    return signals


def _threshold(name: str, config: DriftParams) -> float:
    kind = name.split(".", 1)[0]
    return {
        "label_prior": config.thresholds.label_prior,
        "length_ks": config.thresholds.length_ks,
        "token_js": config.thresholds.token_js,
        "oov_rate": config.thresholds.oov_rate,
        "share": config.thresholds.indicator_share,
    }[kind]


def plot_drift(reference: pd.DataFrame, current: pd.DataFrame, report: dict[str, Any], columns: list[str]) -> Figure:
    """Signals against thresholds (left) and length distributions of the first text column (right).

    Args:
        reference: Reference batch.
        current: New batch.
        report: Output of :func:`detect_drift`'s report.
        columns: Text columns.

    Returns:
        The figure.
    """
    figure, (bars, lengths) = plt.subplots(1, 2, figsize=(11, 4.5))
    names = list(report["signals"])
    values = [report["signals"][n] for n in names]
    limits = [report["thresholds"][n] for n in names]
    colours = ["tab:red" if n in report["drifted"] else "tab:blue" for n in names]
    positions = np.arange(len(names))
    bars.barh(positions, values, color=colours)
    bars.scatter(limits, positions, marker="|", s=300, color="black", label="threshold")
    bars.set_yticks(positions, names, fontsize=8)
    bars.set(title="drift signals (red: above threshold)", xlabel="effect size")
    bars.legend(loc="lower right")
    if columns:
        column = columns[-1]
        for frame, name in ((reference, "reference"), (current, "current")):
            length = np.log10(1 + frame[column].fillna("").astype(str).str.len())
            lengths.hist(length, bins=40, alpha=0.5, density=True, label=f"{name} ({len(frame)})")
        lengths.set(title=f"log10(1 + length of {column})", ylabel="density")
        lengths.legend()
    verdict = "RETRAIN RECOMMENDED" if report["retrain_recommended"] else "no drift"
    figure.suptitle(f"drift: {verdict}")
    figure.tight_layout()
    return figure


def render_drift_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of the drift report.

    Args:
        report: The drift report.

    Returns:
        HTML text.
    """
    rows = "".join(
        f"<tr class='{'bad' if name in report['drifted'] else ''}'><td>{html.escape(name)}</td>"
        f"<td>{value:.4f}</td><td>{report['thresholds'][name]:.4f}</td></tr>"
        for name, value in report["signals"].items()
    )
    verdict = "Retrain recommended" if report["retrain_recommended"] else "No drift detected"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>frugalml drift report</title><style>"
        "body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd}"
        ".bad{background:#fdd}</style></head><body>"
        f"<h1>{verdict}</h1><p>reference rows: {report['reference_rows']}, current rows: "
        f"{report['current_rows']}, action: {html.escape(report['action'])}</p>"
        f"<table><tr><th>signal</th><th>value</th><th>threshold</th></tr>{rows}</table>"
        "<p>Effect sizes: |Δ positive share|, Kolmogorov–Smirnov statistic of lengths, Jensen–Shannon divergence of "
        "hashed unigrams (base 2), excess out-of-vocabulary token rate, |Δ share| of indicator columns.</p>"
        "</body></html>"
    )


def reference_mismatch(reference: pd.DataFrame, current: pd.DataFrame, schema: DataSchema) -> str | None:
    """Why the reference is from another table than ``params:data`` describes, or ``None`` when it is not.

    The reference (the current model's training set) is of the same table when it has every text column and
    the label column of ``params:data`` that the new batch has, and its labels are among ``data.labels`` (a
    training set of this table always has them). The first run on a new table meets the previous table's
    training set.

    Args:
        reference: The reference batch.
        current: The new batch.
        schema: ``params:data``.

    Returns:
        A reason, naming the columns, or ``None``.
    """
    wanted = [c for c in (*schema.text_columns, schema.label_column) if c in current.columns]
    missing = [c for c in wanted if c not in reference.columns]
    shown = list(map(str, reference.columns))[:8]
    columns = ", ".join(shown) + (", ..." if len(reference.columns) > len(shown) else "")
    if missing:
        return f"columns {columns}; it has no {', '.join(missing)}"
    if schema.label_column in reference.columns:
        values = reference[schema.label_column].dropna()
        numeric = pd.to_numeric(values, errors="coerce")
        undeclared = sorted(
            {str(v) for v, n in zip(values, numeric, strict=True) if pd.isna(n) or n not in schema.labels}
        )
        if undeclared:
            return (f"columns {columns}; its '{schema.label_column}' has labels {undeclared[:5]} outside data.labels "
                    f"{schema.labels}")  # fmt: skip
    return None


def detect_drift(
    reference: pd.DataFrame | None, current: pd.DataFrame, params: dict[str, Any], data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], Figure, str]:
    """Compare a new batch with the reference; flag (or block on) drift.

    Args:
        reference: The data the current model was trained on, or ``None`` before any model exists.
        current: The new batch.
        params: ``params:drift``.
        data: ``params:data``.

    Returns:
        The report (signals, thresholds, drifted signals, ``retrain_recommended``), MLflow metrics, a figure
        and an HTML page.

    Raises:
        DataQualityError: When ``action: block`` and the batch drifted.
    """
    config = parse_params(DriftParams, params, name="drift")
    schema = parse_params(DataSchema, data, name="data")
    mismatch = None
    if config.enabled and reference is not None and not reference.empty:
        mismatch = reference_mismatch(reference, current, schema)
        if mismatch:
            logger.info("drift reference is from another table (%s): no comparison; the next run compares against "
                        "this table's training set", mismatch)  # fmt: skip
    if reference is None or reference.empty or not config.enabled or mismatch:
        why = (
            "drift check disabled"
            if not config.enabled
            else f"drift reference is from another table ({mismatch}): no comparison"
            if mismatch
            else "no reference batch yet (no model trained)"
        )
        report = {"signals": {}, "thresholds": {}, "drifted": [], "retrain_recommended": False, "note": why,
                  "reference_rows": 0 if reference is None else len(reference), "current_rows": len(current),
                  "action": config.action}  # fmt: skip
        figure = plt.figure(figsize=(4, 1))
        figure.text(0.5, 0.5, why, ha="center")
        return report, as_metrics({"checked": 0.0}, prefix="drift."), figure, render_drift_html(report)
    signals = drift_signals(reference, current, params, data)
    thresholds = {name: _threshold(name, config) for name in signals}
    drifted = [name for name, value in signals.items() if value > thresholds[name]]
    report = {
        "signals": signals,
        "thresholds": thresholds,
        "drifted": drifted,
        "retrain_recommended": bool(drifted),
        "reference_rows": len(reference),
        "current_rows": len(current),
        "action": config.action,
    }
    metrics = as_metrics({**signals, "retrain_recommended": bool(drifted), "checked": 1.0}, prefix="drift.")
    columns = [c for c in schema.text_columns if c in current.columns]
    figure = plot_drift(reference, current, report, columns)
    if drifted:
        logger.warning("drift: %s above threshold; retraining recommended", drifted)
        if config.action == "block":
            details = ", ".join(f"{n}={signals[n]:.3f} > {thresholds[n]:.3f}" for n in drifted)
            raise DataQualityError(f"batch drifted from the reference: {details}")
    return report, metrics, figure, render_drift_html(report)
