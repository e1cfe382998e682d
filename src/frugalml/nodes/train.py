"""Train the bag-of-n-grams text classifier with AdamW and early stopping on the dev set.

Notation: N training rows, C classes, B hash buckets. Featurisation is fitted on training rows only
(idf), the dev set picks the epoch (lowest dev loss), and the best weights are restored at the end.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
import os
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from frugalml.errors import EmptyDatasetError, ModelError, ParameterError, SchemaError
from frugalml.models.hashing import HashingConfig, HashingFeaturizer
from frugalml.models.ngram_bag import NgramBagClassifier, TextClassifier, csr_to_bags, fit_idf, tfidf_weights
from frugalml.params import DataSchema, PrivacyParams, SplitParams, TrainParams, parse_params

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


def soft_targets(frame: pd.DataFrame, schema: DataSchema, y: np.ndarray) -> np.ndarray:
    """Training targets as class distributions: ``label_prob_<value>`` where given, one-hot elsewhere.

    Rows without soft-label columns (hand labels) get the one-hot of their hard label, so a training set
    that mixes hand and weak labels trains on both.

    Args:
        frame: Training rows.
        schema: The dataset schema.
        y: Hard class indices of ``frame`` (:func:`encode_labels`).

    Returns:
        (N, C) float32 rows summing to 1.

    Raises:
        SchemaError: When given soft labels are negative, NaN-mixed within a row, or do not sum to 1.
    """
    from frugalml.labels import prob_columns

    targets = np.eye(len(schema.labels), dtype=np.float32)[y]
    columns = prob_columns(schema.labels)
    present = [c for c in columns if c in frame.columns]
    if not present:
        return targets
    if len(present) != len(columns):
        raise SchemaError(f"soft labels need every column {columns}; the training data has only {present}")
    given = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    some, full = np.isnan(given).any(axis=1), np.isnan(given).all(axis=1)
    rows = ~some
    if (some & ~full).any() or (given[rows] < 0).any() or not np.allclose(given[rows].sum(axis=1), 1, atol=1e-4):
        raise SchemaError(f"soft labels in {columns} must be non-negative, complete per row and sum to 1")
    targets[rows] = given[rows]
    return targets


def _dev_loss(module: NgramBagClassifier, bags: tuple[torch.Tensor, ...], y: torch.Tensor, ctx: Any) -> tuple:
    module.eval()
    with torch.no_grad(), ctx:
        logits = module(*bags).float()
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy


def train_text_classifier(
    train: pd.DataFrame, dev: pd.DataFrame, params: dict[str, Any], data: dict[str, Any], seed: int
) -> tuple[TextClassifier, dict[str, Any], dict[str, Any]]:
    """Fit the classifier on ``train``, early-stopping on ``dev``.

    Args:
        train: Labelled training rows (``params:data`` columns).
        dev: Labelled dev rows.
        params: ``params:train`` (see :class:`frugalml.params.TrainParams`).
        data: ``params:data``.
        seed: ``params:seed``.

    Returns:
        The trained :class:`TextClassifier` (best dev epoch), its per-epoch history as MLflow metrics
        (``train_loss``, ``dev_loss``, ``dev_accuracy``, with DP ``epsilon`` and ``clipped_share``, plus
        ``train_seconds`` and ``best_epoch``) and the privacy report (``{"enabled": False}`` without DP).

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
    idf = fit_idf(counts) if config.uses_idf() else None
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
    y_train_t = torch.from_numpy(soft_targets(train, schema, y_train) if config.targets == "soft" else y_train).to(
        device
    )
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ctx = autocast_context(config.precision, device)

    history: dict[str, list[dict[str, float]]] = {"train_loss": [], "dev_loss": [], "dev_accuracy": []}
    batch_size = config.resolve_batch_size(x_train.shape[0])
    if config.batch_size == "auto":
        logger.info("train.batch_size auto: %d for %d training rows", batch_size, x_train.shape[0])
    private = PrivateTraining(config.privacy, rows=x_train.shape[0], batch_size=batch_size,
                              epochs=config.epochs, seed=seed) if config.privacy.enabled else None  # fmt: skip
    best = (float("inf"), -1, copy.deepcopy(module.state_dict()))
    stale = 0
    epochs = tqdm(range(config.epochs), desc="train (DP)" if private else "train", disable=not config.progress)
    for epoch in epochs:
        module.train()
        total, seen = 0.0, 0
        for batch in private.batches(rng) if private else _shuffled_batches(rng, x_train.shape[0], batch_size):
            if private:
                stats = private.step(module, optimizer, lambda rows: module(*csr_to_bags(x_train[rows], device)),
                                     batch, y_train_t)  # fmt: skip
                total, seen = total + stats["loss"] * len(batch), seen + len(batch)
                continue
            with ctx:
                logits = module(*csr_to_bags(x_train[batch], device))
            loss = torch.nn.functional.cross_entropy(logits.float(), y_train_t[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            seen += len(batch)
        dev_loss, dev_accuracy = _dev_loss(module, dev_bags, y_dev, ctx)
        for key, value in (
            ("train_loss", total / max(seen, 1)),
            ("dev_loss", dev_loss),
            ("dev_accuracy", dev_accuracy),
        ):
            history[key].append({"value": float(value), "step": epoch})
        if private:
            for key, value in private.epoch_metrics().items():
                history.setdefault(key, []).append({"value": value, "step": epoch})
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
    report = private.report() if private else {"enabled": False}
    return classifier.to_cpu(), metrics, report


def record_training_set(train: pd.DataFrame, privacy_report: dict[str, Any]) -> pd.DataFrame:
    """The rows a model was trained on, passed on once its training has succeeded.

    ``train_set`` is the next run's drift reference, so it is written by this node, which takes the training
    node's report as an input: Kedro runs it only after training returned, and a refused or failed training
    leaves the previous ``train_set`` (the current model's rows) in place.

    Args:
        train: The gated training rows (the training node's input).
        privacy_report: The training node's privacy report (only orders this node after training).

    Returns:
        ``train`` unchanged.
    """
    return train


def _batch_too_large(batch_size: int, rows: int, what: str) -> str:
    auto = TrainParams().resolve_batch_size(rows)  # what `auto` gives under DP
    return (
        f"train.batch_size {batch_size} is larger than {what} (under DP it is the expected Poisson batch, "
        f"sampling rate batch_size / N <= 1): set --params train.batch_size=auto ({auto} here: a quarter of N on "
        f"small tables) or a number up to {rows}"
    )


def max_training_rows(frame: pd.DataFrame, split: dict[str, Any], data: dict[str, Any]) -> int | None:
    """An upper bound of the training rows a table gives after the split (before gates, split and cleaning).

    Mirrors the arithmetic of :func:`frugalml.nodes.split.split_dataset` (test, gold dev and dev sets taken
    from the labelled rows) and counts every unlabelled row as a possible weak label. Gates, validation,
    de-duplication and cleaning only remove rows, so the training set is never larger than this.

    Args:
        frame: ``emails`` or ``emails_validated``.
        split: ``params:split``.
        data: ``params:data``.

    Returns:
        The bound, or None when the table lacks a column the split needs (the split names it).
    """
    config = parse_params(SplitParams, split, name="split")
    schema = parse_params(DataSchema, data, name="data")
    if schema.label_column not in frame.columns:
        return None
    labelled = frame[schema.label_column].notna()
    pool = int((~labelled).sum())
    if config.strategy == "random":
        rest = int(labelled.sum()) - math.ceil(config.test_fraction * int(labelled.sum()))
    else:
        column = config.temporal.column or schema.group_column
        if column is None or column not in frame.columns:
            return None
        values = frame.loc[labelled, column].astype(str)

        def matches(patterns: list[str]) -> pd.Series:
            return values.map(lambda v: any(fnmatch.fnmatchcase(v, p) for p in patterns))

        in_train = matches(config.temporal.train_patterns)
        in_test = matches(config.temporal.test_patterns) & ~in_train
        rest, pool = int(in_train.sum()), pool + int((~in_train & ~in_test).sum())
    gold = min(config.gold_dev_size, rest // 10)
    rest -= gold if gold >= 2 else 0
    return max(rest - math.ceil(config.dev_fraction * rest), 0) + pool


def check_training_rows(params: dict[str, Any], rows: int, *, source: str) -> None:
    """Refuse, before any work, a training that at most ``rows`` training rows cannot run.

    Under DP an explicit ``train.batch_size`` must not exceed the training rows, and an explicit
    ``train.privacy.target_delta`` must be below 1/N; both are otherwise found only by the training node,
    after the gates, the split and the cleaning have run.

    Args:
        params: ``params:train``.
        rows: An upper bound of the training rows (e.g. :func:`max_training_rows`).
        source: Where the bound comes from, for the message (e.g. ``of 'train_clean'``).

    Raises:
        ParameterError: Naming the parameter, the bound and the value to set.
    """
    config = parse_params(TrainParams, params, name="train")
    if not config.privacy.enabled or rows < 1:
        return  # no rows at all: the stage that finds them empty says so
    if config.batch_size != "auto" and config.batch_size > rows:
        raise ParameterError(_batch_too_large(config.batch_size, rows, f"the at most {rows} training rows {source}"))
    delta = config.privacy.target_delta
    if delta is not None and delta >= 1.0 / rows:
        raise ParameterError(
            f"train.privacy.target_delta {delta:g} must be below 1/N, and the training set {source} has at most "
            f"N = {rows} rows (1/N = {1.0 / rows:g}); set --params train.privacy.target_delta=null (1 / (10 N))"
        )


def _shuffled_batches(rng: np.random.Generator, rows: int, batch_size: int) -> list[np.ndarray]:
    order = rng.permutation(rows)
    return [order[start : start + batch_size] for start in range(0, rows, batch_size)]


class PrivateTraining:
    """DP-SGD bookkeeping: Poisson batches, calibrated noise, ghost-norm clipping, the accountant.

    The noise multiplier is calibrated (Opacus accountant ``prv`` or ``rdp``) so that ``epochs`` passes of
    Poisson sampling at rate q = batch_size / N reach ``target_epsilon`` at ``target_delta``; the epsilon
    actually spent (fewer steps when early stopping stops) is what the report gives.
    """

    def __init__(self, config: PrivacyParams, *, rows: int, batch_size: int, epochs: int, seed: int) -> None:
        """Validate against the data and calibrate the noise.

        Args:
            config: ``params:train.privacy``.
            rows: N, training rows.
            batch_size: Expected (Poisson) batch size.
            epochs: Planned epochs.
            seed: Seeds the noise unless ``secure_mode``.

        Raises:
            ParameterError: delta >= 1/N, or a batch larger than the dataset.
        """
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier

        if batch_size > rows:
            raise ParameterError(_batch_too_large(batch_size, rows, f"the {rows} training rows"))
        self.delta = config.target_delta if config.target_delta is not None else 1.0 / (10 * rows)
        if self.delta >= 1.0 / rows:
            raise ParameterError(
                f"train.privacy.target_delta {self.delta:g} must be below 1/N = {1.0 / rows:g} (N = {rows} rows)"
            )
        if not config.secure_mode:
            logger.warning("DP noise comes from a seeded PRNG (secure_mode: false); use secure_mode for production")
        self.config, self.rows, self.sample_rate = config, rows, batch_size / rows
        self.batch_size, self.expected_batch_size = batch_size, float(batch_size)
        self.noise_multiplier = get_noise_multiplier(
            target_epsilon=config.target_epsilon, target_delta=self.delta, sample_rate=self.sample_rate,
            steps=epochs * round(1 / self.sample_rate), accountant=config.accountant,
        )  # fmt: skip
        self.accountant = create_accountant(mechanism=config.accountant)
        self.generator = torch.Generator()
        self.generator.manual_seed(int.from_bytes(os.urandom(8), "little") if config.secure_mode else seed)
        self.steps, self._clipped, self._batches, self.physical_steps = 0, 0.0, 0, 0

    def batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """One epoch of Poisson-sampled batches (each row in each batch with probability q).

        Args:
            rng: The sampling generator.

        Returns:
            round(1/q) index arrays (possibly empty).
        """
        return [np.flatnonzero(rng.random(self.rows) < self.sample_rate) for _ in range(round(1 / self.sample_rate))]

    def step(
        self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, forward: Any, batch: np.ndarray,
        targets: torch.Tensor,
    ) -> dict:  # fmt: skip
        """One clipped, noised step, accounted; in physical chunks when the batch is larger than
        ``max_physical_batch_size`` (virtual steps: one noisy update per logical batch).

        Args:
            module: The model.
            optimizer: Its optimiser.
            forward: Row indices -> logits of those rows.
            batch: Row indices of the (Poisson) batch.
            targets: Targets of every training row (indexed by ``batch``).

        Returns:
            The step's loss and clipped share.
        """
        from frugalml.nodes.privacy import dp_sgd_step

        size = self.config.max_physical_batch_size or max(len(batch), 1)
        chunks = [batch[start : start + size] for start in range(0, len(batch), size)] or [batch]
        parts = [(lambda rows=rows: forward(rows), targets[rows]) for rows in chunks]
        stats = dp_sgd_step(module, optimizer, parts[0][0], parts[0][1], max_grad_norm=self.config.max_grad_norm,
                            noise_multiplier=self.noise_multiplier, expected_batch_size=self.expected_batch_size,
                            generator=self.generator, microbatches=parts)  # fmt: skip
        self.physical_steps += len(chunks)
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.steps += 1
        self._clipped += stats["clipped_share"]
        self._batches += 1
        return stats

    def epsilon(self) -> float:
        """Epsilon spent so far at the configured delta."""
        return float(self.accountant.get_epsilon(delta=self.delta)) if self.steps else 0.0

    def epoch_metrics(self) -> dict[str, float]:
        """Epsilon spent and the share of clipped samples in the epoch that just ended."""
        clipped = self._clipped / max(self._batches, 1)
        self._clipped, self._batches = 0.0, 0
        return {"epsilon": self.epsilon(), "clipped_share": clipped}

    def report(self) -> dict[str, Any]:
        """The privacy report of the run."""
        return {
            "enabled": True,
            "epsilon": self.epsilon(),
            "target_epsilon": self.config.target_epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.config.max_grad_norm,
            "batch_size": self.batch_size,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "physical_steps": self.physical_steps,
            "max_physical_batch_size": self.config.max_physical_batch_size,
            "accountant": self.config.accountant,
            "secure_mode": self.config.secure_mode,
            "clipping": "per-sample, ghost norms (frugalml.nodes.privacy)",
        }
