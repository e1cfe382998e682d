"""Out-of-fold probabilities: stratified, seeded K-fold over the models of ``clean.models``, in R rounds.

Round r refits the folds without the rows round r-1 flagged (``clean.exclude_by``, by default
``clean.filter_by``) and re-scores every row (clean -> retrain -> clean).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from frugalml.nodes.cleaning.inputs import check_pred_probs
from frugalml.nodes.cleaning.issues import label_issue_mask
from frugalml.nodes.cleaning.models import FitPredict, FoldContext, create_probability_model
from frugalml.nodes.split import id_column_of
from frugalml.params import CleanParams, DataSchema, TrainParams, deep_merge, parse_params

logger = logging.getLogger(__name__)

Split = tuple[np.ndarray, np.ndarray]  # (fit rows, held-out rows) of one fold
History = list[tuple[int, float]]  # (round, value) per round


def fold_train_params(train: TrainParams, config: CleanParams) -> dict[str, Any]:
    """The ngram_bag fold models' recipe: ``clean.fold_train`` deep-merged over ``params:train``, DP off.

    The fold models are internal (their probabilities never leave the project), so they train without DP; the
    released model's DP training is what spends the privacy budget (docs/privacy.md). The released recipe is
    tuned for DP, so the folds keep their own non-private one, and score the main label only (no extra tasks).

    Args:
        train: ``params:train``.
        config: ``params:clean``.

    Returns:
        A validated ``train`` block as a dict.

    Raises:
        ParameterError: ``clean.fold_train`` holds an unknown key or a bad value (named).
    """
    merged = deep_merge(train.model_dump(), config.fold_train)
    merged["progress"] = False
    merged["privacy"] = {**merged["privacy"], "enabled": False}
    merged["multitask"] = {"tasks": []}  # the folds score the main label only
    return parse_params(TrainParams, merged, name="clean.fold_train").model_dump()


def fold_predictors(
    frame: pd.DataFrame,
    dev: pd.DataFrame,
    config: CleanParams,
    train: TrainParams,
    *,
    schema: DataSchema,
    seed: int,
) -> dict[str, FitPredict]:
    """One ``fit_predict`` per model of ``clean.models``, every name looked up before any model is built.

    Args:
        frame: Labelled rows.
        dev: Rows for early stopping.
        config: ``params:clean``.
        train: ``params:train`` (overlaid by ``clean.fold_train``, DP off: :func:`fold_train_params`).
        schema: The dataset schema.
        seed: ``params:seed``.

    Returns:
        Model name -> ``fit_predict``, in ``clean.models`` order.

    Raises:
        ParameterError: An unknown model name or a bad ``clean.fold_train``.
    """
    factories = {name: create_probability_model(name) for name in config.models}
    fold_train = fold_train_params(train, config)
    context = FoldContext(train=fold_train, data=schema.model_dump(), seed=seed, clean=config.model_dump())
    return {name: factory(frame, dev, context) for name, factory in factories.items()}


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> tuple[list[Split], np.ndarray]:
    """Stratified, shuffled, seeded K-fold.

    Args:
        labels: (N,) class indices.
        folds: K.
        seed: The shuffle seed.

    Returns:
        The K (fit rows, held-out rows) splits, and (N,) the fold of each row.
    """
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(labels)), labels))
    fold = np.empty(len(labels), dtype=np.int64)
    for k, (_, held) in enumerate(splits):
        fold[held] = k
    return splits, fold


def _fit_rows(fit: np.ndarray, excluded: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A fold's fit rows without the excluded ones, unless that would leave a class without rows."""
    kept = fit[~excluded[fit]]
    if set(np.unique(labels[kept])) != set(np.unique(labels[fit])):
        logger.warning("a fold would lose a whole class by exclusion; fitting it on all its rows")
        return fit
    return kept


def _one_round(
    frame: pd.DataFrame,
    labels: np.ndarray,
    predictors: dict[str, FitPredict],
    splits: list[Split],
    *,
    excluded: np.ndarray,
    schema: DataSchema,
    round_: int,
    bar: tqdm,
) -> np.ndarray:
    """Every fold's models fitted without ``excluded`` rows: (N, C) averaged held-out probabilities."""
    id_column = id_column_of(schema)
    pred_probs = np.zeros((len(labels), len(schema.labels)))  # (N, C)
    for k, (fit, held) in enumerate(splits):
        rows = _fit_rows(fit, excluded, labels)
        for name, fit_predict in predictors.items():
            probabilities = fit_predict(rows, held)  # (len(held), C)
            check_pred_probs(probabilities, len(schema.labels), ids=frame[id_column].iloc[held],
                             what=f"model {name!r} (fold {k}, round {round_})")  # fmt: skip
            pred_probs[held] += probabilities / len(predictors)
            bar.update()
            bar.set_postfix(round=round_, fold=k)
    return pred_probs


def out_of_fold_rounds(
    frame: pd.DataFrame,
    labels: np.ndarray,
    predictors: dict[str, FitPredict],
    splits: list[Split],
    *,
    config: CleanParams,
    schema: DataSchema,
) -> tuple[np.ndarray, History, History]:
    """``clean.rounds`` rounds of out-of-fold fits; each round leaves out the rows the previous one flagged.

    Args:
        frame: Labelled rows.
        labels: (N,) their class indices.
        predictors: :func:`fold_predictors`.
        splits: :func:`stratified_folds`.
        config: ``params:clean`` (rounds, ``exclude_by``/``filter_by``, progress).
        schema: The dataset schema.

    Returns:
        The last round's (N, C) probabilities, and per round the agreement of their argmax with the given
        labels and the number of rows left out of the fits.

    Raises:
        ProbabilityError: A model returned something that is not a distribution.
    """
    agreement_history: History = []
    excluded_history: History = []
    excluded = np.zeros(len(labels), dtype=bool)
    bar = tqdm(total=config.rounds * config.folds * len(predictors), desc="clean: out-of-fold fits",
               disable=not config.progress)  # fmt: skip
    for round_ in range(1, config.rounds + 1):
        pred_probs = _one_round(frame, labels, predictors, splits, excluded=excluded, schema=schema, round_=round_,
                                bar=bar)  # fmt: skip
        agreement = float((pred_probs.argmax(axis=1) == labels).mean())
        agreement_history.append((round_, agreement))
        excluded_history.append((round_, float(excluded.sum())))
        logger.info("round %d: out-of-fold agreement with the given labels %.4f", round_, agreement)
        if round_ < config.rounds:
            excluded = label_issue_mask(labels, pred_probs, filter_by=config.exclude_by or config.filter_by)
    bar.close()
    return pred_probs, agreement_history, excluded_history
