"""The label model: Snorkel's :class:`~snorkel.labeling.model.LabelModel` or a majority vote, from ``L`` to
class probabilities (N, C), and the checks that the gold dev set can judge it."""

from __future__ import annotations

from typing import Any

import numpy as np

from frugalml.errors import EmptyDatasetError


def majority_vote(matrix: np.ndarray, cardinality: int) -> np.ndarray:
    """Share of votes per class (ties stay ties; rows without votes get a uniform distribution).

    Args:
        matrix: ``L`` (N, m).
        cardinality: C.

    Returns:
        (N, C) vote shares.
    """
    counts = np.stack([(matrix == k).sum(axis=1) for k in range(cardinality)], axis=1).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1), 1.0 / cardinality)


def argmax_random_ties(probabilities: np.ndarray, seed: int) -> np.ndarray:
    """Argmax with ties broken at random (seeded), as Snorkel's ``tie_break_policy="random"``.

    Args:
        probabilities: (N, C).
        seed: Seed of the tie breaks.

    Returns:
        (N,) class indices.
    """
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(0, 1e-9, size=probabilities.shape)
    top = probabilities.max(axis=1, keepdims=True)
    return np.argmax(np.where(np.isclose(probabilities, top, atol=1e-12, rtol=0), 1.0 + jitter, 0.0), axis=1)


def require_two_classes(y_dev: np.ndarray, label_names: list[str], cardinality: int) -> None:
    """The dev set must hold every class to check LFs and estimate the class balance.

    Args:
        y_dev: Dev class indices.
        label_names: Names, for the message.
        cardinality: C.

    Raises:
        EmptyDatasetError: When a class is absent.
    """
    present = set(np.unique(y_dev).tolist())
    missing = [label_names[k] if k < len(label_names) else str(k) for k in range(cardinality) if k not in present]
    if missing:
        raise EmptyDatasetError(
            f"the gold dev set ({len(y_dev)} rows) has no rows of class(es) {missing}: LF accuracies and the "
            "class balance cannot be checked; label more rows of that class or raise split.gold_dev_size (it is "
            "capped at 10% of the training rows)"
        )


def fit_label_model(
    matrix: np.ndarray, cardinality: int, class_balance: list[float] | None, config: Any, seed: int
) -> Any:
    """Fit Snorkel's :class:`~snorkel.labeling.model.LabelModel` on ``L``.

    Args:
        matrix: ``L`` (N, m).
        cardinality: C.
        class_balance: Class prior, or None to estimate it from ``L``.
        config: :class:`frugalml.params.WeakLabelParams`.
        seed: Seed of the fit.

    Returns:
        The fitted label model.
    """
    import torch
    from snorkel.labeling.model import LabelModel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny (mC x mC) problem: threads only add overhead (14 s -> 1 s here)
    try:
        model = LabelModel(cardinality=cardinality, verbose=False, device="cpu")
        model.fit(matrix, class_balance=class_balance, n_epochs=config.label_model_epochs,
                  lr=config.label_model_lr, l2=config.label_model_l2, seed=seed, progress_bar=False)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return model


def combine_votes(matrix: np.ndarray, model: Any, cardinality: int, prior: np.ndarray) -> np.ndarray:
    if model is None:
        shares = majority_vote(matrix, cardinality)
        return np.where((matrix >= 0).any(axis=1, keepdims=True), shares, prior)
    return np.asarray(model.predict_proba(matrix), dtype=np.float64)


def accuracy_of(probabilities: np.ndarray, y: np.ndarray, seed: int) -> float:
    return float((argmax_random_ties(probabilities, seed) == y).mean()) if len(y) else float("nan")
