"""Checks before training: the rows a table can give, and whether DP-SGD can learn from them.

The preflight hook (:class:`frugalml.hooks.TrainingPreflightHook`) runs :func:`check_training_rows` on the first
table a run loads, before the gates; the training node runs :func:`check_dp_signal` again on the real N.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import warnings
from typing import Any

import pandas as pd
import torch

from frugalml.errors import ParameterError
from frugalml.models.ngram_bag import NgramBagClassifier
from frugalml.params import DataSchema, SplitParams, TrainParams, parse_params
from frugalml.privacy.signal import SignalToNoise, calibrated_noise_multiplier, signal_to_noise
from frugalml.privacy.training import batch_too_large

logger = logging.getLogger("frugalml.nodes.train")  # the trainer's logger: one place to read training messages


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


def check_training_rows(
    params: dict[str, Any], rows: int, *, source: str, data: dict[str, Any] | None = None
) -> SignalToNoise | None:
    """Refuse, before any work, a training that at most ``rows`` training rows cannot run (or cannot learn from).

    Under DP an explicit ``train.batch_size`` must not exceed the training rows, and an explicit
    ``train.privacy.target_delta`` must be below 1/N; both are otherwise found only by the training node,
    after the gates, the split and the cleaning have run. Then the DP signal-to-noise bound
    (:func:`check_dp_signal`) is checked for N = ``rows``: it only grows with N, so a bound computed from an
    upper bound of the rows is itself optimistic, and a refusal is never premature.

    Args:
        params: ``params:train``.
        rows: An upper bound of the training rows (e.g. :func:`max_training_rows`).
        source: Where the bound comes from, for the message (e.g. ``of 'train_clean'``).
        data: ``params:data`` (the number of classes sizes the model); default: the project's defaults.

    Returns:
        The signal-to-noise estimate under DP, else None.

    Raises:
        ParameterError: Naming the parameter, the bound and the value to set.
    """
    config = parse_params(TrainParams, params, name="train")
    if not config.privacy.enabled or rows < 1:
        return None  # no rows at all: the stage that finds them empty says so
    if config.batch_size != "auto" and config.batch_size > rows:
        raise ParameterError(batch_too_large(config.batch_size, rows, f"the at most {rows} training rows {source}"))
    delta = config.privacy.target_delta
    if delta is not None and delta >= 1.0 / rows:
        raise ParameterError(
            f"train.privacy.target_delta {delta:g} must be below 1/N, and the training set {source} has at most "
            f"N = {rows} rows (1/N = {1.0 / rows:g}); set --params train.privacy.target_delta=null (1 / (10 N))"
        )
    schema = parse_params(DataSchema, data or {}, name="data")
    return check_dp_signal(config, rows, len(schema.labels), source=source)


def _trainable_parameters(config: TrainParams, num_classes: int) -> int:
    from frugalml.models.multitask import attach_task_heads

    module: torch.nn.Module
    width = num_classes + config.multitask.extra_width()  # the bag width `auto` gives (frugalml.models.zoo)
    if config.model.kind == "transformer":
        from frugalml.models.transformer import SmallTransformer
        from frugalml.models.zoo import transformer_config

        with torch.device("meta"):  # counted, never allocated
            module = SmallTransformer(transformer_config(config, num_classes))
    elif config.model.kind in (
        "pretrained",
        "hybrid",
    ):  # the head (the train node counts adapters once built)  # the head only: the encoder is frozen
        from frugalml.models.encoder import encoder_hidden_size
        from frugalml.models.feature_head import FeatureHeadClassifier

        bag = config.model.kind == "hybrid"
        module = FeatureHeadClassifier(
            num_classes, encoder_dim=encoder_hidden_size(config.model.pretrained.path),
            buckets=config.features.buckets if bag else 0,
            bag_dim=config.model.resolve_embedding_dim(width) if bag else 0, hidden_dim=config.model.hidden_dim,
        )  # fmt: skip
    else:
        module = NgramBagClassifier(config.features.buckets, config.model.resolve_embedding_dim(width),
                                    num_classes, hidden_dim=config.model.hidden_dim)  # fmt: skip
    attach_task_heads(module, config.multitask.specs())  # train.multitask's heads are trainable weights too
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _fewer_weights(config: TrainParams) -> str:
    """The kind's own lever for fewer trainable weights (the bound grows with 1 / sqrt(d))."""
    model = config.model
    if model.kind == "transformer":
        t = model.transformer
        return (f"train.model.transformer.vocab {t.vocab} -> {max(16, t.vocab // 4)} and dim {t.dim} -> "
                f"{max(8, t.dim // 2)}")  # fmt: skip
    if model.kind == "pretrained" and model.pretrained.fine_tuned():
        return "train.model.pretrained.fine_tuning: adapters with a smaller adapter.r, or frozen"
    if model.kind == "pretrained":
        return "train.model.hidden_dim: 0, a linear head"
    return f"train.features.buckets {config.features.buckets} -> {config.features.buckets // 4} doubles it"


def check_dp_signal(
    config: TrainParams,
    rows: int,
    num_classes: int,
    *,
    source: str,
    noise_multiplier: float | None = None,
    trainable: int | None = None,
) -> SignalToNoise:
    """Can DP-SGD learn from ``rows`` rows with these parameters? Warn or refuse, with the numbers and remedies.

    The bound (:mod:`frugalml.privacy.signal`): sqrt(T) x B / (sigma x sqrt(d)), with sigma calibrated by the
    accountant exactly as the training will. Below ``train.privacy.refuse_signal_to_noise`` the run stops,
    below ``min_signal_to_noise`` it warns.

    Args:
        config: ``params:train``, validated.
        rows: N (or an upper bound of it).
        num_classes: C.
        source: Where N comes from, for the message.
        noise_multiplier: sigma when already calibrated (the training node's), else calibrated here.
        trainable: d when the model is built, else counted from the parameters.

    Returns:
        The estimate.

    Raises:
        ParameterError: Below the refusal threshold.
    """
    privacy = config.privacy
    batch = config.resolve_batch_size(rows)
    if noise_multiplier is None:
        noise_multiplier = calibrated_noise_multiplier(
            target_epsilon=privacy.target_epsilon, delta=privacy.target_delta or 1.0 / (10 * rows), rows=rows,
            batch_size=batch, epochs=config.epochs, accountant=privacy.accountant,
        )  # fmt: skip
    if trainable is None:
        trainable = _trainable_parameters(config, num_classes)
    estimate = signal_to_noise(rows=rows, batch_size=batch, epochs=config.epochs, noise_multiplier=noise_multiplier,
                               trainable=trainable)  # fmt: skip
    low = estimate.ratio < privacy.refuse_signal_to_noise
    if not low and estimate.ratio >= privacy.min_signal_to_noise:
        return estimate
    bound = privacy.refuse_signal_to_noise if low else privacy.min_signal_to_noise
    verdict = ("the noise swamps the gradients and the model will learn next to nothing" if low else
               "the noise may swamp the gradients and the model may learn little (see docs/privacy.md)")  # fmt: skip
    message = (
        f"{estimate.explain()} (the training set {source}) is below {bound:g}: under DP at epsilon "
        f"{privacy.target_epsilon:g} {verdict}. "
        "Try: more training rows or a larger train.privacy.target_epsilon (spent from the privacy budget; the "
        f"bound grows about linearly with either); fewer trainable weights ({_fewer_weights(config)}); "
        "train.model.kind: pretrained (a frozen public encoder: only a head of a few thousand weights sees private "
        "gradients)"
    )
    if low:
        raise ParameterError(message + " (train.privacy.refuse_signal_to_noise: 0 turns this refusal off)")
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=2)
    return estimate
