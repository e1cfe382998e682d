"""The Kedro node functions of the ``clean`` pipeline, in the order it runs them.

Each parses its parameters and hands the work to the module of its concern: :mod:`.sources` (merging label
sources), :mod:`.folds` (out-of-fold probabilities over the models of :mod:`.models`), :mod:`.issues` (label
and data issues), :mod:`.policies` (what happens to flagged rows) and :mod:`.report`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from frugalml.nodes.cleaning.folds import fold_predictors, out_of_fold_rounds, stratified_folds
from frugalml.nodes.cleaning.inputs import FOLD_COLUMN, check_folds, class_indices, pred_prob_columns
from frugalml.nodes.cleaning.issues import find_data_issues, score_label_issues, skipped_label_quality
from frugalml.nodes.cleaning.policies import apply_policy
from frugalml.nodes.cleaning.report import (
    issue_counts_by_class,
    label_issue_metrics,
    label_issue_summary,
    queue_records,
    render_label_issues_html,
)
from frugalml.nodes.cleaning.sources import merge_labelled_rows
from frugalml.nodes.split import id_column_of
from frugalml.params import CleanParams, DataSchema, TrainParams, parse_params
from frugalml.tracking import as_history, as_metrics

logger = logging.getLogger(__name__)


def merge_label_sources(
    train_labelled: pd.DataFrame, weak_labels: pd.DataFrame | None, data: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hand labels plus weak labels, as one frame with the shared label columns.

    Hand-labelled rows get ``label_source = gold``, ``label_confidence = 1`` and one-hot ``label_prob_*``
    unless they already carry them. Weak rows keep theirs (``label_confidence`` is derived from the soft
    labels when absent).

    Args:
        train_labelled: Hand-labelled training rows.
        weak_labels: The weak_label stage's output (hard label + confidence + soft labels), or ``None``
            when that stage has not run.
        data: ``params:data``.

    Returns:
        The merged rows, and the weak rows that carry no hard label (with a ``reason``; they cannot be
        cleaned or trained on).

    Raises:
        EmptyDatasetError: When there are no hand-labelled rows.
        SchemaError: On missing columns, undeclared labels, incomplete soft labels, or an id that is both
            hand- and weak-labelled (or repeats).
    """
    schema = parse_params(DataSchema, data, name="data")
    return merge_labelled_rows(train_labelled, weak_labels, schema)


def cross_validate_pred_probs(  # noqa: PLR0917  (a Kedro node: inputs arrive positionally)
    frame: pd.DataFrame,
    dev: pd.DataFrame,
    params: dict[str, Any],
    train: dict[str, Any],
    data: dict[str, Any],
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Out-of-fold class probabilities for every row (``train_pred_probs``), for cleaning and later stages.

    Folds are stratified by label and seeded. Each fold fits every model of ``clean.models`` on the other
    K-1 folds and predicts its own rows; the models' probabilities are averaged. Rounds 2..R refit the same
    folds without the rows the previous round flagged (``clean.exclude_by``, or ``clean.filter_by`` when that
    is null) and predict every row again. Exclusion only decides what the next round fits on, so it can be
    more eager than the final filter: a clean row left out costs one fit row, a flip left in teaches every
    fold model a wrong label.

    Args:
        frame: Labelled rows (:func:`merge_label_sources`).
        dev: Labelled rows for early stopping (``dev_labelled``; never cleaned here, never predicted).
        params: ``params:clean``.
        train: ``params:train`` (the ``ngram_bag`` model; its progress bar is turned off inside folds).
        data: ``params:data``.
        seed: ``params:seed`` (folds and model initialisation).

    Returns:
        The probabilities (id column, ``fold``, ``pred_prob_<value>``; no rows when ``clean.policy`` is
        ``none``) and MLflow metrics: agreement of the argmax with the given labels and rows excluded, per
        round, and the seconds spent.

    Raises:
        EmptyDatasetError: A single class, or a class with fewer rows than folds.
        SchemaError: Missing or undeclared labels.
        ParameterError: An unknown model name.
        ProbabilityError: A model returned something that is not a distribution.
    """
    config = parse_params(CleanParams, params, name="clean")
    schema = parse_params(DataSchema, data, name="data")
    train_config = parse_params(TrainParams, train, name="train")
    id_column, columns = id_column_of(schema), pred_prob_columns(schema.labels)
    if config.policy == "none":
        logger.info("clean.policy is none: no out-of-fold probabilities")
        skipped = pd.DataFrame({id_column: [], FOLD_COLUMN: [], **{c: [] for c in columns}})
        return skipped, as_metrics({"cv.skipped": 1.0})
    started = time.perf_counter()
    labels = class_indices(frame[schema.label_column], schema)
    check_folds(labels, config.folds, schema)
    predictors = fold_predictors(frame, dev, config, train_config, schema=schema, seed=seed)
    splits, fold = stratified_folds(labels, config.folds, seed)
    pred_probs, agreement, excluded = out_of_fold_rounds(frame, labels, predictors, splits, config=config,
                                                         schema=schema)  # fmt: skip
    metrics: dict[str, Any] = {"cv.agreement": as_history(agreement), "cv.excluded": as_history(excluded)}
    metrics.update(as_metrics({"cv.seconds": time.perf_counter() - started}))
    out = pd.DataFrame(pred_probs, columns=columns)
    out.insert(0, FOLD_COLUMN, fold)
    out.insert(0, id_column, frame[id_column].to_numpy())
    return out, metrics


def find_label_issues(  # noqa: PLR0917  (a Kedro node: inputs arrive positionally)
    frame: pd.DataFrame,
    pred_probs: pd.DataFrame,
    params: dict[str, Any],
    train: dict[str, Any],
    data: dict[str, Any],
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Label issues (cleanlab confident learning) and data issues of every row.

    Args:
        frame: Labelled rows (:func:`merge_label_sources`).
        pred_probs: Their out-of-fold probabilities (:func:`cross_validate_pred_probs`), matched by id.
        params: ``params:clean``.
        train: ``params:train`` (the hashed features of the data-issue checks).
        data: ``params:data``.
        seed: ``params:seed``.

    Returns:
        ``label_quality``: one row per input row, in its order: id, ``label_source``, ``label_confidence``,
        ``given_label``, ``suggested_label`` (the most probable other class for flagged rows, else the
        argmax), ``suggested_confidence``, ``given_label_probability``, ``label_quality`` (``clean.rank_by``
        score, low = suspicious), ``is_label_issue``, ``fold``, ``pred_prob_<value>`` and the data-issue
        columns of :func:`find_data_issues`; and a summary of the data issues.

    Raises:
        ProbabilityError: Probabilities that are not distributions or whose ids do not match the rows.
        SchemaError: Missing or undeclared labels.
    """
    config = parse_params(CleanParams, params, name="clean")
    schema = parse_params(DataSchema, data, name="data")
    labels = class_indices(frame[schema.label_column], schema)
    if config.policy == "none":
        return skipped_label_quality(frame, labels, schema), {"checked": False, "note": "clean.policy is none"}
    table = score_label_issues(frame, pred_probs, labels, schema, filter_by=config.filter_by, rank_by=config.rank_by)
    summary: dict[str, Any] = {"checked": False}
    if config.data_issues.enabled:
        features = parse_params(TrainParams, train, name="train").features
        data_table, summary = find_data_issues(frame, labels, schema=schema, features=features,
                                               config=config.data_issues, seed=seed)  # fmt: skip
        table = pd.concat([table, data_table], axis=1)
    logger.info("label issues: %d of %d rows (%s)", int(table["is_label_issue"].sum()), len(frame), config.filter_by)
    return table, summary


def apply_cleaning_policy(
    frame: pd.DataFrame,
    label_quality: pd.DataFrame,
    rejected: pd.DataFrame,
    params: dict[str, Any],
    data: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Apply ``clean.policy`` (hand labels) and ``clean.weak_policy`` (weak labels) to the flagged rows.

    - ``none``: every row passes unchanged.
    - ``review``: every row passes unchanged; flagged rows are listed in the review queue.
    - ``remove``: rows with a label issue go to the quarantine with a ``reason``.
    - ``relabel``: rows with a label issue take ``suggested_label`` when its probability is at least
      ``clean.relabel_min_confidence`` (``label_source = relabelled``, ``label_confidence`` and
      ``label_prob_*`` from the out-of-fold probabilities); the others go to the quarantine.

    With ``data_issues.duplicates: remove``, a near duplicate that is not the first row of its set also goes
    to the quarantine under ``remove``/``relabel``. Outliers are only ever reported.

    Args:
        frame: Labelled rows (:func:`merge_label_sources`).
        label_quality: :func:`find_label_issues` for the same rows.
        rejected: Rows that could not be cleaned (weak rows without a label), with their ``reason``.
        params: ``params:clean``.
        data: ``params:data``.

    Returns:
        ``train_clean``, the quarantine (``rejected`` + removed rows, each with a ``reason``), the review
        queue (every flagged row, most suspicious first, with its text, given and suggested label, score
        and the ``action`` taken) and an outcome dict (counts).

    Raises:
        ProbabilityError: When ``label_quality`` does not describe exactly the rows of ``frame``.
    """
    config = parse_params(CleanParams, params, name="clean")
    schema = parse_params(DataSchema, data, name="data")
    return apply_policy(frame, label_quality, rejected, config, schema)


def report_label_issues(  # noqa: PLR0917  (a Kedro node: inputs arrive positionally)
    label_quality: pd.DataFrame,
    review_queue: pd.DataFrame,
    data_issues: dict[str, Any],
    outcome: dict[str, Any],
    params: dict[str, Any],
    data: dict[str, Any],
) -> tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The ``label_issues`` report: HTML, JSON summary, the review queue as JSON records, MLflow metrics.

    Args:
        label_quality: :func:`find_label_issues`.
        review_queue: :func:`apply_cleaning_policy`'s queue.
        data_issues: :func:`find_label_issues`'s data-issue summary.
        outcome: :func:`apply_cleaning_policy`'s counts.
        params: ``params:clean``.
        data: ``params:data``.

    Returns:
        HTML text, the summary dict, the queue as a list of records, and metrics (``rows``, ``label_issues``,
        ``label_issues.<class name>``, ``removed``, ``relabelled``, ``review_queue``, data-issue counts).
    """
    config = parse_params(CleanParams, params, name="clean")
    schema = parse_params(DataSchema, data, name="data")
    by_class = issue_counts_by_class(label_quality, schema)
    summary = label_issue_summary(outcome, by_class, data_issues, config)
    metrics = label_issue_metrics(outcome, by_class, data_issues)
    queue, records = queue_records(review_queue, schema)
    page = render_label_issues_html(summary, queue, schema, config.report_top)
    return page, summary, records, metrics
