"""Figures -> kedro-mlflow metrics: the one place a node's numbers become ``MlflowMetricsHistoryDataset`` input.

kedro-mlflow's metrics dataset takes ``{name: {"value": v, "step": s}}`` (one point) or ``{name: [points]}`` (a
history). Nodes compute plain figures; :func:`as_metrics` turns them into that shape, so the format is
written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MetricPoint = dict[str, float | int]
Metrics = dict[str, MetricPoint | list[MetricPoint]]


def metric_point(value: Any, step: int = 0) -> MetricPoint:
    """One metric point (``value`` as float, booleans as 0/1)."""
    return {"value": float(value), "step": int(step)}


def as_metrics(figures: Mapping[str, Any], *, prefix: str = "", step: int = 0) -> Metrics:
    """A dict of figures as kedro-mlflow metrics.

    Args:
        figures: Name -> number (bools count as 0/1). ``None`` values are skipped (a figure not measured).
        prefix: Prepended to every name (e.g. ``"drift."``).
        step: The step of every point.

    Returns:
        ``{prefix + name: {"value": float, "step": step}}``.
    """
    return {f"{prefix}{name}": metric_point(value, step) for name, value in figures.items() if value is not None}


def as_history(points: Iterable[tuple[int, Any]]) -> list[MetricPoint]:
    """A metric history from ``(step, value)`` pairs (per-epoch curves, per-round figures)."""
    return [metric_point(value, step) for step, value in points]
