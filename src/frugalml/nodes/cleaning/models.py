"""The fold-model registry (``clean.models``): the models whose out-of-fold probabilities cleaning averages.

Built in: ``ngram_bag`` (frugalml's own training node), ``naive_bayes`` (hashed n-gram counts) and
``tfidf_logreg`` (the scikit-learn reference). :func:`register_probability_model` adds one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from frugalml.models.hashing import HashingConfig, HashingFeaturizer
from frugalml.nodes.cleaning.inputs import class_indices, text_lists
from frugalml.params import CleanParams, DataSchema, TrainParams, parse_params
from frugalml.registry import Registry

NAIVE_BAYES_BUCKETS = 2**18  # counts, not embeddings: a larger hash space costs nothing here


@dataclass(frozen=True)
class FoldContext:
    """What every probability model gets besides the rows: the train and clean parameters, the schema, the seed."""

    train: dict[str, Any]
    data: dict[str, Any]
    seed: int
    clean: dict[str, Any] = field(default_factory=dict)  # params:clean (model options such as the NB temperature)


FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (fit rows, held-out rows) -> (held, C) probs
ProbabilityModel = Callable[[pd.DataFrame, pd.DataFrame, FoldContext], FitPredict]
FOLD_MODELS: Registry[ProbabilityModel] = Registry("model", key="clean.models")


def register_probability_model(name: str, *, replace: bool = False) -> Callable[[ProbabilityModel], ProbabilityModel]:
    """Register a model for out-of-fold probabilities under ``name`` (chosen in ``clean.models``).

    A model is ``factory(frame, dev, context) -> fit_predict``; ``fit_predict(fit_rows, held_rows)`` fits on
    ``frame.iloc[fit_rows]`` (labels in ``data.label_column``; ``dev`` may serve early stopping) and returns
    (len(held_rows), C) probabilities in ``data.labels`` order. The factory may precompute label-free
    features once for all folds.

    Args:
        name: The registry key.
        replace: Allow replacing a model already registered under ``name``.

    Returns:
        A decorator that registers the factory and returns it unchanged.

    Raises:
        ParameterError: When the decorator is applied and ``name`` is taken (without ``replace``) or empty.
    """
    return FOLD_MODELS.register(name, replace=replace)


def create_probability_model(name: str) -> ProbabilityModel:
    """The registered model factory called ``name``.

    Args:
        name: A key of the registry.

    Returns:
        The factory.

    Raises:
        ParameterError: For an unknown name (the message lists the registered ones).
    """
    return FOLD_MODELS.get(name)


def _full_columns(probabilities: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Spread a scikit-learn ``predict_proba`` over all C classes (a class absent from a fold gets 0)."""
    out = np.zeros((len(probabilities), n_classes))
    out[:, classes] = probabilities
    return out


@register_probability_model("ngram_bag")
def _ngram_bag(frame: pd.DataFrame, dev: pd.DataFrame, context: FoldContext) -> FitPredict:
    """frugalml's own model through its training node (params:train, early stopping on ``dev``)."""
    from frugalml.nodes.train import train_text_classifier

    # the n-gram bag whatever train.model.kind says (an encoder kind would embed every fold's rows again)
    recipe = {**context.train, "model": {**(context.train.get("model") or {}), "kind": "ngram_bag"}}

    def fit_predict(fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        classifier, _, _ = train_text_classifier(frame.iloc[fit], dev, recipe, context.data, context.seed)
        return classifier.predict_proba(frame.iloc[held]).astype(np.float64)

    return fit_predict


@register_probability_model("naive_bayes")
def _naive_bayes(frame: pd.DataFrame, dev: pd.DataFrame, context: FoldContext) -> FitPredict:
    """Multinomial naive Bayes (alpha 1) on hashed n-gram counts (the n-gram ranges of params:train.features).

    Counts carry no label information, so they are computed once for every row. Naive Bayes counts every
    overlapping word and character n-gram as independent evidence, so its posteriors are almost always 0 or
    1 and it outvotes the other models on every row it disagrees with. Its log-posterior is divided by
    ``clean.naive_bayes_temperature`` before the softmax (1, the default: plain naive Bayes; 30: a softer
    vote). The argmax does not change.
    """
    from sklearn.naive_bayes import MultinomialNB

    schema = parse_params(DataSchema, context.data, name="data")
    features = parse_params(TrainParams, context.train, name="train").features
    hashing = HashingConfig(buckets=NAIVE_BAYES_BUCKETS, word_ngrams=features.word_ngrams,
                            char_ngrams=features.char_ngrams, char_max_chars=features.char_max_chars,
                            lowercase=features.lowercase)  # fmt: skip
    counts = HashingFeaturizer(hashing).transform(text_lists(frame, schema))  # (N, B)
    y = class_indices(frame[schema.label_column], schema)
    temperature = parse_params(CleanParams, context.clean, name="clean").naive_bayes_temperature

    def fit_predict(fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        model = MultinomialNB(alpha=1.0).fit(counts[fit], y[fit])
        logits = model.predict_log_proba(counts[held]) / temperature  # (held, classes in the fold)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return _full_columns(probabilities, model.classes_, len(schema.labels))

    return fit_predict


@register_probability_model("tfidf_logreg")
def _tfidf_logreg(frame: pd.DataFrame, dev: pd.DataFrame, context: FoldContext) -> FitPredict:
    """The benchmarks' reference, :class:`~frugalml.models.reference.TfidfLogisticRegression`, fitted per fold."""
    from frugalml.models.reference import TfidfLogisticRegression

    schema = parse_params(DataSchema, context.data, name="data")
    text = np.array(["\n".join(parts) for parts in zip(*text_lists(frame, schema), strict=True)], dtype=object)
    y = class_indices(frame[schema.label_column], schema)

    def fit_predict(fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        model = TfidfLogisticRegression().fit(text[fit], y[fit])
        probabilities = model.predict_proba(text[held])
        return _full_columns(probabilities, model.classes_, len(schema.labels))

    return fit_predict
