"""Multi-task heads: one shared model (any kind of the zoo), the main head, and one head per extra task.

Notation: N rows, C main classes, T extra tasks, K_t classes of task t. A task reads a label column of the
training rows (``column``), optionally through shell patterns (``map``: e.g. the corpus group ``hard-ham-*`` ->
``hard``); a row whose value is missing, or matches no pattern, has no label for that task and the task's loss
skips it. Any other value outside the declared labels is refused before training (:func:`task_targets`).

The kind's own ``head`` becomes a :class:`MultiHead`: the main head unchanged (so everything that only predicts
the main task, the pyfunc's ``label`` included, sees the same (N, C) logits), plus one head of the same shape per
task. Training switches it to all outputs (N, C + sum K_t) and sums the per-sample losses
``main_weight * CE_main + sum_t weight_t * CE_t`` (a missing label adds 0), so DP-SGD clips each row's whole
gradient, every label of the row included.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from frugalml.errors import SchemaError

ALL_OUTPUTS = "*"  # MultiHead.output: every head's logits, concatenated (training)
ALL_LOG_PROBABILITIES = "*log"  # every head's log-probabilities, concatenated (serving every task in one pass)
TASK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
#: names a task cannot take: nn.ModuleDict's own attributes (``type``, ``train``, ``keys``, ...) and ``label``
RESERVED_NAMES = frozenset(name for name in dir(nn.ModuleDict()) if TASK_NAME.match(name)) | {"label"}
HEAD_PREFIX = "head."
MAIN_PART, TASKS_PART = "head.main.", "head.tasks."


def label_key(value: Any) -> str | None:
    """A label value as a comparable key: None for missing (None, NaN, pd.NA, blank), whole numbers as ``"3"`` (so 3,
    3.0, ``"3"`` and numpy integers match), other values as their stripped text."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):  # NaN, pd.NA, NaT
        return None
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    if not text or text.lower() in {"nan", "none", "null"}:
        return None
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text):
        return str(int(float(text)))
    return text


@dataclass(frozen=True)
class TaskSpec:
    """One extra task: its name, label column, declared labels (and names), optional patterns, loss weight."""

    name: str
    column: str
    labels: tuple[Any, ...]
    label_names: tuple[str, ...] = ()
    mapping: tuple[tuple[str, Any], ...] = ()  # (shell pattern, label) pairs, case-insensitive
    weight: float = 0.5
    keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate the spec (names, labels, patterns).

        Raises:
            ValueError: Naming the problem.
        """
        keys = tuple(label_key(value) for value in self.labels)
        problems = [
            (bool(TASK_NAME.match(self.name)), f"task name {self.name!r} must be lower-case letters, digits and _ "
                                               "(starting with a letter, at most 48 characters)"),
            (self.name not in RESERVED_NAMES and not self.name.startswith("probability"),
             f"task name {self.name!r} is reserved (a torch ModuleDict attribute, or the served model's own "
             "label / probability_* columns); choose another name"),
            (len(keys) >= 2, f"task {self.name!r} needs at least two labels, got {list(self.labels)}"),
            (None not in keys, f"task {self.name!r}: a declared label is empty"),
            (len(set(keys)) == len(keys), f"task {self.name!r}: labels must be distinct, got {list(self.labels)}"),
            (not self.label_names or len(self.label_names) == len(self.labels),
             f"task {self.name!r}: label_names must have one name per label"),
            (len(set(self.label_names)) == len(self.label_names),
             f"task {self.name!r}: label_names must be distinct (each names a pyfunc column), got "
             f"{list(self.label_names)}"),
            (self.weight > 0 and math.isfinite(self.weight), f"task {self.name!r}: weight must be > 0"),
        ]  # fmt: skip
        for ok, message in problems:
            if not ok:
                raise ValueError(message)
        for pattern, label in self.mapping:
            if label_key(label) not in keys:
                raise ValueError(
                    f"task {self.name!r}: map sends {pattern!r} to {label!r}, not one of {list(self.labels)}"
                )
        object.__setattr__(self, "keys", keys)

    @property
    def names(self) -> list[str]:
        """Class names (the labels' text when none were given)."""
        return list(self.label_names) or [str(label) for label in self.labels]

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (saved in the model's metadata)."""
        return {"name": self.name, "column": self.column, "labels": list(self.labels),
                "label_names": list(self.label_names), "map": [list(pair) for pair in self.mapping],
                "weight": self.weight}  # fmt: skip

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> TaskSpec:
        """Inverse of :meth:`to_json`."""
        return cls(name=entry["name"], column=entry["column"], labels=tuple(entry["labels"]),
                   label_names=tuple(entry.get("label_names") or ()),
                   mapping=tuple((str(p), label) for p, label in entry.get("map") or ()),
                   weight=float(entry.get("weight", 0.5)))  # fmt: skip


def check_served_columns(main_names: Sequence[str], tasks: Sequence[TaskSpec]) -> None:
    """Refuse tasks whose served columns (``<task>_label``, ``<task>_probability_<name>``) repeat a column of the
    served model (``label``, ``probability_<main name>``, another task's).

    Raises:
        ValueError: Naming the repeated column.
    """
    columns = ["label", *(f"probability_{name}" for name in main_names)]
    for task in tasks:
        columns += [f"{task.name}_label", *(f"{task.name}_probability_{name}" for name in task.names)]
    repeated = sorted({column for column in columns if columns.count(column) > 1})
    if repeated:
        raise ValueError(f"the served model would have the column(s) {repeated} twice: rename a task or a label name")


def task_targets(frame: pd.DataFrame, task: TaskSpec, *, where: str = "the training rows",
                 id_column: str | None = None) -> np.ndarray:  # fmt: skip
    """Class indices of ``task`` for every row of ``frame``; -1 where the row has no label for it.

    Args:
        frame: Rows with ``task.column``.
        task: The task.
        where: The rows, in the error's words.
        id_column: Ids quoted in the error (examples of offending rows).

    Returns:
        (N,) int64.

    Raises:
        SchemaError: The column is missing, or holds values outside the declared labels (without ``map``), or a
            value two patterns of ``map`` send to different labels.
    """
    if task.column not in frame.columns:
        raise SchemaError(f"task {task.name!r} reads column {task.column!r}, which {where} lack "
                          f"(columns: {sorted(map(str, frame.columns))[:20]})")  # fmt: skip
    index = {key: position for position, key in enumerate(task.keys)}
    keys = frame[task.column].map(label_key)
    if task.mapping:
        resolved: dict[str, int] = {}
        for key in pd.unique(keys.dropna()):
            hits = {label_key(label) for pattern, label in task.mapping
                    if fnmatch.fnmatchcase(str(key).lower(), pattern.lower())}  # fmt: skip
            if len(hits) > 1:
                raise SchemaError(f"task {task.name!r}: value {key!r} of column {task.column!r} matches patterns of "
                                  f"labels {sorted(map(str, hits))}; make the map's patterns exclusive")  # fmt: skip
            resolved[key] = index[str(hits.pop())] if hits else -1
        return keys.map(resolved).fillna(-1).to_numpy(dtype=np.int64)
    known = keys.map(index)
    bad = keys.notna() & known.isna()
    if bad.any():
        counts = keys[bad].value_counts()
        shown = ", ".join(f"{value!r} ({count} rows)" for value, count in counts.head(5).items())
        ids = frame.loc[bad.to_numpy(), id_column].head(5).tolist() if id_column in frame.columns else []
        raise SchemaError(
            f"task {task.name!r}: column {task.column!r} of {where} holds {int(bad.sum())} value(s) outside its "
            f"declared labels {list(task.labels)}: {shown}{f'; e.g. rows {ids}' if ids else ''}. Declare them in the "
            "task's labels, blank them (a row without a label is skipped by that task), or map them with `map`"
        )
    return known.fillna(-1).to_numpy(dtype=np.int64)


def _fresh_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with every parameter re-initialised."""
    clone = copy.deepcopy(module)
    for layer in clone.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
    return clone


def task_head(main: nn.Module, classes: int) -> nn.Module:
    """A head of the main head's shape whose last Linear layer has ``classes`` outputs (fresh weights).

    Raises:
        TypeError: When the main head has no Linear layer.
    """
    if isinstance(main, nn.Linear):
        return nn.Linear(main.in_features, classes, bias=main.bias is not None).to(main.weight.device)
    clone = _fresh_copy(main)
    parents = [(name, layer) for name, layer in clone.named_modules() if isinstance(layer, nn.Linear)]
    if not parents:
        raise TypeError(f"the main head {type(main).__name__} has no Linear layer to give a task its classes")
    path, last = parents[-1]
    parent = clone.get_submodule(path.rpartition(".")[0]) if "." in path else clone
    setattr(parent, path.rpartition(".")[2], nn.Linear(last.in_features, classes, bias=last.bias is not None).to(
        last.weight.device))  # fmt: skip
    return clone


#: which outputs each MultiHead gives, by id, in this thread / async task only (:func:`task_output`): concurrent
#: predictions (MLflow's scoring server runs requests in threads) never see each other's choice
_SELECTED: ContextVar[dict[int, str | None]] = ContextVar("frugalml_task_output", default={})  # noqa: B039  # never mutated


class MultiHead(nn.Module):
    """The main head and one head per task, on the same features. The output (:func:`task_output`): the main logits
    (the default), :data:`ALL_OUTPUTS` (all, concatenated: training), :data:`ALL_LOG_PROBABILITIES` (each head's
    log-softmax, concatenated: one pass serves every task) or a task name (that task's logits)."""

    def __init__(self, main: nn.Module, tasks: dict[str, nn.Module]) -> None:
        """Put the heads together."""
        super().__init__()
        self.main = main
        self.tasks = nn.ModuleDict(tasks)

    @property
    def output(self) -> str | None:
        """What :meth:`forward` gives in the current context."""
        return _SELECTED.get().get(id(self))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) features -> the logits the current :func:`task_output` selects."""
        output = self.output
        if output is None:
            return self.main(features)  # type: ignore[no-any-return]
        if output == ALL_OUTPUTS:
            return torch.cat([self.main(features), *(head(features) for head in self.tasks.values())], dim=-1)
        if output == ALL_LOG_PROBABILITIES:
            heads = [self.main, *self.tasks.values()]
            return torch.cat([torch.log_softmax(head(features).float(), dim=-1) for head in heads], dim=-1)
        return self.tasks[output](features)  # type: ignore[no-any-return]


def attach_task_heads(module: nn.Module, tasks: Sequence[TaskSpec]) -> nn.Module:
    """Replace ``module.head`` by a :class:`MultiHead` with one fresh head per task (no-op without tasks).

    Raises:
        TypeError: When the module has no ``head``.
    """
    if not tasks:
        return module
    main = getattr(module, "head", None)
    if not isinstance(main, nn.Module):
        raise TypeError(f"{type(module).__name__} has no `head` module to add task heads beside")
    if isinstance(main, MultiHead):
        raise TypeError("the module has task heads already")
    module.head = MultiHead(main, {task.name: task_head(main, len(task.labels)) for task in tasks})
    return module


def multi_head(module: nn.Module) -> MultiHead | None:
    """The module's :class:`MultiHead`, or None for a single-task model."""
    head = getattr(module, "head", None)
    return head if isinstance(head, MultiHead) else None


@contextmanager
def task_output(module: nn.Module, which: str | None) -> Iterator[None]:
    """Within the block (this thread or async task only), the module's forward gives the logits of ``which`` (a task,
    :data:`ALL_OUTPUTS`, :data:`ALL_LOG_PROBABILITIES`, or None for the main task); a single-task model is left as
    it is.

    Raises:
        KeyError: An unknown task name.
    """
    head = multi_head(module)
    if head is None:
        yield
        return
    if which not in (None, ALL_OUTPUTS, ALL_LOG_PROBABILITIES) and which not in head.tasks:
        raise KeyError(f"no task {which!r}; the model's tasks: {list(head.tasks)}")
    token = _SELECTED.set({**_SELECTED.get(), id(head): which})
    try:
        yield
    finally:
        _SELECTED.reset(token)


def model_tasks(model: Any) -> list[TaskSpec]:
    """The extra tasks of a model bundle (none for a single-task model)."""
    return list(getattr(model, "tasks", None) or [])


def with_tasks(metadata: dict[str, Any], model: Any) -> dict[str, Any]:
    """``metadata`` with the model's tasks (``tasks``: their JSON form) when it has any; it as it is otherwise."""
    tasks = model_tasks(model)
    return {**metadata, "tasks": [task.to_json() for task in tasks]} if tasks else metadata


def predict_task_proba(model: Any, frame: pd.DataFrame, name: str) -> np.ndarray:
    """(N, K_t) probabilities of task ``name`` from a model bundle (its own ``predict_proba`` on that head)."""
    with task_output(model.module, name):
        return model.predict_proba(frame)  # type: ignore[no-any-return]


def predict_all_proba(model: Any, frame: pd.DataFrame) -> list[np.ndarray]:
    """Every head's probabilities in one pass: [(N, C) main, (N, K_t) per task, in order].

    The bundle's own ``predict_proba`` runs once on the heads' concatenated log-probabilities; its softmax over the
    concatenation gives each head's probabilities divided by the number of heads (each block of log-probabilities
    exponentiates to a sum of 1), so multiplying by it restores them.
    """
    tasks = model_tasks(model)
    sizes = [len(model.labels), *(len(task.labels) for task in tasks)]
    if len(frame) == 0:
        return [np.zeros((0, size), dtype=np.float32) for size in sizes]
    with task_output(model.module, ALL_LOG_PROBABILITIES):
        joined = np.asarray(model.predict_proba(frame), dtype=np.float64) * len(sizes)
    parts, start = [], 0
    for size in sizes:
        part = joined[:, start : start + size]
        parts.append((part / part.sum(axis=1, keepdims=True)).astype(np.float32))
        start += size
    return parts


@dataclass
class TaskTargets:
    """Training targets of a multi-task model: the main targets (indices or distributions) and (N, T) task indices
    (-1: no label). Indexed by rows like a tensor."""

    main: torch.Tensor
    tasks: torch.Tensor

    def __len__(self) -> int:
        return int(self.main.shape[0])

    def __getitem__(self, rows: Any) -> TaskTargets:
        return TaskTargets(self.main[rows], self.tasks[rows])


class MultiTaskLoss:
    """Per-sample loss ``main_weight * CE_main + sum_t weight_t * CE_t`` over concatenated logits."""

    def __init__(self, classes: int, tasks: Sequence[TaskSpec], main_weight: float) -> None:
        """The split of the logits and the weights."""
        self.classes, self.main_weight = classes, main_weight
        self.parts = [(len(task.labels), task.weight) for task in tasks]

    def __call__(self, logits: torch.Tensor, targets: TaskTargets) -> torch.Tensor:
        """(N,) losses."""
        ce = nn.functional.cross_entropy
        loss = self.main_weight * ce(logits[:, : self.classes], targets.main, reduction="none")
        start = self.classes
        for t, (size, weight) in enumerate(self.parts):
            part = logits[:, start : start + size]
            loss = loss + weight * ce(part, targets.tasks[:, t], ignore_index=-1, reduction="none")
            start += size
        return loss


def split_task_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A saved multi-task model's weights -> (the single-task layout its kind's loader reads: ``...head.main.x`` as
    ``...head.x``, the task heads' weights by ``<task>.<name>``)."""
    base: dict[str, torch.Tensor] = {}
    heads: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        prefix, found, rest = key.partition(TASKS_PART)
        if found and (not prefix or prefix.endswith(".")):
            heads[rest] = value
            continue
        prefix, found, rest = key.partition(MAIN_PART)
        name = f"{prefix}{HEAD_PREFIX}{rest}" if found and (not prefix or prefix.endswith(".")) else key
        if name in base:
            raise ValueError(
                f"the saved weights hold both {name!r} and a main-head copy of it: not a model frugalml saved"
            )
        base[name] = value
    return base, heads
