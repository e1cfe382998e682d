"""Train the bag-of-n-grams text classifier with AdamW and early stopping on the dev set.

Notation: N training rows, C classes, B hash buckets. Featurisation is fitted on training rows only
(idf), the dev set picks the epoch (lowest dev loss), and the best weights are restored at the end.
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from frugalml.errors import EmptyDatasetError, ModelError
from frugalml.models.hashing import HashingConfig, HashingFeaturizer
from frugalml.models.ngram_bag import NgramBagClassifier, TextClassifier, csr_to_bags, fit_idf, tfidf_weights
from frugalml.params import DataSchema, TrainParams, parse_params

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Args:
        name: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        The torch device.

    Raises:
        ModelError: When ``cuda`` is asked for and absent.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def autocast_context(precision: str, device: torch.device) -> Any:
    """bf16 autocast where asked for (``auto``: on CUDA devices that support bf16).

    Args:
        precision: ``auto``, ``fp32`` or ``bf16``.
        device: Where the model runs.

    Returns:
        A context manager.
    """
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()


def check_dp_compatible(module: torch.nn.Module) -> None:
    """Refuse layers that mix samples in a batch (BatchNorm), which break per-sample gradients.

    Args:
        module: The network.

    Raises:
        ModelError: Naming the offending layer.
    """
    for name, layer in module.named_modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            raise ModelError(f"layer '{name}' is {type(layer).__name__}: not DP-compatible, use LayerNorm")


def encode_labels(labels: pd.Series, schema: DataSchema) -> np.ndarray:
    """Label values -> class indices (position in ``schema.labels``).

    Args:
        labels: Label column (no missing values).
        schema: The dataset schema.

    Returns:
        (N,) int64 class indices.

    Raises:
        EmptyDatasetError: When a label is missing.
    """
    if labels.isna().any():
        raise EmptyDatasetError(f"{int(labels.isna().sum())} rows of the training data have no label")
    index = {value: position for position, value in enumerate(schema.labels)}
    return np.array(labels.astype(int).map(index), dtype=np.int64)


def _dev_loss(module: NgramBagClassifier, bags: tuple[torch.Tensor, ...], y: torch.Tensor, ctx: Any) -> tuple:
    module.eval()
    with torch.no_grad(), ctx:
        logits = module(*bags).float()
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy


def train_text_classifier(
    train: pd.DataFrame, dev: pd.DataFrame, params: dict[str, Any], data: dict[str, Any], seed: int
) -> tuple[TextClassifier, dict[str, Any]]:
    """Fit the classifier on ``train``, early-stopping on ``dev``.

    Args:
        train: Labelled training rows (``params:data`` columns).
        dev: Labelled dev rows.
        params: ``params:train`` (see :class:`frugalml.params.TrainParams`).
        data: ``params:data``.
        seed: ``params:seed``.

    Returns:
        The trained :class:`TextClassifier` (best dev epoch) and its per-epoch history as MLflow metrics
        (``train_loss``, ``dev_loss``, ``dev_accuracy``, plus ``train_seconds`` and ``best_epoch``).

    Raises:
        EmptyDatasetError: When train or dev is empty or a training class is missing.
    """
    config = parse_params(TrainParams, params, name="train")
    schema = parse_params(DataSchema, data, name="data")
    if train.empty or dev.empty:
        raise EmptyDatasetError(f"training needs rows: train has {len(train)}, dev has {len(dev)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    started = time.perf_counter()

    y_train = encode_labels(train[schema.label_column], schema)
    missing = sorted(set(range(len(schema.labels))) - set(np.unique(y_train)))
    if missing:
        raise EmptyDatasetError(f"training data has no rows of label(s) {[schema.labels[i] for i in missing]}")
    features = config.features
    hashing = HashingConfig(
        buckets=features.buckets,
        word_ngrams=features.word_ngrams,
        char_ngrams=features.char_ngrams,
        char_max_chars=features.char_max_chars,
        lowercase=features.lowercase,
    )
    featurizer = HashingFeaturizer(hashing)
    counts = featurizer.transform([train[c].fillna("").astype(str).tolist() for c in schema.text_columns])
    idf = fit_idf(counts) if features.idf else None
    x_train = tfidf_weights(counts, idf, sublinear=features.sublinear_tf)
    model_config = {
        "buckets": features.buckets,
        "embedding_dim": config.model.embedding_dim,
        "num_classes": len(schema.labels),
        "hidden_dim": config.model.hidden_dim,
        "dropout": config.model.dropout,
    }
    module = NgramBagClassifier(**model_config).to(device)
    check_dp_compatible(module)
    classifier = TextClassifier(
        module,
        hashing=hashing,
        idf=idf,
        sublinear_tf=features.sublinear_tf,
        text_columns=schema.text_columns,
        labels=schema.labels,
        label_names=schema.label_names,
        model_config=model_config,
    )
    dev_bags = csr_to_bags(classifier.featurize(dev), device)
    y_dev = torch.from_numpy(encode_labels(dev[schema.label_column], schema)).to(device)
    y_train_t = torch.from_numpy(y_train).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ctx = autocast_context(config.precision, device)

    history: dict[str, list[dict[str, float]]] = {"train_loss": [], "dev_loss": [], "dev_accuracy": []}
    best = (float("inf"), -1, copy.deepcopy(module.state_dict()))
    stale = 0
    epochs = tqdm(range(config.epochs), desc="train", disable=not config.progress)
    for epoch in epochs:
        module.train()
        order = rng.permutation(x_train.shape[0])
        total, seen = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            with ctx:
                logits = module(*csr_to_bags(x_train[batch], device))
            loss = torch.nn.functional.cross_entropy(logits.float(), y_train_t[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            seen += len(batch)
        dev_loss, dev_accuracy = _dev_loss(module, dev_bags, y_dev, ctx)
        for key, value in (("train_loss", total / seen), ("dev_loss", dev_loss), ("dev_accuracy", dev_accuracy)):
            history[key].append({"value": float(value), "step": epoch})
        epochs.set_postfix(dev_loss=f"{dev_loss:.4f}", dev_acc=f"{dev_accuracy:.4f}")
        if dev_loss < best[0] - 1e-4:
            best, stale = (dev_loss, epoch, copy.deepcopy(module.state_dict())), 0
        else:
            stale += 1
            if stale >= config.patience:
                logger.info("early stop after epoch %d (best epoch %d)", epoch, best[1])
                break
    module.load_state_dict(best[2])
    module.eval()
    seconds = time.perf_counter() - started
    logger.info("trained in %.1fs; best epoch %d, dev loss %.4f", seconds, best[1], best[0])
    metrics: dict[str, Any] = dict(history)
    metrics["train_seconds"] = {"value": seconds, "step": 0}
    metrics["best_epoch"] = {"value": float(best[1]), "step": 0}
    return classifier.to_cpu(), metrics
