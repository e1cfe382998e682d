"""Train the model zoo's ``train.model.kind`` with AdamW or DP-SGD and early stopping on the dev set.

Notation: N training rows, C classes, B hash buckets. Featurisation is fitted on training rows only
(idf), the dev set picks the epoch (lowest dev loss), and the best weights are restored at the end.
Every kind trains here; the kinds themselves live in :mod:`frugalml.models.zoo`.
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from frugalml.errors import EmptyDatasetError, ModelError, ParameterError, SchemaError
from frugalml.models.embedding_store import EmbeddingStore, shared_memory_store
from frugalml.models.feature_head import RowInputs
from frugalml.models.multitask import (
    ALL_OUTPUTS,
    MultiTaskLoss,
    TaskSpec,
    TaskTargets,
    attach_task_heads,
    check_served_columns,
    task_output,
    task_targets,
)
from frugalml.models.zoo import MODEL_KINDS, BuildRequest
from frugalml.nodes.preflight import check_dp_signal, check_training_rows, max_training_rows
from frugalml.params import DataSchema, TrainParams, parse_params
from frugalml.privacy.training import PrivateTraining, check_dp_compatible
from frugalml.tracking import as_history, as_metrics

logger = logging.getLogger(__name__)

__all__ = [
    "PrivateTraining",
    "autocast_context",
    "check_dp_compatible",
    "check_training_rows",
    "encode_labels",
    "max_training_rows",
    "physical_batch_size",
    "record_training_set",
    "resolve_device",
    "soft_targets",
    "train_text_classifier",
]


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
    """bf16 or fp16 autocast where asked for (``auto``: bf16 on CUDA devices that support it).

    Args:
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (the loop adds a GradScaler for fp16).
        device: Where the model runs.

    Returns:
        A context manager.
    """
    if precision == "fp16":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()


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


def _dev_loss(run: _Setup) -> tuple[float, float, dict[str, float]]:
    """Dev loss and accuracy of the main task (in chunks of ``run.chunk`` rows when the model re-runs an encoder),
    and each extra task's dev accuracy (``dev_task_<name>_accuracy``, on its labelled dev rows)."""
    run.module.eval()
    size = run.chunk or max(len(run.dev_inputs), 1)
    logits = []
    with torch.no_grad(), run.ctx, task_output(run.module, ALL_OUTPUTS):
        for start in range(0, len(run.dev_inputs), size):
            logits.append(run.module(*run.dev_inputs.take(slice(start, start + size), run.device)).float())
    joined = torch.cat(logits)
    classes = len(run.classifier.labels)
    main = joined[:, :classes]
    loss = torch.nn.functional.cross_entropy(main, run.y_dev).item()
    accuracy = (main.argmax(dim=1) == run.y_dev).float().mean().item()
    extra: dict[str, float] = {}
    start = classes
    for t, task in enumerate(run.tasks):
        part, labels = joined[:, start : start + len(task.labels)], run.dev_tasks[:, t]  # type: ignore[index]
        start += len(task.labels)
        known = labels >= 0
        if known.any():
            extra[f"dev_task_{task.name}_accuracy"] = (part[known].argmax(dim=1) == labels[known]).float().mean().item()
    return loss, accuracy, extra


def _per_sample_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, targets, reduction="none")


def _task_labels(
    train: pd.DataFrame, dev: pd.DataFrame, tasks: list[TaskSpec], schema: DataSchema
) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) class indices of the extra tasks for the training and dev rows (-1: no label), checked before any
    model is built.

    Raises:
        SchemaError: A task reads the main label or a text column, its column is missing or holds undeclared values.
        EmptyDatasetError: A task's class has no training row.
    """
    try:
        check_served_columns(schema.label_names or [str(label) for label in schema.labels], tasks)
    except ValueError as error:
        raise SchemaError(f"train.multitask: {error}") from error
    own = {schema.label_column: "the main label column (data.label_column)", **{
        column: "a text column (data.text_columns)" for column in schema.text_columns}}  # fmt: skip
    columns: list[list[np.ndarray]] = [[], []]
    for task in tasks:
        if task.column in own:
            raise SchemaError(
                f"task {task.name!r} reads column {task.column!r}, {own[task.column]}; name another column"
            )
        for side, (frame, where) in enumerate(((train, "the training rows"), (dev, "the dev rows"))):
            columns[side].append(task_targets(frame, task, where=where, id_column=schema.id_column))
        seen = set(np.unique(columns[0][-1]).tolist())
        missing = [task.labels[k] for k in range(len(task.labels)) if k not in seen]
        if missing:
            raise EmptyDatasetError(
                f"task {task.name!r}: the training rows have no row of label(s) {missing} (column {task.column!r}"
                f"{', through its map' if task.mapping else ''}); every declared label needs training rows"
            )
    return tuple(
        np.stack(side, axis=1) if side else np.zeros((len(frame), 0), dtype=np.int64)  # type: ignore[return-value]
        for side, frame in zip(columns, (train, dev), strict=True)
    )


@dataclass
class _Setup:
    """What the epochs need: the model, its optimiser and the inputs of both sets."""

    classifier: Any  # the kind's inference bundle (frugalml.models.zoo.Classifier)
    module: torch.nn.Module
    train_inputs: RowInputs
    y_train: torch.Tensor
    dev_inputs: RowInputs
    y_dev: torch.Tensor
    optimizer: torch.optim.Optimizer
    ctx: Any
    device: torch.device
    chunk: int | None = None  # rows per forward pass (gradient accumulation); None: a batch at once
    scaler: Any = None  # torch.amp.GradScaler under fp16 autocast (loss scaling against fp16 underflow)
    loss: Any = _per_sample_cross_entropy  # (logits, targets) -> (N,) per-sample losses
    tasks: list[TaskSpec] = field(default_factory=list)  # train.multitask's extra tasks
    dev_tasks: torch.Tensor | None = None  # (N_dev, T) their dev class indices (-1: no label)


def _setup(
    train: pd.DataFrame, dev: pd.DataFrame, config: TrainParams, schema: DataSchema, store: EmbeddingStore | None
) -> _Setup:
    """Build the kind's model and inputs (features fitted on ``train`` only; torch's RNG: the initial weights)
    and the optimiser.

    Raises:
        EmptyDatasetError: When a training class is missing.
    """
    device = resolve_device(config.device)
    y_train = encode_labels(train[schema.label_column], schema)
    missing = sorted(set(range(len(schema.labels))) - set(np.unique(y_train)))
    if missing:
        raise EmptyDatasetError(f"training data has no rows of label(s) {[schema.labels[i] for i in missing]}")
    tasks = config.multitask.specs()
    task_train, task_dev = _task_labels(train, dev, tasks, schema)  # before the (expensive) build
    request = BuildRequest(train, dev, config, list(schema.text_columns), list(schema.labels),
                           list(schema.label_names), device, store or shared_memory_store())  # fmt: skip
    built = MODEL_KINDS.get(config.model.kind)(request)
    attach_task_heads(built.module, tasks)
    built.classifier.tasks = tasks
    check_dp_compatible(built.module)
    y_dev = torch.from_numpy(encode_labels(dev[schema.label_column], schema)).to(device)
    main = torch.from_numpy(soft_targets(train, schema, y_train) if config.targets == "soft" else y_train).to(device)
    targets: Any = TaskTargets(main, torch.from_numpy(task_train).to(device)) if tasks else main
    loss = MultiTaskLoss(len(schema.labels), tasks, config.multitask.main_weight) if tasks else \
        _per_sample_cross_entropy  # fmt: skip
    optimizer = torch.optim.AdamW(_parameter_groups(built.module, config), lr=config.lr,
                                  weight_decay=config.weight_decay)  # fmt: skip
    scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
    return _Setup(built.classifier, built.module, built.train_inputs, targets, built.dev_inputs, y_dev, optimizer,
                  autocast_context(config.precision, device), device, physical_batch_size(config), scaler, loss,
                  tasks, torch.from_numpy(task_dev).to(device))  # fmt: skip


def physical_batch_size(config: TrainParams) -> int | None:
    """Rows per forward pass: ``privacy.max_physical_batch_size`` when set, else the encoder's ``batch_size`` for a
    fine-tuned encoder (it re-runs in every step; a 256-row batch of 128 tokens would hold gigabytes of
    activations) or the transformer's ``batch_size``; None (the whole batch) otherwise."""
    if config.privacy.max_physical_batch_size:
        return config.privacy.max_physical_batch_size
    pretrained = config.model.pretrained
    if config.model.kind == "transformer":
        return config.model.transformer.batch_size
    return pretrained.batch_size if config.model.kind == "pretrained" and pretrained.fine_tuned() else None


def _parameter_groups(module: torch.nn.Module, config: TrainParams) -> list[dict[str, Any]]:
    """AdamW parameter groups: the head at ``train.lr``; a fine-tuned encoder's weights at its own rate."""
    from frugalml.models.fine_tune import EncoderClassifier

    if not isinstance(module, EncoderClassifier):
        group: dict[str, Any] = {"params": [p for p in module.parameters() if p.requires_grad]}
        if config.model.kind == "transformer" and config.model.transformer.lr is not None:
            group["lr"] = config.model.transformer.lr
        return [group]
    return [{"params": module.head_parameters()},
            {"params": module.encoder_parameters(), "lr": config.model.pretrained.resolve_encoder_lr()}]  # fmt: skip


def activation_mb(run: _Setup, config: TrainParams, batch_size: int) -> float | None:
    """MiB of activations one physical training step holds for its backward pass, on a made-up batch of the
    physical size at the longest inputs (``max_tokens``), so the figure depends on the parameters only, never on
    the private rows (:mod:`frugalml.models.memory`; checkpointed blocks counted as the backward recomputes them).
    None for the kinds that read bag features (their activations are the (N, d) bag output)."""
    from frugalml.models.memory import saved_bytes, transformer_activation_bytes
    from frugalml.models.transformer import SmallTransformer

    rows = max(1, min(run.chunk or batch_size, batch_size))
    sample = run.train_inputs
    if sample.csr is not None:
        return None
    if sample.tokens is not None:
        steps = config.model.transformer.max_tokens if isinstance(run.module, SmallTransformer) else \
            config.model.pretrained.max_tokens  # fmt: skip
        inputs: tuple[torch.Tensor, ...] = (torch.ones(rows, steps, dtype=torch.long, device=run.device),) * 2
    else:
        inputs = (torch.zeros(rows, *sample.dense.shape[1:], dtype=torch.float32, device=run.device),)  # type: ignore[union-attr]
    run.module.train()
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []), run.ctx:
        if isinstance(run.module, SmallTransformer):
            held = transformer_activation_bytes(run.module, *inputs)
        else:
            held = saved_bytes(run.module, lambda: run.module(*inputs))[0]
    return held / 2**20


def training_memory_mb(module: torch.nn.Module, activations_mb: float, *, private: bool) -> float:
    """Estimated MiB of a training step: every weight, plus a gradient and AdamW's two moments per trainable
    weight, plus one physical step's activations (twice under DP: the book-keeping step also holds each layer's
    output gradient)."""
    weights = sum(p.numel() * p.element_size() for p in module.parameters())
    trainable = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return (weights + 3 * trainable) / 2**20 + activations_mb * (2 if private else 1)


def check_memory(module: torch.nn.Module, activations_mb: float | None, config: TrainParams) -> None:
    """Refuse training whose estimate exceeds ``train.memory_limit_mb``, with the estimate and its parts.

    Raises:
        ParameterError: Above the limit.
    """
    limit_mb = config.memory_limit_mb
    if limit_mb is None:
        return
    activations_mb = activations_mb or 0.0
    estimate = training_memory_mb(module, activations_mb, private=config.privacy.enabled)
    if estimate > limit_mb:
        weights = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        raise ParameterError(
            f"the model needs about {estimate:,.0f} MiB to train, above train.memory_limit_mb {limit_mb:,.0f}: "
            f"{weights:,} weights ({trainable:,} trainable, each with a gradient and two AdamW moments) and "
            f"{activations_mb:,.0f} MiB of activations per physical step at max_tokens"
            f"{' (twice that under DP)' if config.privacy.enabled else ''}. Lower the physical batch "
            "(transformer.batch_size, pretrained.batch_size or privacy.max_physical_batch_size), max_tokens or the "
            "model's size, use adapters instead of full fine-tuning, or raise the limit"
        )


def _train_epoch(run: _Setup, batches: list[np.ndarray], private: PrivateTraining | None) -> float:
    """One pass over ``batches``; the mean training loss."""
    module, inputs, device = run.module, run.train_inputs, run.device
    module.train()
    total, seen = 0.0, 0

    def forward(rows: np.ndarray) -> torch.Tensor:
        with run.ctx:
            return module(*inputs.take(rows, device))  # type: ignore[no-any-return]

    with task_output(module, ALL_OUTPUTS):  # a multi-task model trains every head (one loss per row)
        for batch in batches:
            if private:  # in fp32: bf16 rounding of the clip factors could let a clipped gradient exceed the norm
                stats = private.step(module, run.optimizer, lambda rows: module(*inputs.take(rows, device)), batch,
                                     run.y_train, loss=run.loss)  # fmt: skip
                total, seen = total + stats["loss"] * len(batch), seen + len(batch)
                continue
            total += _plain_step(run, forward, batch)
            seen += len(batch)
    return total / max(seen, 1)


def _plain_step(run: _Setup, forward: Any, batch: np.ndarray) -> float:
    """One AdamW step on ``batch`` (in physical chunks, gradients accumulated); the batch's summed loss."""
    total = 0.0
    run.optimizer.zero_grad(set_to_none=True)
    size = run.chunk or max(len(batch), 1)
    for start in range(0, len(batch), size):  # gradient accumulation: the mean over the whole batch
        rows = batch[start : start + size]
        loss = run.loss(forward(rows).float(), run.y_train[rows]).mean() * (len(rows) / len(batch))
        (run.scaler.scale(loss) if run.scaler else loss).backward()
        total += loss.item() * len(batch)
    if run.scaler:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    return total


def _fit(
    run: _Setup, config: TrainParams, private: PrivateTraining | None, rng: np.random.Generator, batch_size: int
) -> tuple[tuple[float, int, dict[str, Any]], dict[str, list[tuple[int, float]]]]:
    """The epochs with early stopping on the dev loss: the best (dev loss, epoch, weights) and the curves."""
    curves: dict[str, list[tuple[int, float]]] = {"train_loss": [], "dev_loss": [], "dev_accuracy": []}
    best = (float("inf"), -1, copy.deepcopy(run.module.state_dict()))
    stale = 0
    epochs = tqdm(range(config.epochs), desc="train (DP)" if private else "train", disable=not config.progress)
    rows = len(run.train_inputs)
    for epoch in epochs:
        batches = private.batches(rng) if private else _shuffled_batches(rng, rows, batch_size)
        train_loss = _train_epoch(run, batches, private)
        dev_loss, dev_accuracy, task_figures = _dev_loss(run)
        figures = {"train_loss": train_loss, "dev_loss": dev_loss, "dev_accuracy": dev_accuracy, **task_figures}
        for key, value in {**figures, **(private.epoch_metrics() if private else {})}.items():
            curves.setdefault(key, []).append((epoch, value))
        epochs.set_postfix(dev_loss=f"{dev_loss:.4f}", dev_acc=f"{dev_accuracy:.4f}")
        if dev_loss < best[0] - 1e-4:
            best, stale = (dev_loss, epoch, copy.deepcopy(run.module.state_dict())), 0
        else:
            stale += 1
            if stale >= config.patience:
                logger.info("early stop after epoch %d (best epoch %d)", epoch, best[1])
                break
    return best, curves


def train_text_classifier(  # noqa: PLR0917  # a Kedro node: its inputs come positionally
    train: pd.DataFrame,
    dev: pd.DataFrame,
    params: dict[str, Any],
    data: dict[str, Any],
    seed: int,
    encoder_cache: EmbeddingStore | None = None,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Fit the model of ``train.model.kind`` on ``train``, early-stopping on ``dev``.

    Args:
        train: Labelled training rows (``params:data`` columns).
        dev: Labelled dev rows.
        params: ``params:train`` (see :class:`frugalml.params.TrainParams`).
        data: ``params:data``.
        seed: ``params:seed``.
        encoder_cache: The encoder-feature cache (catalog ``encoder_cache``) of the kinds that embed text;
            ``None``: an in-memory cache.

    Returns:
        The trained model of the best dev epoch (a :class:`TextClassifier` for ``ngram_bag``), its per-epoch
        history as MLflow metrics
        (``train_loss``, ``dev_loss``, ``dev_accuracy``, with DP ``epsilon`` and ``clipped_share``, plus
        ``train_seconds``, ``best_epoch``, ``activation_mb_per_step`` (activations one physical step holds for
        backward) and on CUDA ``peak_gpu_memory_mb``) and the privacy report (``{"enabled": False}`` without DP).

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
    started = time.perf_counter()
    run = _setup(train, dev, config, schema, encoder_cache)
    rows = len(run.train_inputs)
    batch_size = config.resolve_batch_size(rows)
    if config.batch_size == "auto":
        logger.info("train.batch_size auto: %d for %d training rows", batch_size, rows)
    private = PrivateTraining(config.privacy, rows=rows, batch_size=batch_size, epochs=config.epochs, seed=seed,
                              physical_batch_size=run.chunk) if config.privacy.enabled else None  # fmt: skip
    held = activation_mb(run, config, batch_size)
    check_memory(run.module, held, config)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    signal = None
    if private is not None:  # the check of the preflight hook, on the real N and the built model
        trainable = sum(p.numel() for p in run.module.parameters() if p.requires_grad)
        signal = check_dp_signal(config, rows, len(schema.labels), source=f"of {rows} rows",
                                 noise_multiplier=private.noise_multiplier, trainable=trainable).ratio  # fmt: skip
    best, curves = _fit(run, config, private, rng, batch_size)
    run.module.load_state_dict(best[2])
    run.module.eval()
    seconds = time.perf_counter() - started
    logger.info("trained in %.1fs; best epoch %d, dev loss %.4f", seconds, best[1], best[0])
    metrics: dict[str, Any] = {key: as_history(points) for key, points in curves.items()}
    metrics.update(as_metrics({"train_seconds": seconds, "best_epoch": best[1], "activation_mb_per_step": held}))
    if run.device.type == "cuda":
        metrics.update(as_metrics({"peak_gpu_memory_mb": torch.cuda.max_memory_allocated(run.device) / 2**20}))
    if signal is not None:
        metrics.update(as_metrics({"dp_signal_to_noise": signal}))
    report = private.report() if private else {"enabled": False}
    return run.classifier.to_cpu(), metrics, report


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


def _shuffled_batches(rng: np.random.Generator, rows: int, batch_size: int) -> list[np.ndarray]:
    order = rng.permutation(rows)
    return [order[start : start + batch_size] for start in range(0, rows, batch_size)]
