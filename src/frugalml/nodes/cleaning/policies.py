"""What happens to flagged rows: ``clean.policy`` (hand labels) and ``clean.weak_policy`` (weak labels).

``none`` and ``review`` pass every row; ``remove`` quarantines rows with a label issue; ``relabel`` takes the
suggested label when the model is confident enough and quarantines the others. Under ``remove``/``relabel``,
``data_issues.duplicates: remove`` also quarantines near duplicates that do not lead their set.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from frugalml.errors import ProbabilityError
from frugalml.labels import CONFIDENCE_COLUMN, RELABELLED, SOURCE_COLUMN, WEAK, prob_columns
from frugalml.nodes.cleaning.inputs import REASON_COLUMN, label_name, pred_prob_columns
from frugalml.nodes.cleaning.report import review_queue
from frugalml.nodes.split import id_column_of
from frugalml.params import CleanParams, DataSchema

logger = logging.getLogger(__name__)


def check_quality_rows(frame: pd.DataFrame, label_quality: pd.DataFrame, schema: DataSchema) -> None:
    """Refuse a ``label_quality`` table that does not describe exactly the rows of ``frame``, in order.

    Raises:
        ProbabilityError: When the lengths or the ids differ.
    """
    id_column = id_column_of(schema)
    if len(label_quality) != len(frame) or not np.array_equal(
        label_quality[id_column].to_numpy(), frame[id_column].to_numpy()
    ):
        raise ProbabilityError("label_quality does not describe the rows being cleaned (ids differ); rerun the stage")


def row_policies(weak: np.ndarray, config: CleanParams) -> np.ndarray:
    """(N,) the policy of each row.

    Weak rows follow ``clean.weak_policy`` (``clean.policy`` when that is null), the others ``clean.policy``;
    every row is ``none`` when ``clean.policy`` is ``none``.
    """
    policy = np.where(weak, config.weak_policy or config.policy, config.policy)
    if config.policy == "none":
        policy[:] = "none"
    return policy


def _label_issue_reasons(
    quality: pd.DataFrame, remove: np.ndarray, policy: np.ndarray, config: CleanParams, schema: DataSchema
) -> np.ndarray:
    """(N,) object: the quarantine ``reason`` of each removed row with a label issue ("" elsewhere)."""
    reasons = np.array([""] * len(quality), dtype=object)
    for i in np.flatnonzero(remove):
        row = quality.iloc[i]
        why = "below clean.relabel_min_confidence" if policy[i] == "relabel" else config.filter_by
        given, suggested = label_name(schema, row["given_label"]), label_name(schema, row["suggested_label"])
        p = row["suggested_confidence"]
        reasons[i] = f"label_issue: given {given}, model suggests {suggested} (p={p:.3f}; {why})"
    return reasons


def _duplicate_followers(
    frame: pd.DataFrame, quality: pd.DataFrame, schema: DataSchema
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool: near duplicates that do not lead their set, and (N,) object: their lead's id."""
    lead = quality["near_duplicate_of"].to_numpy(dtype=object)
    is_duplicate = quality["is_near_duplicate"].fillna(False).to_numpy(dtype=bool)
    return is_duplicate & (lead != frame[id_column_of(schema)].to_numpy()), lead


def _relabelled(frame: pd.DataFrame, quality: pd.DataFrame, relabel: np.ndarray, schema: DataSchema) -> pd.DataFrame:
    """A copy of ``frame`` whose ``relabel`` rows take the suggested label and the out-of-fold probabilities."""
    clean = frame.copy()
    if relabel.any():
        columns, probs = prob_columns(schema.labels), quality[pred_prob_columns(schema.labels)].to_numpy()
        clean.loc[relabel, schema.label_column] = quality.loc[relabel, "suggested_label"].to_numpy()
        clean.loc[relabel, SOURCE_COLUMN] = RELABELLED
        clean.loc[relabel, CONFIDENCE_COLUMN] = quality.loc[relabel, "suggested_confidence"].to_numpy()
        clean.loc[relabel, columns] = probs[relabel]
    return clean


def apply_policy(
    frame: pd.DataFrame,
    label_quality: pd.DataFrame,
    rejected: pd.DataFrame,
    config: CleanParams,
    schema: DataSchema,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The work of :func:`~frugalml.nodes.cleaning.apply_cleaning_policy`, on parsed parameters.

    Args:
        frame: Labelled rows.
        label_quality: Their label (and data) issues, row for row.
        rejected: Rows that could not be cleaned, with their ``reason``.
        config: ``params:clean``.
        schema: The dataset schema.

    Returns:
        ``train_clean``, the quarantine, the review queue and the outcome counts.

    Raises:
        ProbabilityError: When ``label_quality`` does not describe exactly the rows of ``frame``.
    """
    check_quality_rows(frame, label_quality, schema)
    quality = label_quality.reset_index(drop=True)
    weak = frame[SOURCE_COLUMN].eq(WEAK).to_numpy()
    policy = row_policies(weak, config)
    issue = quality["is_label_issue"].fillna(False).to_numpy(dtype=bool)
    confident = quality["suggested_confidence"].to_numpy(dtype=np.float64) >= config.relabel_min_confidence
    relabel = issue & (policy == "relabel") & confident
    remove = issue & ((policy == "remove") | ((policy == "relabel") & ~confident))
    reasons = _label_issue_reasons(quality, remove, policy, config, schema)
    if config.data_issues.duplicates == "remove" and "near_duplicate_of" in quality.columns:
        follower, lead = _duplicate_followers(frame, quality, schema)
        duplicate = follower & np.isin(policy, ["remove", "relabel"]) & ~remove & ~relabel
        reasons[duplicate] = [f"near_duplicate_of:{lead_id}" for lead_id in lead[duplicate]]
        remove = remove | duplicate

    clean = _relabelled(frame, quality, relabel, schema)
    quarantine = frame[remove].assign(**{REASON_COLUMN: reasons[remove]})
    quarantine = pd.concat([rejected, quarantine], ignore_index=True) if len(rejected) else quarantine
    clean = clean[~remove].reset_index(drop=True)

    flagged = issue | quality.get("is_near_duplicate", False) | quality.get("is_outlier", False)
    flagged = np.asarray(flagged, dtype=bool) & (policy != "none")
    action = np.select([relabel, remove], ["relabelled", "removed"], default="review")
    queue = review_queue(frame, quality, flagged=flagged, action=action, schema=schema, config=config)
    outcome = {
        "policy": config.policy,
        "weak_policy": config.weak_policy or config.policy,
        "rows": len(frame),
        "gold_rows": int((~weak).sum()),
        "weak_rows": int(weak.sum()),
        "weak_rejected": len(rejected),
        "label_issues": int(issue.sum()),
        "relabelled": int(relabel.sum()),
        "removed": int(remove.sum()),
        "review_queue": len(queue),
        "train_clean_rows": len(clean),
    }
    logger.info("cleaning (%s): %s", config.policy, outcome)
    return clean, quarantine.reset_index(drop=True), queue, outcome
