"""Label issues (cleanlab confident learning) and data issues (near duplicates, outliers, non-IID order)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from frugalml.labels import CONFIDENCE_COLUMN, GOLD, SOURCE_COLUMN
from frugalml.models.hashing import HashingConfig, HashingFeaturizer
from frugalml.models.ngram_bag import fit_idf, tfidf_weights
from frugalml.nodes.cleaning.inputs import (
    FOLD_COLUMN,
    align_pred_probs,
    check_folds,
    check_pred_probs,
    pred_prob_columns,
    text_lists,
)
from frugalml.nodes.split import id_column_of
from frugalml.params import DataIssueParams, DataSchema, FeatureParams

# --- label issues ---------------------------------------------------------------------------------------------


def label_issue_mask(labels: np.ndarray, pred_probs: np.ndarray, *, filter_by: str) -> np.ndarray:
    """cleanlab's confident-learning filter.

    Args:
        labels: (N,) given class indices.
        pred_probs: (N, C) out-of-fold probabilities.
        filter_by: A ``cleanlab.filter.find_label_issues`` method.

    Returns:
        (N,) bool, True where the given label is likely wrong.
    """
    from cleanlab.filter import find_label_issues as cleanlab_find_label_issues

    return np.asarray(cleanlab_find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1), dtype=bool)


def _base_table(frame: pd.DataFrame, labels: np.ndarray, schema: DataSchema) -> pd.DataFrame:
    """Id, ``label_source``, ``label_confidence`` and ``given_label`` of every row."""
    source = frame[SOURCE_COLUMN].to_numpy() if SOURCE_COLUMN in frame.columns else GOLD
    confidence = frame[CONFIDENCE_COLUMN].to_numpy() if CONFIDENCE_COLUMN in frame.columns else 1.0
    return pd.DataFrame({id_column_of(schema): frame[id_column_of(schema)].to_numpy(), SOURCE_COLUMN: source,
                         CONFIDENCE_COLUMN: confidence,
                         "given_label": np.asarray(schema.labels)[labels]})  # fmt: skip


def skipped_label_quality(frame: pd.DataFrame, labels: np.ndarray, schema: DataSchema) -> pd.DataFrame:
    """``label_quality`` when ``clean.policy`` is ``none``: the given labels, no scores, no issue.

    Args:
        frame: Labelled rows.
        labels: (N,) their class indices.
        schema: The dataset schema.

    Returns:
        The columns of :func:`score_label_issues`, with NaN scores and fold -1.
    """
    base = _base_table(frame, labels, schema)
    return base.assign(suggested_label=base["given_label"], suggested_confidence=np.nan,
                       given_label_probability=np.nan, label_quality=np.nan, is_label_issue=False,
                       **{FOLD_COLUMN: -1}, **{c: np.nan for c in pred_prob_columns(schema.labels)})  # fmt: skip


def score_label_issues(
    frame: pd.DataFrame,
    pred_probs: pd.DataFrame,
    labels: np.ndarray,
    schema: DataSchema,
    *,
    filter_by: str,
    rank_by: str,
) -> pd.DataFrame:
    """The label columns of ``label_quality`` (see :func:`~frugalml.nodes.cleaning.find_label_issues`).

    Args:
        frame: Labelled rows.
        pred_probs: Their out-of-fold probabilities, matched by id.
        labels: (N,) their class indices.
        schema: The dataset schema.
        filter_by: ``clean.filter_by``.
        rank_by: ``clean.rank_by``.

    Returns:
        One row per row of ``frame``, in its order.

    Raises:
        ProbabilityError: Probabilities that are not distributions or whose ids do not match the rows.
    """
    from cleanlab.rank import get_label_quality_scores

    id_column, columns = id_column_of(schema), pred_prob_columns(schema.labels)
    n = len(frame)
    base = _base_table(frame, labels, schema)
    probs = align_pred_probs(frame, pred_probs, schema)
    check_pred_probs(probs, len(schema.labels), ids=frame[id_column], what="pred_probs")
    check_folds(labels, 2, schema)
    issues = label_issue_mask(labels, probs, filter_by=filter_by)
    quality = get_label_quality_scores(labels, probs, method=rank_by)
    others = probs.copy()
    others[np.arange(n), labels] = -1.0
    suggested = np.where(issues, others.argmax(axis=1), probs.argmax(axis=1))
    folds = pred_probs.set_index(id_column).loc[frame[id_column], FOLD_COLUMN].to_numpy()
    return base.assign(
        suggested_label=np.asarray(schema.labels)[suggested],
        suggested_confidence=probs[np.arange(n), suggested],
        given_label_probability=probs[np.arange(n), labels],
        label_quality=quality,
        is_label_issue=issues,
        **{FOLD_COLUMN: folds},
        **{c: probs[:, k] for k, c in enumerate(columns)},
    )


# --- data issues (near duplicates, outliers, non-IID) --------------------------------------------------------


class _IssueContext:
    """The little of a ``cleanlab.Datalab`` its issue managers read (labels, an empty statistics store).

    ``cleanlab.Datalab`` itself needs Hugging Face ``datasets`` (``cleanlab[datalab]``), which frugalml does
    not install; its issue managers run the same checks on a kNN graph we build from sparse features.
    """

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def get_info(self, name: str) -> dict[str, Any]:
        return {}


def hashed_tfidf(frame: pd.DataFrame, schema: DataSchema, features: FeatureParams) -> sp.csr_matrix:
    """L2-normalised tf-idf rows of hashed n-grams (the featuriser of params:train; idf from ``frame``).

    Args:
        frame: Rows with the text columns.
        schema: The dataset schema.
        features: ``params:train.features``.

    Returns:
        (N, B) CSR.
    """
    hashing = HashingConfig(buckets=features.buckets, word_ngrams=features.word_ngrams,
                            char_ngrams=features.char_ngrams, char_max_chars=features.char_max_chars,
                            lowercase=features.lowercase)  # fmt: skip
    counts = HashingFeaturizer(hashing).transform(text_lists(frame, schema))
    return tfidf_weights(counts, fit_idf(counts), sublinear=True)


def cosine_knn_graph(features: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The k-nearest-neighbour graph (cosine distance, self excluded), rows sorted by distance.

    Args:
        features: (N, B) rows.
        k: Neighbours per row (< N).

    Returns:
        (N, N) CSR with k distances per row, the layout cleanlab's issue managers read.
    """
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(features)
    distances, neighbours = index.kneighbors()  # (N, k) each, ascending
    distances = np.clip(distances, 0.0, None)
    n = features.shape[0]
    return sp.csr_matrix((distances.ravel(), neighbours.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))


def _near_duplicate_leads(
    near_duplicate_sets: Any, is_near_duplicate: np.ndarray, ids: np.ndarray
) -> tuple[np.ndarray, int]:
    """Near-duplicate sets as connected components of the "within the radius" relation; the first row leads.

    Returns:
        (N,) the lead's id for near duplicates (None elsewhere), and the number of sets.
    """
    n = len(ids)
    rows = [i for i, members in enumerate(near_duplicate_sets) for _ in members]
    cols = [int(j) for members in near_duplicate_sets for j in members]
    adjacency = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = sp.csgraph.connected_components(adjacency, directed=False)
    first = pd.Series(np.arange(n)).groupby(component).transform("min").to_numpy()
    leads = np.asarray(np.where(is_near_duplicate, ids[first], None))
    return leads, int(pd.Series(component[is_near_duplicate]).nunique())


def find_data_issues(
    frame: pd.DataFrame,
    labels: np.ndarray,
    *,
    schema: DataSchema,
    features: FeatureParams,
    config: DataIssueParams,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Near duplicates, outliers and non-IID order, from cleanlab's Datalab issue managers.

    Args:
        frame: Rows with the text columns.
        labels: (N,) class indices.
        schema: The dataset schema.
        features: ``params:train.features`` (the hashed n-grams).
        config: ``params:clean.data_issues``.
        seed: Seeds the non-IID permutation test.

    Returns:
        Per row: ``is_near_duplicate``, ``near_duplicate_score``, ``near_duplicate_of`` (the id of the first
        row of its set), ``is_exact_duplicate`` (same features, distance 0), ``is_outlier``,
        ``outlier_score``; and a summary (counts, the non-IID p-value).
    """
    from cleanlab.datalab.internal.issue_manager.duplicate import NearDuplicateIssueManager
    from cleanlab.datalab.internal.issue_manager.noniid import NonIIDIssueManager
    from cleanlab.datalab.internal.issue_manager.outlier import OutlierIssueManager

    n, id_column = len(frame), id_column_of(schema)
    table = pd.DataFrame({"is_near_duplicate": np.zeros(n, bool), "near_duplicate_score": np.ones(n),
                          "near_duplicate_of": pd.Series([None] * n, dtype=object),
                          "is_exact_duplicate": np.zeros(n, bool), "is_outlier": np.zeros(n, bool),
                          "outlier_score": np.ones(n)})  # fmt: skip
    k = min(config.k, n - 1)
    if k < 2:
        return table, {"checked": False, "note": f"too few rows ({n}) for a kNN graph"}
    graph = cosine_knn_graph(hashed_tfidf(frame, schema, features), k)
    context = _IssueContext(labels)
    near = NearDuplicateIssueManager(context, metric="cosine", threshold=config.near_duplicate_threshold, k=k)
    near.find_issues(knn_graph=graph)
    outlier = OutlierIssueManager(context, k=k, metric="cosine", threshold=config.outlier_threshold)
    outlier.find_issues(knn_graph=graph)
    noniid = NonIIDIssueManager(context, metric="cosine", k=k, seed=seed)
    noniid.find_issues(knn_graph=graph)

    table["is_near_duplicate"] = near.issues["is_near_duplicate_issue"].to_numpy()
    table["near_duplicate_score"] = near.issues["near_duplicate_score"].to_numpy()
    table["is_exact_duplicate"] = graph.data.reshape(n, k)[:, 0] <= 1e-6  # float32 features: not exactly 0
    table["is_outlier"] = outlier.issues["is_outlier_issue"].to_numpy()
    table["outlier_score"] = outlier.issues["outlier_score"].to_numpy()
    table["near_duplicate_of"], sets = _near_duplicate_leads(
        near.near_duplicate_sets, table["is_near_duplicate"].to_numpy(), frame[id_column].to_numpy()
    )
    summary = {
        "checked": True,
        "k": k,
        "near_duplicates": int(table["is_near_duplicate"].sum()),
        "near_duplicate_sets": sets,
        "exact_duplicates": int(table["is_exact_duplicate"].sum()),
        "outliers": int(table["is_outlier"].sum()),
        "non_iid_p_value": float(noniid.info["p-value"]),
    }
    return table, summary
