"""The distill stage's nodes: the trained model (the teacher) labels rows with its softened probabilities, a small
student (``distill.student``, the n-gram bag by default) learns them through the train node, and a gate compares
the two on the dev rows.

Privacy. The teacher was trained with ``train.privacy``; its probabilities are a function of that DP model, but
the student also reads the rows themselves, so it is trained with DP-SGD too (the same ``train.privacy``), and the
node is a ``model_training`` node: the governance ledger records its spend on every row it read. A training row
thus spends the teacher's epsilon plus the student's (sequential composition); a pool row, which the teacher
never trained on, the student's alone. ``distillation_report`` states both. Labelling public text instead of
private rows (zero extra epsilon) is not built: no public text is shipped.

Every figure here is on dev rows (``dev_labelled``); the student's test figures come from the evaluate nodes that
run after it (``distilled.*`` datasets).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from frugalml.errors import DistillationError, SchemaError
from frugalml.labels import prob_columns
from frugalml.models.compression import agreement, fp32_nbytes
from frugalml.models.embedding_store import EmbeddingStore
from frugalml.models.zoo import Classifier
from frugalml.nodes.train import encode_labels, train_text_classifier
from frugalml.params import DataSchema, DistillParams, TrainParams, deep_merge, parse_params
from frugalml.tracking import Metrics, as_metrics

logger = logging.getLogger(__name__)

__all__ = ["check_distillation", "distill_classifier", "distillation_set", "report_distillation", "student_params"]

SOURCE_COLUMN = "distill_source"


def _text_key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One hash per row of its text columns (missing text as empty)."""
    return pd.util.hash_pandas_object(frame[columns].fillna("").astype(str), index=False)


def _soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the teacher's probabilities at temperature T (T > 1 flattens, T < 1 sharpens)."""
    logits = np.log(np.clip(probs.astype(np.float64), 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    soft = np.exp(logits)
    return soft / soft.sum(axis=1, keepdims=True)


def _rows(name: str, frame: Any, schema: DataSchema) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(f"distill.rows names '{name}', but that dataset is {type(frame).__name__}, not a table")
    missing = [c for c in schema.text_columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"the {name} rows lack the text column(s) {missing} (data.text_columns)")
    return frame


def distillation_set(  # noqa: PLR0917  # a Kedro node: its inputs come positionally
    teacher: Classifier, train: pd.DataFrame, pool: pd.DataFrame, params: dict[str, Any], data: dict[str, Any]
) -> pd.DataFrame:
    """The rows the student learns: ``distill.rows`` of ``train_set`` and ``unlabelled_pool``, each with the
    teacher's probabilities at ``distill.temperature`` as ``label_prob_<value>`` (mixed with a training row's own
    label by ``distill.label_weight``) and ``label`` their argmax.

    Pool rows whose text is already a training row's are dropped (a row is read once).

    Args:
        teacher: The trained ``text_classifier`` (any kind).
        train: ``train_set``: the rows the teacher was trained on.
        pool: ``unlabelled_pool``.
        params: ``params:distill``.
        data: ``params:data``.

    Returns:
        The text columns (and id), ``label``, ``label_prob_*`` and ``distill_source`` (``train`` / ``pool``).

    Raises:
        SchemaError: A source lacks a text column, or training rows lack their labels.
        DistillationError: The teacher predicts other labels than ``data.labels``, or there is no row at all.
    """
    config = parse_params(DistillParams, params, name="distill")
    schema = parse_params(DataSchema, data, name="data")
    if list(teacher.labels) != list(schema.labels):
        raise DistillationError(
            f"the teacher predicts labels {list(teacher.labels)}, the data's labels are {list(schema.labels)}: "
            "distil the model trained on this data (text_classifier)"
        )
    keep = [c for c in (schema.id_column, *schema.text_columns) if c]
    parts: list[pd.DataFrame] = []
    sources = {"train": train, "pool": pool}
    seen: pd.Index = pd.Index([])
    for name in config.rows:
        frame = _rows(name, sources[name], schema)
        if name == "train" and schema.label_column not in frame.columns:
            raise SchemaError(f"the training rows lack their label column '{schema.label_column}'")
        key = _text_key(frame, list(schema.text_columns))
        fresh = ~key.isin(seen).to_numpy()
        frame, seen = frame.loc[fresh], seen.append(pd.Index(key[fresh]))
        part = frame[[c for c in keep if c in frame.columns]].copy()
        if len(part):
            target = _soften(teacher.predict_proba(frame), config.temperature)
            if name == "train" and config.label_weight:
                hard = np.eye(len(schema.labels))[encode_labels(frame[schema.label_column], schema)]
                target = config.label_weight * hard + (1 - config.label_weight) * target
            part[schema.label_column] = np.asarray(schema.labels)[target.argmax(axis=1)]
            for column, values in zip(prob_columns(list(schema.labels)), target.T, strict=True):
                part[column] = values.astype(np.float64)
        part[SOURCE_COLUMN] = name
        parts.append(part)
        logger.info("distillation rows from %s: %d (%d already read)", name, int(fresh.sum()), int((~fresh).sum()))
    rows = pd.concat(parts, ignore_index=True)
    if rows.empty:
        raise DistillationError(f"no rows to distil from: distill.rows {config.rows} are all empty")
    return rows


def student_params(train_params: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The student's ``train`` block: ``train``'s settings with ``distill.train`` over them, the model
    ``distill.student``, soft targets, one task (``train.multitask`` dropped), and ``train.privacy`` unchanged.

    Args:
        train_params: ``params:train``.
        params: ``params:distill``.

    Returns:
        A ``params:train`` block (validated).
    """
    config = parse_params(DistillParams, params, name="distill")
    merged = deep_merge(train_params or {}, config.train)
    merged["model"] = config.student.model_dump()
    merged["targets"] = "soft"
    merged["multitask"] = {"tasks": []}  # the student learns the teacher's main task only (pool rows lack task labels)
    parse_params(TrainParams, merged, name="distill.train")
    return merged


def distill_classifier(  # noqa: PLR0913, PLR0917  # a Kedro node: its inputs come positionally
    rows: pd.DataFrame,
    dev: pd.DataFrame,
    train_params: dict[str, Any],
    params: dict[str, Any],
    data: dict[str, Any],
    seed: int,
    encoder_cache: EmbeddingStore | None = None,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Train the student on ``rows`` (from :func:`distillation_set`) with the train node (DP per ``train.privacy``).

    Args:
        rows: The distillation set.
        dev: Labelled dev rows (early stopping, as in training).
        train_params: ``params:train`` (its ``privacy`` is the student's).
        params: ``params:distill``.
        data: ``params:data``.
        seed: ``params:seed``.
        encoder_cache: The encoder-feature cache (a student of an encoder kind).

    Returns:
        The student, its training history, its privacy report (as the train node's).
    """
    student = student_params(train_params, params)
    return train_text_classifier(rows.drop(columns=[SOURCE_COLUMN]), dev, student, data, seed, encoder_cache)


def _kind(model: Classifier) -> str:
    """The model-zoo kind of a model (the n-gram bag's metadata names only its format)."""
    metadata = model.metadata()
    return str(metadata.get("kind") or str(metadata.get("format", "?")).removeprefix("frugalml.").split("/")[0])


def report_distillation(  # noqa: PLR0913, PLR0917  # a Kedro node: its inputs come positionally
    student: Classifier,
    teacher: Classifier,
    dev: pd.DataFrame,
    rows: pd.DataFrame,
    student_privacy: dict[str, Any],
    teacher_privacy: dict[str, Any],
    data: dict[str, Any],
) -> tuple[dict[str, Any], Metrics]:
    """Teacher and student side by side on dev: accuracy, agreement, weight bytes; the rows; what each row spent.

    Args:
        student: From :func:`distill_classifier`.
        teacher: ``text_classifier``.
        dev: Labelled dev rows.
        rows: The distillation set.
        student_privacy: The student's privacy report.
        teacher_privacy: ``privacy_report`` (the teacher's training).
        data: ``params:data``.

    Returns:
        ``distillation_report`` and its figures as ``distill.*`` metrics.
    """
    schema = parse_params(DataSchema, data, name="data")
    if dev.empty:
        raise DistillationError("the dev set is empty: the student cannot be compared with its teacher")
    compared = agreement(teacher, student, dev, schema.label_column)
    sides = {
        name: {"kind": _kind(model), "bytes": fp32_nbytes(model),
               "dev_accuracy": round(compared[key], 6)}
        for name, model, key in (("teacher", teacher, "accuracy_reference"), ("student", student, "accuracy"))
    }  # fmt: skip
    counts = rows[SOURCE_COLUMN].value_counts().to_dict()

    def spent(report: dict[str, Any]) -> float | None:
        return float(report["epsilon"]) if report.get("enabled") and "epsilon" in report else None

    teacher_eps, student_eps = spent(teacher_privacy or {}), spent(student_privacy)
    per_row = {
        "train": None if teacher_eps is None or student_eps is None else teacher_eps + student_eps,
        "pool": student_eps,
    }
    report = {
        **sides,
        "dev_accuracy_drop": round(sides["teacher"]["dev_accuracy"] - sides["student"]["dev_accuracy"], 6),
        "agreement": round(compared["agreement"], 6),
        "size_ratio": round(sides["teacher"]["bytes"] / max(sides["student"]["bytes"], 1), 3),
        "rows": {source: int(counts.get(source, 0)) for source in ("train", "pool")},
        "privacy": {
            "teacher_epsilon": teacher_eps,
            "student_epsilon": student_eps,
            "delta": student_privacy.get("delta"),
            # sequential composition; null where a side ran without DP (no guarantee to state)
            "epsilon_per_row": {
                source: per_row[source] for source in ("train", "pool") if counts.get(source, 0)
            },  # fmt: skip
        },
    }
    figures = {"teacher_dev_accuracy": sides["teacher"]["dev_accuracy"],
               "student_dev_accuracy": sides["student"]["dev_accuracy"],
               "dev_accuracy_drop": report["dev_accuracy_drop"], "agreement": report["agreement"],
               "size_ratio": report["size_ratio"], "student_bytes": sides["student"]["bytes"]}  # fmt: skip
    logger.info("distilled %s (%.1f MB) into %s (%.2f MB): dev accuracy %.4f -> %.4f", sides["teacher"]["kind"],
                sides["teacher"]["bytes"] / 1e6, sides["student"]["kind"], sides["student"]["bytes"] / 1e6,
                sides["teacher"]["dev_accuracy"], sides["student"]["dev_accuracy"])  # fmt: skip
    return report, as_metrics(figures)


def check_distillation(student: Classifier, report: dict[str, Any], params: dict[str, Any]) -> Classifier:
    """The gate: the student may lose at most ``distill.max_dev_accuracy_drop`` dev accuracy against its teacher.

    Args:
        student: From :func:`distill_classifier`.
        report: From :func:`report_distillation` (saved before this node runs).
        params: ``params:distill``.

    Returns:
        ``student``, to be saved (and logged to MLflow) as ``distilled_classifier``.

    Raises:
        DistillationError: When it loses more and ``on_accuracy_drop`` is ``fail``.
    """
    config = parse_params(DistillParams, params, name="distill")
    drop = report["dev_accuracy_drop"]
    if drop > config.max_dev_accuracy_drop:
        message = (
            f"the distilled {report['student']['kind']} loses {drop:.4f} dev accuracy against its teacher, more "
            f"than distill.max_dev_accuracy_drop {config.max_dev_accuracy_drop}; try a wider student "
            "(distill.student), more rows (distill.rows with pool), or distill.label_weight closer to 1; "
            "distillation_report has both models' figures"
        )
        if config.on_accuracy_drop == "fail":
            raise DistillationError(message)
        logger.warning(message)
    return student
