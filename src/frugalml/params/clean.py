"""``params:clean``."""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field

from frugalml.params.core import Strict, register_params


class DataIssueParams(Strict):
    """Near duplicates, outliers and non-IID ordering (cleanlab's Datalab issue managers on hashed tf-idf)."""

    enabled: bool = True
    k: int = Field(default=10, ge=1)  # neighbours in the cosine kNN graph
    near_duplicate_threshold: float = Field(default=0.13, ge=0, allow_inf_nan=False)  # x median NN distance
    outlier_threshold: float | None = Field(default=None, gt=0, le=1)  # null: cleanlab's default (0.37)
    duplicates: Literal["keep", "remove"] = "keep"  # remove: all but the first of each set (remove/relabel)


# the methods of cleanlab.filter.find_label_issues
FilterMethod = Literal[
    "prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
    "low_normalized_margin", "low_self_confidence",
]  # fmt: skip


FOLD_TRAIN_DEFAULT: dict[str, Any] = {
    "features": {"idf": True},
    "model": {"embedding_dim": 16},
    "epochs": 10,
    "batch_size": 128,
    "lr": 0.02,
}


@register_params("clean")
class CleanParams(Strict):
    """Label cleaning: out-of-fold probabilities, cleanlab issue finding, and the policy that applies it."""

    policy: Literal["none", "review", "remove", "relabel"] = "review"
    weak_policy: Literal["review", "remove", "relabel"] | None = "remove"  # null: same as policy
    folds: int = Field(default=5, ge=2)
    rounds: int = Field(default=2, ge=1)
    models: list[str] = Field(default_factory=lambda: ["ngram_bag", "naive_bayes"], min_length=1)
    filter_by: FilterMethod = "prune_by_noise_rate"
    exclude_by: FilterMethod | None = None  # picks the rows left out of the next round's fits; null: filter_by
    naive_bayes_temperature: float = Field(default=1.0, gt=0, allow_inf_nan=False)  # NB log-posterior divisor
    # ngram_bag fold models: overrides deep-merged over params:train (privacy is always off for them). The
    # released model's recipe is tuned for DP; the folds are internal, so they keep a non-private one (width 16, idf).
    fold_train: dict[str, Any] = Field(default_factory=lambda: copy.deepcopy(FOLD_TRAIN_DEFAULT))
    rank_by: Literal["self_confidence", "normalized_margin", "confidence_weighted_entropy"] = "self_confidence"
    relabel_min_confidence: float = Field(default=0.9, gt=0, le=1, allow_inf_nan=False)
    review_text_chars: int = Field(default=2000, ge=0)
    report_top: int = Field(default=25, ge=0)
    progress: bool = True
    data_issues: DataIssueParams = Field(default_factory=DataIssueParams)
