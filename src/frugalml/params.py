"""Parameter schemas, validated strictly (``extra="forbid"``) before any work is done.

Every ``conf/<env>/parameters*.yml`` key is described here. :func:`validate_parameters` checks the whole
merged parameters dict when a Kedro run starts (see :mod:`frugalml.hooks`); nodes re-validate the block
they receive, so calling a node from Python gets the same checks.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from frugalml.errors import ParameterError


class Strict(BaseModel):
    """Base model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class DataSchema(Strict):
    """Which columns of a text dataset hold what. A user's own CSV/Parquet is described here."""

    text_columns: list[str] = Field(default_factory=lambda: ["subject", "body"], min_length=1)
    label_column: str = "label"
    id_column: str | None = "email_id"
    labels: list[int] = Field(default_factory=lambda: [0, 1], min_length=2)
    label_names: list[str] = Field(default_factory=lambda: ["ham", "spam"])
    positive_label: int = 1
    group_column: str | None = "group"
    # rows whose normalised text repeats an earlier row's go to validation_quarantine (none: keep every copy)
    dedup_on: Literal["text", "none"] = "text"
    # text whose share of control / non-printable characters is above this is quarantined as binary_text;
    # isolated control characters (NUL, ESC, ...) below it are stripped
    max_control_share: float = Field(default=0.1, ge=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> DataSchema:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct, got {self.labels}")
        if self.label_names and len(self.label_names) != len(self.labels):
            raise ValueError("label_names must have one name per label")
        if self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label} is not in labels {self.labels}")
        return self


class SampleParams(Strict):
    """A fixed, seeded sample of messages (tests and quick runs)."""

    n: int = Field(gt=0)
    seed: int = 0


def _default_label_rule() -> dict[str, int]:
    return {"spam*": 1, "*ham*": 0}


class IngestParams(Strict):
    """Parsing, labelling and de-duplication of raw e-mail."""

    sample: SampleParams | None = None
    dedup_on: Literal["text", "raw", "none"] = "text"
    min_text_chars: int = Field(default=1, ge=0)
    max_body_chars: int = Field(default=200_000, gt=0)
    verify_message_checksums: bool = True
    # corpus folder (group) name pattern -> label, shell-style and case-insensitive; a message whose folder
    # matches no pattern, or patterns of two different labels, is quarantined (never defaulted to a label).
    # Overrides merge key by key over the defaults; a pattern set to null is removed.
    label_rule: dict[str, int | None] = Field(default_factory=_default_label_rule)
    # a body whose share of control / non-printable characters is above this is quarantined as binary_body;
    # isolated control characters (NUL, ESC, ...) below it are stripped
    max_control_share: float = Field(default=0.1, ge=0, le=1, allow_inf_nan=False)

    @field_validator("label_rule")
    @classmethod
    def _patterns(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        if any(not pattern.strip() for pattern in value):
            raise ValueError("label_rule patterns must not be empty")
        kept = {pattern: label for pattern, label in value.items() if label is not None}
        if not kept:
            raise ValueError("label_rule needs at least one pattern with a label, e.g. {'spam*': 1, '*ham*': 0}")
        return kept


class TemporalSplit(Strict):
    """Train on one era, test on a later one (shell-style patterns on a column)."""

    column: str | None = None  # null: params:data.group_column
    train_patterns: list[str] = Field(default_factory=lambda: ["*-1"], min_length=1)
    test_patterns: list[str] = Field(default_factory=lambda: ["*-2"], min_length=1)


class SplitParams(Strict):
    """How labelled rows become train / dev / gold-dev / test sets."""

    strategy: Literal["random", "temporal"] = "random"
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    dev_fraction: float = Field(default=0.1, gt=0, lt=1)
    gold_dev_size: int = Field(default=200, ge=0)
    unlabelled_fraction: float = Field(default=0.0, ge=0, lt=1)
    temporal: TemporalSplit = Field(default_factory=TemporalSplit)


class FeatureParams(Strict):
    """Hashed n-gram features (no vocabulary to fit, so no data leaks and any text works)."""

    buckets: int = Field(default=2**16, ge=16)
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = (3, 4)
    char_max_chars: int = Field(default=3000, gt=0)
    lowercase: bool = True
    sublinear_tf: bool = True
    # idf fitted on the training rows; auto: on, except under DP (an idf fitted on private rows is a release of
    # their document frequencies that epsilon does not cover, so DP training uses data-independent features)
    idf: bool | Literal["auto"] = "auto"

    @field_validator("word_ngrams", "char_ngrams")
    @classmethod
    def _ordered(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1]:
            raise ValueError(f"n-gram range must satisfy 1 <= low <= high, got {value}")
        return value


class ModelParams(Strict):
    """The bag-of-n-grams classifier: EmbeddingBag -> (MLP) -> logits. No BatchNorm (DP-friendly)."""

    embedding_dim: int = Field(default=1, gt=0)  # 1: a rank-1 bag (few noisy weights under DP)
    hidden_dim: int = Field(default=0, ge=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)


PRV_MAX_EPSILON = 64.0  # opacus's PRV accountant: measured 2 s / 0.4 GB at epsilon 8, minutes / >10 GB at 1000


class PrivacyParams(Strict):
    """Differentially private training (DP-SGD with Poisson sampling and ghost-norm clipping)."""

    enabled: bool = True  # private by default; governance require_dp makes turning it off a two-person operation
    target_epsilon: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    target_delta: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)  # null: 1 / (10 N)
    max_grad_norm: float = Field(default=0.25, gt=0, allow_inf_nan=False)
    accountant: Literal["prv", "rdp"] = "prv"
    secure_mode: bool = False
    max_physical_batch_size: int | None = Field(default=None, gt=0)  # virtual steps: larger batches in chunks

    @model_validator(mode="after")
    def _accountant_range(self) -> PrivacyParams:
        if self.enabled and self.accountant == "prv" and self.target_epsilon > PRV_MAX_EPSILON:
            raise ValueError(
                f"target_epsilon {self.target_epsilon:g} is too large for the prv accountant (its grid grows with "
                f"epsilon: about 10 s and 1 GB at 64, minutes and over 10 GB at 1000); above {PRV_MAX_EPSILON:g} "
                "use accountant: rdp, or enabled: false"
            )
        return self


AUTO_BATCH_SIZE = 256  # train.batch_size: auto on a training set of 1,024 rows or more (the full corpus)


class TrainParams(Strict):
    """Optimiser and loop settings."""

    features: FeatureParams = Field(default_factory=FeatureParams)
    model: ModelParams = Field(default_factory=ModelParams)
    epochs: int = Field(default=5, gt=0)
    # auto: AUTO_BATCH_SIZE, or a quarter of the training rows when that is smaller (under DP the batch is the
    # expected Poisson batch, so it must not exceed them); see TrainParams.resolve_batch_size
    batch_size: int | Literal["auto"] = "auto"
    lr: float = Field(default=0.05, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int = Field(default=2, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, gt=0)
    progress: bool = True
    privacy: PrivacyParams = Field(default_factory=PrivacyParams)
    targets: Literal["hard", "soft"] = "hard"  # soft: label_prob_<value> columns where present (weak labels)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch(cls, value: Any) -> Any:
        if value == "auto":
            return value
        whole = not isinstance(value, bool) and isinstance(value, int | str) and str(value).strip().isdigit()
        if not whole or int(value) <= 0:
            raise ValueError("must be a positive whole number or 'auto'")
        return int(value)

    @model_validator(mode="after")
    def _private_features(self) -> TrainParams:
        if self.privacy.enabled and self.features.idf is True:
            raise ValueError(
                "features.idf: true fits idf on the private training rows, which epsilon does not cover; "
                "use idf: auto (off under DP) or false"
            )
        return self

    def uses_idf(self) -> bool:
        """Whether idf is fitted on the training rows (``auto``: unless DP is on)."""
        return not self.privacy.enabled if self.features.idf == "auto" else bool(self.features.idf)

    def resolve_batch_size(self, rows: int) -> int:
        """The batch size for ``rows`` training rows.

        ``auto`` is :data:`AUTO_BATCH_SIZE`, capped under DP at a quarter of the rows (at least 1), so the
        Poisson sampling rate q = batch / N is at most 1/4 (four or more noisy steps per epoch) and a small table
        trains instead of being refused. It depends on N only, which the accountant already uses (q, and the
        default delta 1 / (10 N)), so epsilon is computed for the batch actually used. An explicit number is
        returned as it is.

        Args:
            rows: N, the training rows.

        Returns:
            The (expected, under DP) batch size.
        """
        if self.batch_size != "auto":
            return int(self.batch_size)
        if not self.privacy.enabled:
            return AUTO_BATCH_SIZE  # plain mini-batches: a batch larger than N is simply the whole set
        return max(1, min(AUTO_BATCH_SIZE, rows // 4))


class WeakLabelParams(Strict):
    """Weak labelling: which LFs, how they are applied, how their votes are combined (nodes/weak_labels.py)."""

    lfs: list[str] = Field(default_factory=lambda: ["all"], min_length=1)  # names, family:<name>, or all
    applier: Literal["pandas", "vectorized", "dask"] = "vectorized"
    n_parallel: int = Field(default=2, ge=1)
    max_lf_failure_share: float = Field(default=0.5, ge=0, le=1)
    label_model: Literal["snorkel", "majority"] = "snorkel"
    class_balance: Literal["dev", "estimate"] | list[float] = "estimate"
    label_model_epochs: int = Field(default=500, gt=0)
    label_model_lr: float = Field(default=0.01, gt=0)
    label_model_l2: float = Field(default=0.0, ge=0)
    abstain_policy: Literal["drop", "prior"] = "drop"
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    leave_one_out: bool = True
    progress: bool = True

    @field_validator("class_balance")
    @classmethod
    def _balance(cls, value: Any) -> Any:
        if isinstance(value, list) and (any(p <= 0 for p in value) or abs(sum(value) - 1) > 1e-6):
            raise ValueError(f"class_balance must be positive and sum to 1, got {value}")
        return value


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


class EvaluateParams(Strict):
    """Evaluation settings."""

    threshold: float = Field(default=0.5, gt=0, lt=1)
    calibration_bins: int = Field(default=15, ge=2)


class QualityParams(Strict):
    """Data-quality gate options (the suites themselves are files: ``conf/base/expectations/*.yml``)."""

    max_quarantine_share: float | None = Field(default=None, ge=0, le=1)  # null: each suite's own value
    example_ids: int = Field(default=5, ge=0)


class DriftThresholds(Strict):
    """Effect sizes above which a batch counts as drifted (see :mod:`frugalml.nodes.drift`)."""

    label_prior: float = Field(default=0.10, gt=0)
    length_ks: float = Field(default=0.15, gt=0)
    token_js: float = Field(default=0.03, gt=0)
    oov_rate: float = Field(default=0.05, gt=0)
    indicator_share: float = Field(default=0.10, gt=0)


class DriftParams(Strict):
    """Drift detection between the reference (champion's training data) and a new batch."""

    enabled: bool = True
    action: Literal["flag", "block"] = "flag"
    indicator_columns: list[str] = Field(
        default_factory=lambda: ["html_only", "list_id:nonempty", "in_reply_to:nonempty", "attachment_count:positive"]
    )
    token_buckets: int = Field(default=2**18, ge=16)
    seed: int = 0
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)


class TrackingParams(Strict):
    """Which catalog datasets are recorded with ``mlflow.log_input`` when loaded."""

    log_inputs: dict[str, Literal["training", "validation", "testing", "raw"]] = Field(default_factory=dict)


class FrugalParams(Strict):
    """Every parameter of a frugalml project (the merged ``parameters*.yml`` plus ``--params``)."""

    seed: int = 0
    data: DataSchema = Field(default_factory=DataSchema)
    ingest: IngestParams = Field(default_factory=IngestParams)
    split: SplitParams = Field(default_factory=SplitParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    weak_label: WeakLabelParams = Field(default_factory=WeakLabelParams)
    clean: CleanParams = Field(default_factory=CleanParams)
    tracking: TrackingParams = Field(default_factory=TrackingParams)
    quality: QualityParams = Field(default_factory=QualityParams)
    drift: DriftParams = Field(default_factory=DriftParams)
    profile: bool = False


def _format_error(error: ValidationError, prefix: str) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown parameter '{where}' (check its spelling)")
        else:
            lines.append(f"parameter '{where}': {item['msg']} (got {item.get('input')!r})")
    return "; ".join(lines)


M = TypeVar("M", bound=BaseModel)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``, nested dicts key by key (Kedro's soft merge).

    Args:
        base: The full block.
        override: A partial block.

    Returns:
        A new dict; ``base`` and ``override`` are not modified.
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_params(model: type[M], params: Any, *, name: str = "") -> M:
    """Validate one parameters block against its schema.

    Args:
        model: The pydantic schema class.
        params: A dict (as Kedro passes ``params:<name>``) or an instance of ``model``.
        name: The block's key, used in error messages.

    Returns:
        The validated parameters object.

    Raises:
        ParameterError: Naming each bad or unknown key.
    """
    if isinstance(params, model):
        return params
    try:
        return model.model_validate(params if params is not None else {})
    except ValidationError as error:
        raise ParameterError(_format_error(error, name)) from None


def load_project_parameters(conf_source: str | Path, env: str | None = None) -> dict[str, Any]:
    """The merged parameters of a project's ``conf`` folder, as ``kedro run --env ENV`` would see them.

    Args:
        conf_source: The ``conf`` folder.
        env: An environment folder layered over ``base`` (``None``: base only).

    Returns:
        The merged parameters dict (not yet validated).
    """
    from frugalml.config import load_config  # the project's one config reader

    return dict(load_config("parameters", conf_source, env, default={}) or {})


def validate_parameters(params: dict[str, Any]) -> FrugalParams:
    """Validate the merged parameters of a run.

    Args:
        params: ``context.params`` (all parameters files plus runtime ``--params``).

    Returns:
        The validated parameters.

    Raises:
        ParameterError: Naming each bad or unknown key, before any node runs.
    """
    return parse_params(FrugalParams, params)
