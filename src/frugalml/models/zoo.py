"""The model zoo: ``train.model.kind`` names a registered :class:`ModelKind`.

A kind turns training and dev rows into a torch module, the inputs it trains on, and the inference bundle that
is saved (safetensors + JSON) and served by the MLflow pyfunc. The train node is the same for every kind (AdamW
or DP-SGD with ghost clipping, early stopping on dev). Adding a model is one module and one entry here::

    @MODEL_KINDS.register("my_model")
    def build_my_model(request: BuildRequest) -> Built: ...

plus its loader in :data:`MODEL_FORMATS` (the ``format`` its ``metadata()`` writes).

Built in: ``ngram_bag`` (hashed n-grams, EmbeddingBag -> linear head), ``pretrained`` (a digest-checked
encoder's pooled embedding -> head: ``fine_tuning`` frozen, where only the head sees private gradients, adapters
(LoRA or bottleneck) or full; :mod:`frugalml.models.fine_tune`) and ``hybrid`` (the bag and the frozen encoder into
one head) and ``transformer`` (a small encoder trained from scratch on hashed words, dense or dynamic
sliding-window attention; :mod:`frugalml.models.transformer`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd
import torch

from frugalml.errors import ModelError
from frugalml.models.compression import FORMAT as COMPRESSED_FORMAT
from frugalml.models.compression import CompressedClassifier
from frugalml.models.embedding_store import EmbeddingStore, shared_memory_store
from frugalml.models.encoder import EncoderSpec
from frugalml.models.feature_head import FORMAT as FEATURE_HEAD_FORMAT
from frugalml.models.feature_head import EncoderTextClassifier, FeatureHeadClassifier, RowInputs
from frugalml.models.fine_tune import FORMAT as FINE_TUNED_FORMAT
from frugalml.models.fine_tune import AdapterSpec, FineTuneConfig, FineTunedTextClassifier, build_module
from frugalml.models.hashing import HashingConfig, HashingFeaturizer
from frugalml.models.multitask import MultiHead, TaskSpec, attach_task_heads, split_task_tensors
from frugalml.models.ngram_bag import NgramBagClassifier, TextClassifier, fit_idf, tfidf_weights
from frugalml.models.transformer import FORMAT as TRANSFORMER_FORMAT
from frugalml.models.transformer import SmallTransformer, TransformerConfig, TransformerTextClassifier
from frugalml.registry import Registry


class Classifier(Protocol):
    """What every kind's inference bundle offers (evaluation, the pyfunc, the audit hook rely on it)."""

    module: torch.nn.Module
    text_columns: list[str]
    labels: list[int]
    label_names: list[str]

    def predict_proba(self, frame: pd.DataFrame, *, batch_size: int = ...) -> np.ndarray: ...  # noqa: D102
    def metadata(self) -> dict[str, Any]: ...  # noqa: D102
    def tensors(self) -> dict[str, torch.Tensor]: ...  # noqa: D102
    def to_cpu(self) -> Any: ...  # noqa: D102


@dataclass
class BuildRequest:
    """What a kind needs to build: the rows, ``params:train`` (a ``TrainParams``), the schema's parts."""

    train: pd.DataFrame
    dev: pd.DataFrame
    config: Any  # frugalml.params.TrainParams (models never import params)
    text_columns: list[str]
    labels: list[int]
    label_names: list[str]
    device: torch.device
    store: EmbeddingStore = field(default_factory=shared_memory_store)


@dataclass
class Built:
    """A built kind: its bundle, the module to train, and the train and dev inputs (row-aligned)."""

    classifier: Any
    module: torch.nn.Module
    train_inputs: RowInputs
    dev_inputs: RowInputs


BuildFunction = Callable[[BuildRequest], Built]
MODEL_KINDS: Registry[BuildFunction] = Registry("model kind", key="train.model.kind")
#: metadata "format" -> loader(metadata, tensors): how a saved model of each kind is read back
MODEL_FORMATS: dict[str, Callable[[dict[str, Any], dict[str, torch.Tensor]], Any]] = {
    "frugalml.ngram_bag/1": TextClassifier.from_parts,
    FEATURE_HEAD_FORMAT: EncoderTextClassifier.from_parts,
    FINE_TUNED_FORMAT: FineTunedTextClassifier.from_parts,
    TRANSFORMER_FORMAT: TransformerTextClassifier.from_parts,
}


def load_classifier(metadata: dict[str, Any], tensors: dict[str, torch.Tensor], directory: Any = None) -> Any:
    """Rebuild a saved model of any kind (a compressed one needs its ``directory``, for the encoder).

    Raises:
        ValueError: On a format no kind reads.
    """
    if metadata.get("format") == COMPRESSED_FORMAT:
        return CompressedClassifier.from_parts(metadata, tensors, directory=directory, load_base=load_classifier)
    loader = MODEL_FORMATS.get(str(metadata.get("format")))
    if loader is None:
        raise ValueError(f"unknown model format {metadata.get('format')!r}; known: {sorted(MODEL_FORMATS)}")
    tasks = [TaskSpec.from_json(entry) for entry in metadata.get("tasks") or []]
    if not tasks:
        return loader(metadata, tensors)
    base, heads = split_task_tensors(tensors)  # the kind's loader reads the main head as a single-task model's
    classifier = loader(metadata, base)
    attach_task_heads(classifier.module, tasks)
    try:
        cast(MultiHead, classifier.module.head).tasks.load_state_dict(heads)
    except RuntimeError as error:
        raise ValueError(f"the saved task heads do not fit the tasks {[t.name for t in tasks]}: {str(error)[:300]}") \
            from error  # fmt: skip
    classifier.tasks = tasks
    classifier.module.eval()
    return classifier


def hashing_config(config: Any) -> HashingConfig:
    """``train.features`` as the featuriser's config."""
    features = config.features
    return HashingConfig(buckets=features.buckets, word_ngrams=features.word_ngrams, char_ngrams=features.char_ngrams,
                         char_max_chars=features.char_max_chars, lowercase=features.lowercase)  # fmt: skip


def _bag_features(request: BuildRequest) -> tuple[HashingConfig, np.ndarray | None, Any]:
    """Hashing config, idf (fitted on training rows only, when the config uses one) and the training weights."""
    hashing = hashing_config(request.config)
    fields = [request.train[c].fillna("").astype(str).tolist() for c in request.text_columns]
    counts = HashingFeaturizer(hashing).transform(fields)
    idf = fit_idf(counts) if request.config.uses_idf() else None
    return hashing, idf, tfidf_weights(counts, idf, sublinear=request.config.features.sublinear_tf)


def _width_classes(request: BuildRequest) -> int:
    """C, plus K_t - 1 per extra task (``train.multitask``): the bag width ``auto`` gives is C - 1 + sum(K_t - 1), so
    each task's head reads a shared bag of the rank its own linear model needs."""
    return len(request.labels) + request.config.multitask.extra_width()


@MODEL_KINDS.register("ngram_bag")
def build_ngram_bag(request: BuildRequest) -> Built:
    """Hashed word and character n-grams -> EmbeddingBag (width C - 1 by default) -> linear head."""
    config = request.config
    hashing, idf, x_train = _bag_features(request)
    model_config: dict[str, Any] = {
        "buckets": config.features.buckets,
        "embedding_dim": config.model.resolve_embedding_dim(_width_classes(request)),
        "num_classes": len(request.labels),
        "hidden_dim": config.model.hidden_dim,
        "dropout": config.model.dropout,
    }
    module = NgramBagClassifier(**model_config).to(request.device)
    classifier = TextClassifier(module, hashing=hashing, idf=idf, sublinear_tf=config.features.sublinear_tf,
                                text_columns=request.text_columns, labels=request.labels,
                                label_names=request.label_names, model_config=model_config)  # fmt: skip
    return Built(classifier, module, RowInputs(csr=x_train), RowInputs(csr=classifier.featurize(request.dev)))


def encoder_spec(config: Any) -> EncoderSpec:
    """``train.model.pretrained`` as the encoder's spec."""
    pretrained = config.model.pretrained
    return EncoderSpec(sha256=pretrained.sha256, path=pretrained.path, max_tokens=pretrained.max_tokens,
                       pooling=pretrained.pooling, batch_size=pretrained.batch_size)  # fmt: skip


def _build_feature_head(request: BuildRequest, *, with_bag: bool) -> Built:
    from frugalml.models.encoder import load_encoder

    config = request.config
    spec = encoder_spec(config)
    encoder_dim = load_encoder(spec).dim  # verifies the digest before anything is embedded
    hashing, idf, x_train = _bag_features(request) if with_bag else (None, None, None)
    model_config: dict[str, Any] = {
        "num_classes": len(request.labels),
        "encoder_dim": encoder_dim,
        "buckets": config.features.buckets if with_bag else 0,
        "bag_dim": config.model.resolve_embedding_dim(_width_classes(request)) if with_bag else 0,
        "hidden_dim": config.model.hidden_dim,
        "dropout": config.model.dropout,
    }
    module = FeatureHeadClassifier(**model_config).to(request.device)
    classifier = EncoderTextClassifier(
        module, kind="hybrid" if with_bag else "pretrained", encoder=spec, hashing=hashing, idf=idf,
        sublinear_tf=config.features.sublinear_tf, text_columns=request.text_columns, labels=request.labels,
        label_names=request.label_names, model_config=model_config, store=request.store,
    )  # fmt: skip
    train_inputs = classifier.inputs(request.train, progress=config.progress)
    if x_train is not None:
        train_inputs.csr = x_train
    return Built(classifier, module, train_inputs, classifier.inputs(request.dev, progress=config.progress))


def _build_fine_tuned(request: BuildRequest) -> Built:
    """The encoder (a private copy, adapters added or every weight trainable) and the head, on token ids."""
    config = request.config
    pretrained = config.model.pretrained
    spec = encoder_spec(config)
    adapter = None
    if pretrained.fine_tuning == "adapters":
        adapter = AdapterSpec(type=pretrained.adapter.type, r=pretrained.adapter.r, alpha=pretrained.adapter.alpha,
                              dropout=pretrained.adapter.dropout,
                              target_modules=tuple(pretrained.adapter.targets()))  # fmt: skip
    from frugalml.models.encoder import load_encoder

    model_config: dict[str, Any] = {"num_classes": len(request.labels), "encoder_dim": load_encoder(spec).dim,
                                    "hidden_dim": config.model.hidden_dim, "dropout": config.model.dropout}  # fmt: skip
    tuning = FineTuneConfig(pretrained.fine_tuning, adapter, model_config)
    module = build_module(spec, tuning).to(request.device)
    classifier = FineTunedTextClassifier(module, base_encoder=spec, config=tuning, text_columns=request.text_columns,
                                         labels=request.labels, label_names=request.label_names)  # fmt: skip
    return Built(classifier, module, classifier.inputs(request.train), classifier.inputs(request.dev))


@MODEL_KINDS.register("pretrained")
def build_pretrained(request: BuildRequest) -> Built:
    """A pretrained encoder's pooled, normalised embedding -> LayerNorm -> linear (or MLP) head: the encoder frozen
    (cached features), with trained adapters, or fully fine-tuned (``train.model.pretrained.fine_tuning``)."""
    if request.config.model.pretrained.fine_tuned():
        return _build_fine_tuned(request)
    return _build_feature_head(request, with_bag=False)


@MODEL_KINDS.register("hybrid")
def build_hybrid(request: BuildRequest) -> Built:
    """The n-gram bag and the frozen encoder's embedding, concatenated into one head."""
    return _build_feature_head(request, with_bag=True)


def transformer_config(config: Any, num_classes: int) -> TransformerConfig:
    """``train.model.transformer`` as the architecture's config."""
    t = config.model.transformer
    return TransformerConfig(
        num_classes=num_classes,
        vocab=t.vocab,
        dim=t.dim,
        layers=t.layers,
        heads=t.heads,
        ffn_dim=t.ffn_dim,
        max_tokens=t.max_tokens,
        dropout=t.dropout,
        attention=t.attention.type,
        block=t.attention.block,
        w_min=t.attention.w_min,
        w_max=t.attention.w_max,
        backend=t.attention.backend,
        gradient_checkpointing=t.gradient_checkpointing,
    )


@MODEL_KINDS.register("transformer")
def build_transformer(request: BuildRequest) -> Built:
    """A small encoder trained from scratch on hashed word tokens (dense or DSWA attention) -> mean -> linear.

    Raises:
        ModelError: FlexAttention asked for on a CPU (it has no backward pass there).
    """
    attention = request.config.model.transformer.attention
    if attention.type == "dswa" and attention.backend == "flex" and request.device.type != "cuda":
        raise ModelError(
            f"attention.backend flex on {request.device.type}: FlexAttention has no backward pass on CPU (torch "
            f"{torch.__version__}), so it cannot train there; use backend auto (banded SDPA on CPU) or banded"
        )
    module = SmallTransformer(transformer_config(request.config, len(request.labels))).to(request.device)
    classifier = TransformerTextClassifier(module, text_columns=request.text_columns, labels=request.labels,
                                           label_names=request.label_names)  # fmt: skip
    return Built(classifier, module, classifier.inputs(request.train), classifier.inputs(request.dev))
