"""Label cleaning: out-of-fold probabilities, label and data issues (cleanlab), and a policy that applies them.

Notation: N training rows (hand labels plus any weak labels), C classes (``params:data.labels``, in that
order), K folds, R rounds. ``labels`` is (N,) class indices in ``0..C-1`` (positions in ``data.labels``);
``pred_probs`` is (N, C): row i's class probabilities from models that never saw row i (out-of-fold).

The stages, in the order the ``clean`` pipeline runs them:

1. :func:`merge_label_sources`: ``train_labelled`` + ``weak_labels`` -> one frame carrying the shared label
   columns of :mod:`frugalml.labels` (``label_source``, ``label_confidence``, ``label_prob_<value>``).
2. :func:`cross_validate_pred_probs`: stratified, seeded K-fold; each fold fits every model of
   ``clean.models`` (a registry: ``ngram_bag`` is frugalml's own training node) and their probabilities are
   averaged. With R > 1 rounds, round r refits the folds without the rows round r-1 flagged
   (``clean.exclude_by``, by default the same method as ``clean.filter_by``) and re-scores
   every row (clean -> retrain -> clean), so the final probabilities come from models trained on cleaner
   labels.
3. :func:`find_label_issues`: :func:`cleanlab.filter.find_label_issues` on those probabilities, label quality
   scores from :func:`cleanlab.rank.get_label_quality_scores`, and :func:`find_data_issues` (near duplicates,
   outliers, non-IID order) with cleanlab's Datalab issue managers on a cosine kNN graph of hashed tf-idf.
4. :func:`apply_cleaning_policy`: ``none`` | ``review`` | ``remove`` | ``relabel`` -> ``train_clean``, the
   quarantine (removed rows with a ``reason``), the review queue.
5. :func:`report_label_issues`: HTML table + counts by class, a JSON summary, metrics.

Modules, one concern each: :mod:`.inputs` (column names, class indices, probability and fold checks),
:mod:`.sources` (merging label sources), :mod:`.models` (the ``clean.models`` registry), :mod:`.folds`
(out-of-fold probabilities), :mod:`.issues` (label and data issues), :mod:`.policies` (what happens to
flagged rows), :mod:`.report` (review queue, HTML, summary, metrics) and :mod:`.nodes` (the Kedro node
functions). Every public name is importable from this package.
"""

from frugalml.nodes.cleaning.folds import fold_train_params
from frugalml.nodes.cleaning.inputs import (
    FOLD_COLUMN,
    PRED_PREFIX,
    PROBABILITY_TOLERANCE,
    REASON_COLUMN,
    align_pred_probs,
    check_folds,
    check_pred_probs,
    class_indices,
    pred_prob_columns,
)
from frugalml.nodes.cleaning.issues import cosine_knn_graph, find_data_issues, hashed_tfidf, label_issue_mask
from frugalml.nodes.cleaning.models import (
    FOLD_MODELS,
    NAIVE_BAYES_BUCKETS,
    FitPredict,
    FoldContext,
    ProbabilityModel,
    create_probability_model,
    register_probability_model,
)
from frugalml.nodes.cleaning.nodes import (
    apply_cleaning_policy,
    cross_validate_pred_probs,
    find_label_issues,
    merge_label_sources,
    report_label_issues,
)
from frugalml.nodes.cleaning.report import issue_counts_by_class, render_label_issues_html

__all__ = [
    "FOLD_COLUMN",
    "FOLD_MODELS",
    "NAIVE_BAYES_BUCKETS",
    "PRED_PREFIX",
    "PROBABILITY_TOLERANCE",
    "REASON_COLUMN",
    "FitPredict",
    "FoldContext",
    "ProbabilityModel",
    "align_pred_probs",
    "apply_cleaning_policy",
    "check_folds",
    "check_pred_probs",
    "class_indices",
    "cosine_knn_graph",
    "create_probability_model",
    "cross_validate_pred_probs",
    "find_data_issues",
    "find_label_issues",
    "fold_train_params",
    "hashed_tfidf",
    "issue_counts_by_class",
    "label_issue_mask",
    "merge_label_sources",
    "pred_prob_columns",
    "register_probability_model",
    "render_label_issues_html",
    "report_label_issues",
]
