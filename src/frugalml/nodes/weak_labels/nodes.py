"""The weak_label stage's Kedro nodes: apply the LFs -> fit the label model -> summarise.

1. :func:`apply_labelling_functions` resolves ``params:weak_label.lfs``, checks that the gold dev set can
   judge them, and computes ``L`` on the pool and on the dev set (``lf_votes``, in memory);
2. :func:`fit_weak_label_model` turns the votes into labels: ``weak_labels`` and ``weak_abstained``
   (plus the fitted label model, ``weak_label_model``, in memory);
3. :func:`summarise_weak_labels` judges each LF (the LF summary, its plot, leave-one-out) and writes the
   metrics.

What stops the run is a broken configuration (an unknown LF, a broken LF, LFs that abstain on every row of
the pool *and* of the gold dev set). What the data only makes impossible does not: when no library LF fits
the data's labels or columns, or the gold dev set is too small to check the LFs (a small table), the pool
rows go to ``weak_abstained`` with that reason, a warning says what to do, and the run goes on with the
hand labels. :func:`weak_label` runs the three nodes in a row (notebooks, tests).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from frugalml.errors import EmptyDatasetError, ParameterError
from frugalml.nodes.weak_labels.analysis import leave_one_out, lf_summary_table, plot_lf_summary
from frugalml.nodes.weak_labels.application import apply_lfs
from frugalml.nodes.weak_labels.label_model import (
    accuracy_of,
    argmax_random_ties,
    combine_votes,
    fit_label_model,
    require_two_classes,
)
from frugalml.nodes.weak_labels.library import lf_view
from frugalml.nodes.weak_labels.registry import create_lfs
from frugalml.nodes.weak_labels.spec import LFSpec

logger = logging.getLogger(__name__)

_SUMMARY_COLUMNS = ["lf", "family", "coverage", "dev_accuracy", "loo_delta", "verdict"]


@dataclass
class LFVotes:
    """What the apply node hands on (``lf_votes``).

    Attributes:
        pool_rows: N, the pool's rows.
        lfs: The resolved LFs (empty when none fits).
        pool_matrix: ``L`` of the pool (N, m).
        dev_matrix: ``L`` of the gold dev set.
        y_dev: Dev class indices.
        failures: Rows each LF raised on (pool and dev).
        class_balance: The prior given to the label model (None: the label model estimates it).
        dev_balance: Class shares of the gold dev set.
        apply_seconds: Time spent applying the LFs to the pool.
        unlabelled_reason: Set when nothing can be labelled: every pool row goes to ``weak_abstained`` with it
            (an empty string: the pool is empty too, so there is nothing to say).
    """

    pool_rows: int
    lfs: list[LFSpec] = field(default_factory=list)
    pool_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    dev_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    y_dev: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    failures: dict[str, int] = field(default_factory=dict)
    class_balance: list[float] | None = None
    dev_balance: list[float] = field(default_factory=list)
    apply_seconds: float = 0.0
    unlabelled_reason: str | None = None

    @property
    def covered(self) -> np.ndarray:
        """(N,) whether any LF voted on each pool row."""
        return np.asarray((self.pool_matrix >= 0).any(axis=1), dtype=bool)


def _schema_and_config(params: dict[str, Any], data: dict[str, Any]) -> tuple[Any, Any, list[str]]:
    from frugalml.params import DataSchema, WeakLabelParams, parse_params

    config = parse_params(WeakLabelParams, params, name="weak_label")
    schema = parse_params(DataSchema, data, name="data")
    return config, schema, schema.label_names or [str(v) for v in schema.labels]


def _class_balance(config: Any, dev_balance: list[float], cardinality: int) -> list[float] | None:
    if config.class_balance == "dev":
        return dev_balance
    if config.class_balance == "estimate":
        return None
    balance = list(config.class_balance)
    if len(balance) != cardinality:
        raise ParameterError(f"weak_label.class_balance has {len(balance)} entries, data.labels has {cardinality}")
    return balance


def _dev_check(dev_gold: pd.DataFrame, schema: Any, label_names: list[str]) -> tuple[np.ndarray, str]:
    """Dev class indices, and why the gold dev set cannot check the LFs ("" when it can)."""
    from frugalml.nodes.train import encode_labels

    if dev_gold.empty:
        return np.zeros(0, dtype=np.int64), (
            "the gold dev set is empty, so the labelling functions cannot be checked; label more rows or raise "
            "split.gold_dev_size (it is capped at 10% of the training rows)"
        )
    y_dev = encode_labels(dev_gold[schema.label_column], schema)
    try:
        require_two_classes(y_dev, label_names, len(schema.labels))
    except EmptyDatasetError as error:
        return y_dev, str(error)
    return y_dev, ""


def apply_labelling_functions(
    pool: pd.DataFrame, dev_gold: pd.DataFrame, params: dict[str, Any], data: dict[str, Any]
) -> LFVotes:
    """Node 1: resolve the LFs and compute the label matrices of the pool and the gold dev set.

    Args:
        pool: Unlabelled rows (``unlabelled_pool``; a label column, if any, is ignored).
        dev_gold: The small hand-labelled dev set (LF accuracies, class balance, leave-one-out).
        params: ``params:weak_label`` (see :class:`frugalml.params.WeakLabelParams`).
        data: ``params:data``.

    Returns:
        ``lf_votes``.

    Raises:
        EmptyDatasetError: When every LF abstains on every pool row and every gold dev row (the LFs do not
            fit the data at all).
        LabelingFunctionError: When an LF returns an invalid value or fails on too many rows.
        ParameterError, SchemaError: On an unknown LF or applier, a class balance of the wrong length, or
            columns the LFs need.
    """
    from frugalml.nodes.split import id_column_of

    config, schema, label_names = _schema_and_config(params, data)
    cardinality = len(schema.labels)
    lfs = create_lfs(config.lfs, label_names, columns=pool.columns if len(pool) else dev_gold.columns)
    if not lfs:
        if len(pool):
            return LFVotes(len(pool), unlabelled_reason=(
                f"no_fitting_lf: weak_label.lfs {config.lfs} selects no labelling function that fits this data "
                f"(labels {label_names}, columns {sorted(pool.columns)[:12]}): register LFs for it "
                "(docs/weak_labels.md), or label these rows"
            ))  # fmt: skip
        logger.warning("weak_label: no labelling function fits this data and the pool is empty; nothing to label")
        return LFVotes(0, unlabelled_reason="")
    y_dev, unchecked = _dev_check(dev_gold, schema, label_names)
    if unchecked:
        if pool.empty:
            logger.warning("weak_label: nothing to label, and %s", unchecked)
            return LFVotes(0, unlabelled_reason="")
        return LFVotes(len(pool), unlabelled_reason=f"gold_dev_too_small: {unchecked}")
    dev_balance = [float(p) for p in np.bincount(y_dev, minlength=cardinality) / len(y_dev)]
    class_balance = _class_balance(config, dev_balance, cardinality)
    ids = id_column_of(schema)

    def apply(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        view = lf_view(frame, schema.text_columns, context)
        return apply_lfs(view, lfs, cardinality=cardinality, applier=config.applier, n_parallel=config.n_parallel,
                         max_failure_share=config.max_lf_failure_share, progress=config.progress,
                         ids=frame.get(ids))  # fmt: skip

    context = pd.concat([pool, dev_gold.drop(columns=[schema.label_column])], ignore_index=True)
    dev_matrix, dev_failures = apply(dev_gold)
    started = time.perf_counter()
    pool_matrix, pool_failures = apply(pool)
    votes = LFVotes(
        len(pool),
        lfs=lfs,
        pool_matrix=pool_matrix,
        dev_matrix=dev_matrix,
        y_dev=y_dev,
        failures={name: dev_failures[name] + pool_failures[name] for name in dev_failures},
        class_balance=class_balance,
        dev_balance=dev_balance,
        apply_seconds=time.perf_counter() - started,
    )
    if len(pool) and not votes.covered.any() and not (dev_matrix >= 0).any():
        raise EmptyDatasetError(
            f"every labelling function abstained on all {len(pool)} pool rows and all {len(dev_gold)} gold dev "
            f"rows: the LFs {config.lfs} do not fit this data (check the text columns, or register LFs for it)"
        )
    return votes


def _empty_labels(pool: pd.DataFrame, schema: Any) -> pd.DataFrame:
    from frugalml.labels import CONFIDENCE_COLUMN, SOURCE_COLUMN, prob_columns

    extra = [SOURCE_COLUMN, CONFIDENCE_COLUMN, *prob_columns(schema.labels), "lf_votes"]
    return pool.iloc[0:0].assign(**{column: pd.Series(dtype=object) for column in extra})


def _unlabelled(pool: pd.DataFrame, schema: Any, reason: str) -> pd.DataFrame:
    """Every pool row, for ``weak_abstained`` with ``reason`` (none when ``reason`` is empty)."""
    if not reason:
        return pool.iloc[0:0].assign(reason=pd.Series(dtype=object))
    abstained = pool.reset_index(drop=True).assign(reason=reason)
    abstained[schema.label_column] = pd.array([pd.NA] * len(abstained), dtype="Int64")
    logger.warning("weak_label: %d pool row(s) not labelled: %s", len(pool), reason)
    return abstained


def _label_rows(pool: pd.DataFrame, votes: LFVotes, probabilities: np.ndarray, schema: Any, seed: int) -> pd.DataFrame:
    """The pool with hard labels, ``label_source``, confidence and ``label_prob_<value>`` columns."""
    from frugalml.labels import CONFIDENCE_COLUMN, SOURCE_COLUMN, WEAK, prob_columns

    empty = not len(pool)
    hard = np.zeros(0, dtype=np.int64) if empty else argmax_random_ties(probabilities, seed)
    labelled = pool.reset_index(drop=True).copy()
    labelled[schema.label_column] = pd.array(np.asarray(schema.labels)[hard], dtype="Int64")
    labelled[SOURCE_COLUMN] = WEAK
    labelled[CONFIDENCE_COLUMN] = np.zeros(0) if empty else probabilities.max(axis=1)
    for k, column in enumerate(prob_columns(schema.labels)):
        labelled[column] = np.zeros(0) if empty else probabilities[:, k]
    labelled["lf_votes"] = (votes.pool_matrix >= 0).sum(axis=1)
    return labelled


def _abstain_reasons(
    labelled: pd.DataFrame, votes: LFVotes, prior: np.ndarray, schema: Any, config: Any
) -> tuple[pd.Series, int]:
    """Why each row is not kept ("" when it is), and how many fell below ``min_confidence``; with the ``prior``
    policy, rows without votes get the prior."""
    from frugalml.labels import CONFIDENCE_COLUMN, prob_columns

    covered = votes.covered
    reasons = pd.Series("", index=labelled.index, dtype=object)
    if config.abstain_policy == "drop":
        reasons[~covered] = "all labelling functions abstained"
    else:  # prior: keep them, labelled with the class balance (a weak, honest soft label)
        labelled.loc[~covered, prob_columns(schema.labels)] = np.tile(prior, (int((~covered).sum()), 1))
        labelled.loc[~covered, CONFIDENCE_COLUMN] = float(prior.max())
        labelled.loc[~covered, schema.label_column] = schema.labels[int(prior.argmax())]
    low = (labelled[CONFIDENCE_COLUMN] < config.min_confidence) & (reasons == "")
    reasons[low] = f"label confidence below weak_label.min_confidence {config.min_confidence}"
    return reasons, int(low.sum())


def fit_weak_label_model(
    pool: pd.DataFrame, votes: LFVotes, params: dict[str, Any], data: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Node 2: the label model turns the votes into labels.

    Args:
        pool: ``unlabelled_pool``.
        votes: ``lf_votes``.
        params: ``params:weak_label``.
        data: ``params:data``.
        seed: ``params:seed``.

    Returns:
        ``weak_labels`` (pool rows with the hard label, ``label_source``, ``label_confidence`` and
        ``label_prob_<value>`` columns), ``weak_abstained`` (rows not labelled, with ``reason``), and
        ``weak_label_model`` (the fitted model, the prior, dev accuracies, for the summary).
    """
    config, schema, _ = _schema_and_config(params, data)
    if votes.unlabelled_reason is not None:
        abstained = _unlabelled(pool, schema, votes.unlabelled_reason)
        return _empty_labels(pool, schema), abstained, {"weak_labelled": 0, "abstained": len(abstained)}
    cardinality = len(schema.labels)
    covered = votes.covered
    prior = np.asarray(votes.class_balance if votes.class_balance is not None else votes.dev_balance)
    model = None
    if config.label_model == "snorkel" and covered.any():
        model = fit_label_model(votes.pool_matrix, cardinality, votes.class_balance, config, seed)
        if votes.class_balance is None:  # the balance the label model estimated
            prior = np.asarray(getattr(model, "p", prior), dtype=np.float64)
    dev_probabilities = combine_votes(votes.dev_matrix, model, cardinality, prior)
    probabilities = (
        combine_votes(votes.pool_matrix, model, cardinality, prior) if len(pool) else np.zeros((0, cardinality))
    )
    labelled = _label_rows(pool, votes, probabilities, schema, seed)
    reasons, low_confidence = _abstain_reasons(labelled, votes, prior, schema, config)
    rejected = reasons != ""
    abstained = labelled[rejected].assign(reason=reasons[rejected].to_numpy())
    abstained[schema.label_column] = pd.array([pd.NA] * len(abstained), dtype="Int64")
    fit = {
        "model": model,
        "prior": prior,
        "dev_accuracy": accuracy_of(dev_probabilities, votes.y_dev, seed),
        "dev_majority": accuracy_of(combine_votes(votes.dev_matrix, None, cardinality, prior), votes.y_dev, seed),
        "low_confidence": low_confidence,
        "weak_labelled": int((~rejected).sum()),
        "abstained": int(rejected.sum()),
    }
    return labelled[~rejected].reset_index(drop=True), abstained.reset_index(drop=True), fit


def _lf_summary(votes: LFVotes, fit: dict[str, Any], config: Any, label_names: list[str], seed: int) -> pd.DataFrame:
    summary = lf_summary_table(votes.lfs, votes.pool_matrix, votes.dev_matrix, votes.y_dev, failures=votes.failures,
                               label_names=label_names)  # fmt: skip
    if config.leave_one_out and votes.covered.any() and len(votes.lfs) > 1:
        summary["loo_delta"] = leave_one_out(
            votes.pool_matrix,
            votes.dev_matrix,
            votes.y_dev,
            cardinality=len(label_names),
            class_balance=votes.class_balance,
            prior=fit["prior"],
            config=config,
            seed=seed,
            baseline=fit["dev_accuracy"],
            progress=config.progress,
        )
    else:
        summary["loo_delta"] = np.nan
    summary["verdict"] = np.select([summary["loo_delta"] > 0, summary["loo_delta"] < 0], ["helps", "hurts"], "neutral")
    return summary


def summarise_weak_labels(
    votes: LFVotes, fit: dict[str, Any], params: dict[str, Any], data: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, Any, dict[str, Any]]:
    """Node 3: judge each LF and report the stage.

    Args:
        votes: ``lf_votes``.
        fit: ``weak_label_model`` (with the counts of labelled and abstained rows).
        params: ``params:weak_label``.
        data: ``params:data``.
        seed: ``params:seed``.

    Returns:
        The LF summary table (coverage, overlaps, conflicts, dev accuracy, leave-one-out effect, verdict), its
        plot, and the stage's metrics.
    """
    config, _, label_names = _schema_and_config(params, data)
    n = votes.pool_rows
    if votes.unlabelled_reason is not None:
        figures: dict[str, float] = {"n_lfs": 0, "pool_rows": n}
        if votes.unlabelled_reason:
            figures |= {"weak_labelled": 0, "abstained": fit["abstained"]}
        summary = pd.DataFrame(columns=_SUMMARY_COLUMNS)
        return summary, plot_lf_summary(summary), {k: {"value": float(v), "step": 0} for k, v in figures.items()}
    summary = _lf_summary(votes, fit, config, label_names, seed)
    covered = votes.covered
    figures = {
        "n_lfs": len(votes.lfs),
        "pool_rows": n,
        "coverage": float(covered.mean()) if n else 0.0,
        "overlap": float(((votes.pool_matrix >= 0).sum(axis=1) > 1).mean()) if n else 0.0,
        "weak_labelled": fit["weak_labelled"],
        "abstained": int((~covered).sum()),
        "low_confidence": fit["low_confidence"],
        "dev_label_model_accuracy": fit["dev_accuracy"],
        "dev_majority_vote_accuracy": fit["dev_majority"],
        "apply_rows_per_s": n / votes.apply_seconds if votes.apply_seconds > 0 and n else 0.0,
        "lf_failures": int(sum(votes.failures.values())),
    }
    logger.info("weak labels: %d of %d pool rows labelled (coverage %.3f), dev accuracy %.3f (majority %.3f)",
                fit["weak_labelled"], n, figures["coverage"], fit["dev_accuracy"], fit["dev_majority"])  # fmt: skip
    return summary, plot_lf_summary(summary), {k: {"value": float(v), "step": 0} for k, v in figures.items()}


def weak_label(
    pool: pd.DataFrame, dev_gold: pd.DataFrame, params: dict[str, Any], data: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Any, dict[str, Any]]:
    """The three nodes in a row: label the unlabelled pool with LFs and a label model.

    Args:
        pool: Unlabelled rows (``unlabelled_pool``; a label column, if any, is ignored).
        dev_gold: The small hand-labelled dev set.
        params: ``params:weak_label``.
        data: ``params:data``.
        seed: ``params:seed``.

    Returns:
        ``weak_labels``, ``weak_abstained``, the LF summary table, its plot, and metrics.
    """
    votes = apply_labelling_functions(pool, dev_gold, params, data)
    weak, abstained, fit = fit_weak_label_model(pool, votes, params, data, seed)
    summary, figure, metrics = summarise_weak_labels(votes, fit, params, data, seed)
    return weak, abstained, summary, figure, metrics
