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
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from frugalml.errors import EmptyDatasetError, ParameterError, ProbabilityError, SchemaError
from frugalml.labels import CONFIDENCE_COLUMN, GOLD, RELABELLED, SOURCE_COLUMN, WEAK, prob_columns
from frugalml.models.hashing import HashingConfig, HashingFeaturizer
from frugalml.models.ngram_bag import fit_idf, tfidf_weights
from frugalml.nodes.split import id_column_of
from frugalml.params import (
    CleanParams,
    DataIssueParams,
    DataSchema,
    FeatureParams,
    TrainParams,
    deep_merge,
    parse_params,
)

logger = logging.getLogger(__name__)

PRED_PREFIX = "pred_prob_"
FOLD_COLUMN = "fold"
REASON_COLUMN = "reason"
NAIVE_BAYES_BUCKETS = 2**18  # counts, not embeddings: a larger hash space costs nothing here
PROBABILITY_TOLERANCE = 1e-3  # |row sum - 1| allowed in pred_probs


def pred_prob_columns(labels: list[int]) -> list[str]:
    """Out-of-fold probability column names, in the order of ``labels``.

    Args:
        labels: ``params:data.labels``.

    Returns:
        ``pred_prob_<value>`` per label.
    """
    return [f"{PRED_PREFIX}{value}" for value in labels]


# --- inputs --------------------------------------------------------------------------------------------------


def class_indices(labels: pd.Series, schema: DataSchema, *, what: str = "training data") -> np.ndarray:
    """Label values -> class indices, refusing missing or undeclared labels.

    Args:
        labels: A label column.
        schema: The dataset schema.
        what: The dataset's name, for messages.

    Returns:
        (N,) int64 indices into ``schema.labels``.

    Raises:
        EmptyDatasetError: When labels are missing.
        SchemaError: When labels fall outside ``schema.labels``.
    """
    if labels.isna().any():
        raise EmptyDatasetError(f"{int(labels.isna().sum())} rows of the {what} have no label")
    index = {value: position for position, value in enumerate(schema.labels)}

    def position(value: Any) -> int | None:
        integral = isinstance(value, int | np.integer) or (
            isinstance(value, float | np.floating) and float(value).is_integer()
        )
        return index.get(int(value)) if integral and not isinstance(value, bool) else None

    mapped = labels.map(position)
    bad = labels[mapped.isna()]
    if len(bad):
        raise SchemaError(
            f"column '{labels.name}' of the {what} holds labels outside the declared set {schema.labels}: "
            f"{bad.astype(str).value_counts().head(5).to_dict()}"
        )
    return mapped.to_numpy(dtype=np.int64)


def _require_columns(frame: pd.DataFrame, schema: DataSchema, what: str) -> None:
    required = [*schema.text_columns, schema.label_column, id_column_of(schema)]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise SchemaError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)[:30]}")


def _with_label_columns(frame: pd.DataFrame, schema: DataSchema, *, source: str, what: str) -> pd.DataFrame:
    """A copy with ``label_source``, ``label_confidence`` and ``label_prob_<value>`` filled where absent."""
    out = frame.copy()
    y = class_indices(out[schema.label_column], schema, what=what)
    columns = prob_columns(schema.labels)
    present = [c for c in columns if c in out.columns]
    if present and len(present) != len(columns):
        raise SchemaError(f"{what} has soft-label column(s) {present} but not all of {columns}")
    one_hot = np.eye(len(schema.labels))[y]
    soft = np.array(out[columns].apply(pd.to_numeric, errors="coerce"), dtype=np.float64) if present else one_hot
    unset = np.isnan(soft).all(axis=1)
    soft[unset] = one_hot[unset]
    check_pred_probs(soft, len(schema.labels), ids=out[id_column_of(schema)], what=f"{what} {columns}")
    out[columns] = soft
    if SOURCE_COLUMN not in out.columns:
        out[SOURCE_COLUMN] = source
    out[SOURCE_COLUMN] = out[SOURCE_COLUMN].fillna(source).astype(str)
    confidence = soft[np.arange(len(out)), y]
    if CONFIDENCE_COLUMN in out.columns:
        given = pd.to_numeric(out[CONFIDENCE_COLUMN], errors="coerce").to_numpy(dtype=np.float64)
        confidence = np.where(np.isnan(given), confidence, given)
    out[CONFIDENCE_COLUMN] = confidence
    return out


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
    if train_labelled.empty:
        raise EmptyDatasetError("train_labelled has no rows to clean")
    _require_columns(train_labelled, schema, "train_labelled")
    gold = _with_label_columns(train_labelled, schema, source=GOLD, what="train_labelled")
    frames, rejected = [gold], train_labelled.iloc[:0].assign(**{REASON_COLUMN: pd.Series(dtype=str)})
    if weak_labels is not None and len(weak_labels):
        _require_columns(weak_labels, schema, "weak_labels")
        unlabelled = weak_labels[schema.label_column].isna()
        rejected = weak_labels[unlabelled].assign(**{REASON_COLUMN: "weak_label_missing: no hard label to clean"})
        weak = _with_label_columns(weak_labels[~unlabelled], schema, source=WEAK, what="weak_labels")
        frames.append(weak)
    merged = pd.concat(frames, ignore_index=True)
    id_column = id_column_of(schema)
    repeated = merged[id_column][merged[id_column].duplicated()]
    if len(repeated):
        raise SchemaError(
            f"id column '{id_column}' repeats across train_labelled and weak_labels: "
            f"{repeated.unique()[:5].tolist()} ({repeated.nunique()} ids)"
        )
    logger.info("cleaning %d rows (%d hand-labelled, %d weak)", len(merged), len(gold), len(merged) - len(gold))
    return merged, rejected.reset_index(drop=True)


def check_pred_probs(pred_probs: np.ndarray, n_classes: int, *, ids: Any = None, what: str = "pred_probs") -> None:
    """Refuse probabilities that are not distributions over the declared classes.

    Args:
        pred_probs: (N, C) probabilities.
        n_classes: C.
        ids: (N,) row ids, to name offending rows.
        what: What the array is, for messages.

    Raises:
        ProbabilityError: On a wrong shape, NaN or infinite values, values outside [0, 1], or rows whose sum
            is not 1 (within 1e-3).
    """
    if pred_probs.ndim != 2 or pred_probs.shape[1] != n_classes:
        raise ProbabilityError(
            f"{what} must be (N, {n_classes}), one column per declared label; got {pred_probs.shape}"
        )
    names = np.asarray(ids) if ids is not None else np.arange(len(pred_probs))

    def fail(rows: np.ndarray, problem: str) -> None:
        raise ProbabilityError(f"{what}: {int(rows.sum())} row(s) {problem}, e.g. ids {names[rows][:5].tolist()}")

    finite = np.isfinite(pred_probs).all(axis=1)
    if not finite.all():
        fail(~finite, "hold NaN or infinite probabilities")
    outside = ((pred_probs < 0) | (pred_probs > 1)).any(axis=1)
    if outside.any():
        fail(outside, "hold probabilities outside [0, 1]")
    off = np.abs(pred_probs.sum(axis=1) - 1.0) > PROBABILITY_TOLERANCE
    if off.any():
        fail(off, f"do not sum to 1 (sums {np.round(pred_probs.sum(axis=1)[off][:3], 4).tolist()})")


def align_pred_probs(frame: pd.DataFrame, pred_probs: pd.DataFrame, schema: DataSchema) -> np.ndarray:
    """The probability rows of ``frame``'s ids, in ``frame``'s order.

    Args:
        frame: Labelled rows.
        pred_probs: Out-of-fold probabilities with the id column and ``pred_prob_<value>`` columns.
        schema: The dataset schema.

    Returns:
        (N, C) probabilities aligned with ``frame``.

    Raises:
        ProbabilityError: When columns are missing, ids repeat, or the ids differ between the two frames.
    """
    id_column, columns = id_column_of(schema), pred_prob_columns(schema.labels)
    missing = [c for c in [id_column, *columns] if c not in pred_probs.columns]
    if missing:
        raise ProbabilityError(f"pred_probs lacks column(s) {missing}; it has {list(pred_probs.columns)[:20]}")
    repeated = pred_probs[id_column][pred_probs[id_column].duplicated()]
    if len(repeated):
        raise ProbabilityError(f"pred_probs repeats ids, e.g. {repeated.head(5).tolist()}")
    indexed = pred_probs.set_index(id_column)
    wanted = pd.Index(frame[id_column])
    absent, extra = wanted.difference(indexed.index), indexed.index.difference(wanted)
    if len(absent) or len(extra):
        raise ProbabilityError(
            f"ids do not match between the labelled rows and pred_probs: {len(absent)} labelled row(s) without "
            f"probabilities (e.g. {absent[:3].tolist()}), {len(extra)} probability row(s) without a labelled row "
            f"(e.g. {extra[:3].tolist()})"
        )
    return indexed.loc[wanted, columns].to_numpy(dtype=np.float64)


def check_folds(labels: np.ndarray, folds: int, schema: DataSchema) -> None:
    """Refuse data that stratified K-fold cannot split.

    Args:
        labels: (N,) class indices.
        folds: K.
        schema: The dataset schema (for label names).

    Raises:
        EmptyDatasetError: When only one class is present, or a class has fewer than K rows.
    """
    counts = np.bincount(labels, minlength=len(schema.labels))
    names = schema.label_names or [str(v) for v in schema.labels]
    present = np.flatnonzero(counts)
    if len(present) < 2:
        only = names[present[0]] if len(present) else "none"
        raise EmptyDatasetError(f"label cleaning needs at least two classes; the training set holds only {only!r}")
    small = [f"{names[k]!r} ({counts[k]} rows)" for k in range(len(counts)) if 0 < counts[k] < folds]
    if small:
        raise EmptyDatasetError(
            f"clean.folds is {folds} but class(es) {', '.join(small)} have fewer rows than folds; "
            "lower clean.folds or label more rows"
        )


# --- probability models (a registry: clean.models) -----------------------------------------------------------


@dataclass(frozen=True)
class FoldContext:
    """What every probability model gets besides the rows: the train and clean parameters, the schema, the seed."""

    train: dict[str, Any]
    data: dict[str, Any]
    seed: int
    clean: dict[str, Any] = field(default_factory=dict)  # params:clean (model options such as the NB temperature)


FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (fit rows, held-out rows) -> (held, C) probs
ProbabilityModel = Callable[[pd.DataFrame, pd.DataFrame, FoldContext], FitPredict]
_PROBABILITY_MODELS: dict[str, ProbabilityModel] = {}


def register_probability_model(name: str) -> Callable[[ProbabilityModel], ProbabilityModel]:
    """Register a model for out-of-fold probabilities under ``name`` (chosen in ``clean.models``).

    A model is ``factory(frame, dev, context) -> fit_predict``; ``fit_predict(fit_rows, held_rows)`` fits on
    ``frame.iloc[fit_rows]`` (labels in ``data.label_column``; ``dev`` may serve early stopping) and returns
    (len(held_rows), C) probabilities in ``data.labels`` order. The factory may precompute label-free
    features once for all folds.

    Args:
        name: The registry key.

    Returns:
        A decorator that registers the factory and returns it unchanged.
    """

    def decorate(factory: ProbabilityModel) -> ProbabilityModel:
        _PROBABILITY_MODELS[name] = factory
        return factory

    return decorate


def create_probability_model(name: str) -> ProbabilityModel:
    """The registered model factory called ``name``.

    Args:
        name: A key of the registry.

    Returns:
        The factory.

    Raises:
        ParameterError: For an unknown name (the message lists the known ones).
    """
    if name not in _PROBABILITY_MODELS:
        raise ParameterError(f"clean.models: unknown model {name!r}; known: {sorted(_PROBABILITY_MODELS)}")
    return _PROBABILITY_MODELS[name]


def _texts(frame: pd.DataFrame, schema: DataSchema) -> list[list[str]]:
    return [frame[column].fillna("").astype(str).tolist() for column in schema.text_columns]


def _full_columns(probabilities: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Spread a scikit-learn ``predict_proba`` over all C classes (a class absent from a fold gets 0)."""
    out = np.zeros((len(probabilities), n_classes))
    out[:, classes] = probabilities
    return out


@register_probability_model("ngram_bag")
def _ngram_bag(frame: pd.DataFrame, dev: pd.DataFrame, context: FoldContext) -> FitPredict:
    """frugalml's own model through its training node (params:train, early stopping on ``dev``)."""
    from frugalml.nodes.train import train_text_classifier

    def fit_predict(fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        classifier, _, _ = train_text_classifier(frame.iloc[fit], dev, context.train, context.data, context.seed)
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
    counts = HashingFeaturizer(hashing).transform(_texts(frame, schema))  # (N, B)
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
    """scikit-learn TF-IDF (word 1-2-grams, sublinear, min_df 2, fitted per fold) + LogisticRegression(C=10)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    schema = parse_params(DataSchema, context.data, name="data")
    text = np.array(["\n".join(parts) for parts in zip(*_texts(frame, schema), strict=True)], dtype=object)
    y = class_indices(frame[schema.label_column], schema)

    def fit_predict(fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        model = LogisticRegression(C=10, max_iter=2000).fit(vectorizer.fit_transform(text[fit]), y[fit])
        probabilities = model.predict_proba(vectorizer.transform(text[held]))
        return _full_columns(probabilities, model.classes_, len(schema.labels))

    return fit_predict


# --- out-of-fold probabilities -------------------------------------------------------------------------------


def fold_train_params(train: TrainParams, config: CleanParams) -> dict[str, Any]:
    """The ngram_bag fold models' recipe: ``clean.fold_train`` deep-merged over ``params:train``, DP off.

    The fold models are internal (their probabilities never leave the project), so they train without DP; the
    released model's DP training is what spends the privacy budget (docs/privacy.md). The released recipe is
    tuned for DP, so the folds keep their own non-private one.

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
    return parse_params(TrainParams, merged, name="clean.fold_train").model_dump()


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


def _fit_rows(fit: np.ndarray, excluded: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A fold's fit rows without the excluded ones, unless that would leave a class without rows."""
    kept = fit[~excluded[fit]]
    if set(np.unique(labels[kept])) != set(np.unique(labels[fit])):
        logger.warning("a fold would lose a whole class by exclusion; fitting it on all its rows")
        return fit
    return kept


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
        return pd.DataFrame({id_column: [], FOLD_COLUMN: [], **{c: [] for c in columns}}), {
            "cv.skipped": {"value": 1.0, "step": 0}
        }
    started = time.perf_counter()
    labels = class_indices(frame[schema.label_column], schema)
    check_folds(labels, config.folds, schema)
    factories = {name: create_probability_model(name) for name in config.models}
    fold_train = fold_train_params(train_config, config)
    context = FoldContext(train=fold_train, data=schema.model_dump(), seed=seed, clean=config.model_dump())
    predictors = {name: factory(frame, dev, context) for name, factory in factories.items()}
    splitter = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(labels)), labels))
    fold = np.empty(len(labels), dtype=np.int64)
    for k, (_, held) in enumerate(splits):
        fold[held] = k
    metrics: dict[str, Any] = {"cv.agreement": [], "cv.excluded": []}
    excluded = np.zeros(len(labels), dtype=bool)
    bar = tqdm(total=config.rounds * config.folds * len(predictors), desc="clean: out-of-fold fits",
               disable=not config.progress)  # fmt: skip
    for round_ in range(1, config.rounds + 1):
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
        agreement = float((pred_probs.argmax(axis=1) == labels).mean())
        metrics["cv.agreement"].append({"value": agreement, "step": round_})
        metrics["cv.excluded"].append({"value": float(excluded.sum()), "step": round_})
        logger.info("round %d: out-of-fold agreement with the given labels %.4f", round_, agreement)
        if round_ < config.rounds:
            excluded = label_issue_mask(labels, pred_probs, filter_by=config.exclude_by or config.filter_by)
    bar.close()
    metrics["cv.seconds"] = {"value": time.perf_counter() - started, "step": 0}
    out = pd.DataFrame(pred_probs, columns=columns)
    out.insert(0, FOLD_COLUMN, fold)
    out.insert(0, id_column, frame[id_column].to_numpy())
    return out, metrics


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
    counts = HashingFeaturizer(hashing).transform(_texts(frame, schema))
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
    # near-duplicate sets: connected components of the "within the radius" relation; the first row leads
    rows = [i for i, members in enumerate(near.near_duplicate_sets) for _ in members]
    cols = [int(j) for members in near.near_duplicate_sets for j in members]
    adjacency = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = sp.csgraph.connected_components(adjacency, directed=False)
    ids = frame[id_column].to_numpy()
    first = pd.Series(np.arange(n)).groupby(component).transform("min").to_numpy()
    table["near_duplicate_of"] = np.where(table["is_near_duplicate"].to_numpy(), ids[first], None)
    sets = int(pd.Series(component[table["is_near_duplicate"].to_numpy()]).nunique())
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


# --- issues ---------------------------------------------------------------------------------------------------


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
    from cleanlab.rank import get_label_quality_scores

    config = parse_params(CleanParams, params, name="clean")
    schema = parse_params(DataSchema, data, name="data")
    id_column, columns = id_column_of(schema), pred_prob_columns(schema.labels)
    labels = class_indices(frame[schema.label_column], schema)
    n = len(frame)
    source = frame[SOURCE_COLUMN].to_numpy() if SOURCE_COLUMN in frame.columns else GOLD
    confidence = frame[CONFIDENCE_COLUMN].to_numpy() if CONFIDENCE_COLUMN in frame.columns else 1.0
    base = pd.DataFrame({id_column: frame[id_column].to_numpy(), SOURCE_COLUMN: source, CONFIDENCE_COLUMN: confidence,
                         "given_label": np.asarray(schema.labels)[labels]})  # fmt: skip
    if config.policy == "none":
        skipped = base.assign(suggested_label=base["given_label"], suggested_confidence=np.nan,
                              given_label_probability=np.nan, label_quality=np.nan, is_label_issue=False,
                              **{FOLD_COLUMN: -1}, **{c: np.nan for c in columns})  # fmt: skip
        return skipped, {"checked": False, "note": "clean.policy is none"}
    probs = align_pred_probs(frame, pred_probs, schema)
    check_pred_probs(probs, len(schema.labels), ids=frame[id_column], what="pred_probs")
    check_folds(labels, 2, schema)
    issues = label_issue_mask(labels, probs, filter_by=config.filter_by)
    quality = get_label_quality_scores(labels, probs, method=config.rank_by)
    others = probs.copy()
    others[np.arange(n), labels] = -1.0
    suggested = np.where(issues, others.argmax(axis=1), probs.argmax(axis=1))
    folds = pred_probs.set_index(id_column).loc[frame[id_column], FOLD_COLUMN].to_numpy()
    table = base.assign(
        suggested_label=np.asarray(schema.labels)[suggested],
        suggested_confidence=probs[np.arange(n), suggested],
        given_label_probability=probs[np.arange(n), labels],
        label_quality=quality,
        is_label_issue=issues,
        **{FOLD_COLUMN: folds},
        **{c: probs[:, k] for k, c in enumerate(columns)},
    )
    summary: dict[str, Any] = {"checked": False}
    if config.data_issues.enabled:
        features = parse_params(TrainParams, train, name="train").features
        data_table, summary = find_data_issues(frame, labels, schema=schema, features=features,
                                               config=config.data_issues, seed=seed)  # fmt: skip
        table = pd.concat([table, data_table], axis=1)
    logger.info("label issues: %d of %d rows (%s)", int(issues.sum()), n, config.filter_by)
    return table, summary


# --- policy ---------------------------------------------------------------------------------------------------


def _name(schema: DataSchema, value: Any) -> str:
    names = dict(zip(schema.labels, schema.label_names or [str(v) for v in schema.labels], strict=True))
    return str(names.get(int(value), value))


def _issue_types(quality: pd.DataFrame) -> pd.Series:
    kinds = [("label_issue", "is_label_issue"), ("near_duplicate", "is_near_duplicate"), ("outlier", "is_outlier")]
    present = [(kind, quality[column].fillna(False).to_numpy(dtype=bool)) for kind, column in kinds
               if column in quality.columns]  # fmt: skip
    names = [";".join(kind for kind, flags in present if flags[i]) for i in range(len(quality))]
    return pd.Series(names, index=quality.index, dtype=object)


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
    id_column, label = id_column_of(schema), schema.label_column
    if len(label_quality) != len(frame) or not np.array_equal(
        label_quality[id_column].to_numpy(), frame[id_column].to_numpy()
    ):
        raise ProbabilityError("label_quality does not describe the rows being cleaned (ids differ); rerun the stage")
    quality = label_quality.reset_index(drop=True)
    weak = frame[SOURCE_COLUMN].eq(WEAK).to_numpy()
    policy = np.where(weak, config.weak_policy or config.policy, config.policy)
    if config.policy == "none":
        policy[:] = "none"
    issue = quality["is_label_issue"].fillna(False).to_numpy(dtype=bool)
    confident = quality["suggested_confidence"].to_numpy(dtype=np.float64) >= config.relabel_min_confidence
    relabel = issue & (policy == "relabel") & confident
    remove = issue & ((policy == "remove") | ((policy == "relabel") & ~confident))
    reasons = np.array([""] * len(frame), dtype=object)
    for i in np.flatnonzero(remove):
        row = quality.iloc[i]
        why = "below clean.relabel_min_confidence" if policy[i] == "relabel" else config.filter_by
        given, suggested = _name(schema, row["given_label"]), _name(schema, row["suggested_label"])
        p = row["suggested_confidence"]
        reasons[i] = f"label_issue: given {given}, model suggests {suggested} (p={p:.3f}; {why})"
    if config.data_issues.duplicates == "remove" and "near_duplicate_of" in quality.columns:
        lead = quality["near_duplicate_of"].to_numpy(dtype=object)
        is_duplicate = quality["is_near_duplicate"].fillna(False).to_numpy(dtype=bool)
        follower = is_duplicate & (lead != frame[id_column].to_numpy())
        duplicate = follower & np.isin(policy, ["remove", "relabel"]) & ~remove & ~relabel
        reasons[duplicate] = [f"near_duplicate_of:{lead_id}" for lead_id in lead[duplicate]]
        remove = remove | duplicate

    clean = frame.copy()
    if relabel.any():
        columns, probs = prob_columns(schema.labels), quality[pred_prob_columns(schema.labels)].to_numpy()
        clean.loc[relabel, label] = quality.loc[relabel, "suggested_label"].to_numpy()
        clean.loc[relabel, SOURCE_COLUMN] = RELABELLED
        clean.loc[relabel, CONFIDENCE_COLUMN] = quality.loc[relabel, "suggested_confidence"].to_numpy()
        clean.loc[relabel, columns] = probs[relabel]
    quarantine = frame[remove].assign(**{REASON_COLUMN: reasons[remove]})
    quarantine = pd.concat([rejected, quarantine], ignore_index=True) if len(rejected) else quarantine
    clean = clean[~remove].reset_index(drop=True)

    flagged = issue | quality.get("is_near_duplicate", False) | quality.get("is_outlier", False)
    flagged = np.asarray(flagged, dtype=bool) & (policy != "none")
    action = np.select([relabel, remove], ["relabelled", "removed"], default="review")
    queue = _review_queue(frame, quality, flagged=flagged, action=action, schema=schema, config=config)
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


def _review_queue(
    frame: pd.DataFrame,
    quality: pd.DataFrame,
    *,
    flagged: np.ndarray,
    action: np.ndarray,
    schema: DataSchema,
    config: CleanParams,
) -> pd.DataFrame:
    id_column = id_column_of(schema)
    keep = [id_column, SOURCE_COLUMN, CONFIDENCE_COLUMN, "given_label", "suggested_label", "suggested_confidence",
            "label_quality", "near_duplicate_of"]  # fmt: skip
    queue = quality.loc[flagged, [c for c in keep if c in quality.columns]].copy()
    queue.insert(4, "given_label_name", queue["given_label"].map(lambda v: _name(schema, v)))
    queue.insert(6, "suggested_label_name", queue["suggested_label"].map(lambda v: _name(schema, v)))
    queue["issues"] = _issue_types(quality.loc[flagged])
    queue["action"] = action[flagged]
    limit = config.review_text_chars
    for column in schema.text_columns:
        text = frame.loc[flagged, column].fillna("").astype(str)
        queue[column] = text.map(lambda t: t if len(t) <= limit else t[:limit] + "…").to_numpy()
    order = queue["issues"].str.contains("label_issue").map({True: 0, False: 1})
    return (
        queue.assign(_order=order)
        .sort_values(["_order", "label_quality"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )


# --- report ---------------------------------------------------------------------------------------------------


def issue_counts_by_class(label_quality: pd.DataFrame, schema: DataSchema) -> list[dict[str, Any]]:
    """Label issues per given class, with the classes the model suggests instead.

    Args:
        label_quality: :func:`find_label_issues`.
        schema: The dataset schema.

    Returns:
        One dict per declared class: ``label``, ``name``, ``rows``, ``label_issues``, ``share`` and
        ``suggested`` (suggested class name -> count).
    """
    out = []
    for value in schema.labels:
        rows = label_quality[label_quality["given_label"] == value]
        flagged = rows[rows["is_label_issue"].fillna(False).astype(bool)]
        suggested = flagged["suggested_label"].map(lambda v: _name(schema, v)).value_counts().to_dict()
        out.append({"label": value, "name": _name(schema, value), "rows": len(rows), "label_issues": len(flagged),
                    "share": len(flagged) / len(rows) if len(rows) else 0.0, "suggested": suggested})  # fmt: skip
    return out


def render_label_issues_html(summary: dict[str, Any], queue: pd.DataFrame, schema: DataSchema, top: int) -> str:
    """A self-contained HTML page: outcome, counts by class, data issues and the top suspects.

    Args:
        summary: :func:`report_label_issues`'s JSON summary.
        queue: The review queue (most suspicious first).
        schema: The dataset schema.
        top: How many suspects to list.

    Returns:
        HTML text.
    """
    esc = html.escape
    outcome = summary["outcome"]
    by_class = "".join(
        f"<tr><td>{esc(c['name'])}</td><td>{c['rows']}</td><td>{c['label_issues']}</td><td>{c['share']:.2%}</td>"
        f"<td>{esc(', '.join(f'{k}: {v}' for k, v in c['suggested'].items()))}</td></tr>"
        for c in summary["by_class"]
    )
    data_issues = summary["data_issues"]
    data_rows = "".join(
        f"<tr><td>{esc(key)}</td><td>{value}</td></tr>" for key, value in data_issues.items() if key not in {"checked"}
    )
    id_column = id_column_of(schema)
    preview = schema.text_columns[0]
    suspects = "".join(
        f"<tr><td>{esc(str(r[id_column]))}</td><td>{esc(str(r[SOURCE_COLUMN]))}</td>"
        f"<td>{esc(str(r['given_label_name']))}</td><td>{esc(str(r['suggested_label_name']))}</td>"
        f"<td>{r['suggested_confidence']:.3f}</td><td>{r['label_quality']:.4f}</td><td>{esc(str(r['issues']))}</td>"
        f"<td>{esc(str(r['action']))}</td><td>{esc(str(r[preview])[:160])}</td></tr>"
        for _, r in queue.head(top).iterrows()
    )
    counts = ", ".join(f"{key}: {outcome[key]}" for key in ("rows", "gold_rows", "weak_rows", "label_issues",
                                                          "relabelled", "removed", "review_queue"))  # fmt: skip
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>frugalml label issues</title><style>"
        "body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
        "vertical-align:top;text-align:left}</style></head><body>"
        f"<h1>Label issues: {outcome['label_issues']} of {outcome['rows']} rows</h1>"
        f"<p>policy: {esc(outcome['policy'])} (weak labels: {esc(outcome['weak_policy'])}); "
        f"method: {esc(summary['filter_by'])} on out-of-fold probabilities ({summary['folds']} folds, "
        f"{summary['rounds']} round(s), rows left out between rounds by {esc(summary['exclude_by'])}, models "
        f"{esc(', '.join(summary['models']))}). {esc(counts)}</p>"
        "<h2>By class</h2><table><tr><th>given label</th><th>rows</th><th>label issues</th><th>share</th>"
        f"<th>model suggests</th></tr>{by_class}</table>"
        f"<h2>Data issues</h2><table><tr><th>check</th><th>value</th></tr>{data_rows}</table>"
        f"<h2>Top {min(top, len(queue))} suspects</h2><table><tr><th>id</th><th>source</th><th>given</th>"
        "<th>suggested</th><th>p(suggested)</th><th>label quality</th><th>issues</th><th>action</th>"
        f"<th>{esc(preview)}</th></tr>{suspects}</table>"
        "<p>Label quality is cleanlab's score of the given label (low = suspicious). The full list is the "
        "review queue (label_review_queue.csv / .json).</p></body></html>"
    )


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
    summary = {
        "outcome": outcome,
        "by_class": by_class,
        "data_issues": data_issues,
        "filter_by": config.filter_by,
        "exclude_by": config.exclude_by or config.filter_by,
        "rank_by": config.rank_by,
        "folds": config.folds,
        "rounds": config.rounds,
        "models": config.models,
    }
    metrics: dict[str, Any] = {
        key: {"value": float(outcome[key]), "step": 0}
        for key in ("rows", "gold_rows", "weak_rows", "weak_rejected", "label_issues", "relabelled", "removed",
                    "review_queue", "train_clean_rows")
    }  # fmt: skip
    for c in by_class:
        metrics[f"label_issues.{c['name']}"] = {"value": float(c["label_issues"]), "step": 0}
    for key in ("near_duplicates", "near_duplicate_sets", "exact_duplicates", "outliers", "non_iid_p_value"):
        if key in data_issues:
            metrics[f"data_issues.{key}"] = {"value": float(data_issues[key]), "step": 0}
    texts = {c: review_queue[c].fillna("").astype(str) for c in schema.text_columns if c in review_queue.columns}
    queue = review_queue.assign(**texts)  # a CSV round trip reads empty text back as NaN
    records = queue.astype(object).where(queue.notna(), None).to_dict(orient="records")
    page = render_label_issues_html(summary, queue, schema, config.report_top)
    return page, summary, records, metrics
