"""Membership-inference audits of a trained model: the loss-threshold attack and LiRA-lite."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from frugalml.errors import EmptyDatasetError
from frugalml.models.zoo import Classifier as TextClassifier
from frugalml.nodes.train import encode_labels
from frugalml.params import DataSchema, parse_params


def membership_inference(
    model: TextClassifier, members: pd.DataFrame, non_members: pd.DataFrame, data: dict[str, Any], *, seed: int = 0
) -> dict[str, float]:
    """Loss-threshold membership-inference attack (Yeom et al.): lower loss suggests a training member.

    Members and non-members are subsampled to the same size, so an AUC of 0.5 is chance.

    Args:
        model: The trained classifier.
        members: Rows it was trained on.
        non_members: Rows from the same distribution it never saw (e.g. the gold test set).
        data: ``params:data``.
        seed: Subsampling seed.

    Returns:
        ``auc`` and ``tpr_at_1pct_fpr`` of the attack, and ``rows`` per side.

    Raises:
        EmptyDatasetError: When either side is empty.
    """
    schema = parse_params(DataSchema, data, name="data")
    size = min(len(members), len(non_members))
    if size == 0:
        raise EmptyDatasetError("membership inference needs members and non-members")
    members = members.sample(n=size, random_state=seed)
    non_members = non_members.sample(n=size, random_state=seed)
    scores, truth = [], []
    for frame, is_member in ((members, 1), (non_members, 0)):
        probabilities = model.predict_proba(frame)
        y = encode_labels(frame[schema.label_column], schema)
        scores.append(np.log(np.clip(probabilities[np.arange(len(y)), y], 1e-12, 1.0)))  # = -loss
        truth.append(np.full(len(y), is_member))
    score, member = np.concatenate(scores), np.concatenate(truth)
    fpr, tpr, _ = skm.roc_curve(member, score)
    return {
        "auc": float(skm.roc_auc_score(member, score)),
        "tpr_at_1pct_fpr": float(np.interp(0.01, fpr, tpr)),
        "rows": int(size),
    }


def _true_class_logit(model: TextClassifier, frame: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """LiRA's statistic: the logit of the probability the model gives the true class, log(p / (1 - p))."""
    p = np.clip(model.predict_proba(frame)[np.arange(len(y)), y], 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def lira_membership_inference(
    target: TextClassifier,
    members: pd.DataFrame,
    non_members: pd.DataFrame,
    train_shadow: Any,
    data: dict[str, Any],
    *,
    shadows: int = 8,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """LiRA-lite (Carlini et al., 2022, online variant with a global variance): shadow models trained on
    random halves of the audit population tell, for each example, how its statistic is distributed when it is
    in the training set and when it is out; the target model's statistic is scored by the likelihood ratio.

    The audit population is ``members`` (rows the target was trained on) plus as many ``non_members``; each
    shadow model is trained with ``train_shadow`` (the target's own recipe) on a random half of it, so every
    example is *in* for about half of the shadows and *out* for the others.

    Args:
        target: The model under audit.
        members: Rows it was trained on.
        non_members: Rows of the same distribution it never saw.
        train_shadow: ``frame -> TextClassifier``, the target's training recipe (DP included).
        data: ``params:data``.
        shadows: Number of shadow models (even, >= 2).
        seed: Seeds the population sample and the halves.
        progress: Show a progress bar.

    Returns:
        ``auc`` and ``tpr_at_1pct_fpr`` of the attack, ``rows`` per side and ``shadows``.

    Raises:
        EmptyDatasetError: When either side is empty.
        ValueError: When ``shadows`` is odd or below 2.
    """
    from tqdm.auto import tqdm

    if shadows < 2 or shadows % 2:
        raise ValueError(f"LiRA needs an even number of shadow models >= 2, got {shadows}")
    schema = parse_params(DataSchema, data, name="data")
    size = min(len(members), len(non_members))
    if size == 0:
        raise EmptyDatasetError("membership inference needs members and non-members")
    rng = np.random.default_rng(seed)
    population = pd.concat([members.sample(n=size, random_state=seed), non_members.sample(n=size, random_state=seed)],
                           ignore_index=True)  # fmt: skip
    is_member = np.r_[np.ones(size, dtype=int), np.zeros(size, dtype=int)]
    y = encode_labels(population[schema.label_column], schema)
    statistics = np.zeros((shadows, len(population)))
    inside = np.zeros((shadows, len(population)), dtype=bool)
    for k in tqdm(range(shadows), desc="LiRA shadows", disable=not progress):
        if k % 2 == 0:  # paired halves: every example is in exactly half of the shadows
            half = rng.permutation(len(population)) < len(population) // 2
        else:
            half = ~inside[k - 1]
        inside[k] = half
        statistics[k] = _true_class_logit(train_shadow(population[half]), population, y)
    observed = _true_class_logit(target, population, y)
    in_mean = np.nanmean(np.where(inside, statistics, np.nan), axis=0)
    out_mean = np.nanmean(np.where(~inside, statistics, np.nan), axis=0)
    in_std = float(np.nanstd(statistics[inside] - in_mean[np.nonzero(inside)[1]])) + 1e-6
    out_std = float(np.nanstd(statistics[~inside] - out_mean[np.nonzero(~inside)[1]])) + 1e-6
    score = (-0.5 * ((observed - in_mean) / in_std) ** 2 - np.log(in_std)) - (
        -0.5 * ((observed - out_mean) / out_std) ** 2 - np.log(out_std)
    )
    fpr, tpr, _ = skm.roc_curve(is_member, score)
    return {
        "auc": float(skm.roc_auc_score(is_member, score)),
        "tpr_at_1pct_fpr": float(np.interp(0.01, fpr, tpr)),
        "rows": int(size),
        "shadows": int(shadows),
    }
