"""The extra tasks of a multi-task model on the test rows: accuracy beside the task's own majority baseline,
macro-F1 and per-class F1, on the rows that carry a label for the task (``train.multitask``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from frugalml.errors import SchemaError
from frugalml.models.multitask import model_tasks, predict_all_proba, task_targets

logger = logging.getLogger(__name__)


def task_reports(model: Any, test: pd.DataFrame, id_column: str | None) -> dict[str, dict[str, Any]]:
    """Per task: ``rows`` (test rows with a label for it), ``accuracy``, ``majority_baseline_accuracy``,
    ``macro_f1``, ``per_class`` (name, f1, support); or ``skipped`` with the reason (no such column in the test
    rows, or no labelled row).

    Args:
        model: A model bundle (its tasks are those it was trained with).
        test: Test rows.
        id_column: Ids quoted when a test value is outside a task's labels.

    Returns:
        Task name -> its figures (``skipped`` with the reason, logged as a warning, where the test column is
        missing, holds values outside the task's labels, or labels no row).
    """
    reports: dict[str, dict[str, Any]] = {}
    tasks = model_tasks(model)
    every = predict_all_proba(model, test)[1:] if tasks else []  # one pass serves every head
    for task, probabilities in zip(tasks, every, strict=True):
        skipped = None
        if task.column not in test.columns:
            skipped = f"the test rows have no column {task.column!r}"
        else:
            try:
                y = task_targets(test, task, where="the test rows", id_column=id_column)
            except SchemaError as error:  # the main task's figures are kept; this task's are not computed
                skipped = str(error)
            else:
                known = np.flatnonzero(y >= 0)
                if not len(known):
                    skipped = f"no test row has a label for it (column {task.column!r})"
        if skipped is not None:
            reports[task.name] = {"skipped": skipped}
            logger.warning("task %r not evaluated: %s", task.name, skipped)
            continue
        y_true, y_pred = y[known], probabilities[known].argmax(axis=1)
        classes = list(range(len(task.labels)))
        f1 = skm.f1_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
        support = np.bincount(y_true, minlength=len(classes))
        reports[task.name] = {
            "rows": len(known),
            "accuracy": float((y_pred == y_true).mean()),
            "majority_baseline_accuracy": float(support.max() / len(known)),
            "macro_f1": float(np.mean(f1)),
            "per_class": [
                {"name": name, "f1": float(f1[k]), "support": int(support[k])} for k, name in enumerate(task.names)
            ],  # fmt: skip
        }
    return reports


def task_metrics(report: dict[str, Any]) -> dict[str, float]:
    """``task.<name>.{rows,accuracy,majority_baseline_accuracy,macro_f1}`` of a report's evaluated tasks."""
    figures: dict[str, float] = {}
    for name, entry in (report.get("tasks") or {}).items():
        figures.update({f"task.{name}.{key}": value for key, value in entry.items()
                        if isinstance(value, int | float) and not isinstance(value, bool)})  # fmt: skip
    return figures


def task_summary(report: dict[str, Any]) -> list[str]:
    """The summary's lines for the extra tasks (none for a single-task model)."""
    lines = []
    for name, entry in (report.get("tasks") or {}).items():
        if "skipped" in entry:
            lines.append(f"  task {name}: not evaluated ({entry['skipped']})")
            continue
        per_class = ", ".join(f"{c['name']} {c['f1']:.4f}" for c in entry["per_class"])
        lines.append(
            f"  task {name} ({entry['rows']} labelled test rows): accuracy {entry['accuracy']:.4f} vs majority "
            f"{entry['majority_baseline_accuracy']:.4f}, macro-F1 {entry['macro_f1']:.4f} (F1: {per_class})"
        )
    return lines
