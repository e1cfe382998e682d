"""MLflow run names that say what a run was: the pipeline, the table it started from and the model kind.

kedro-mlflow names a run after its pipeline (``tracking.run.name: null`` in ``conf/base/mlflow.yml``), so every
``modelling`` run looks alike in the MLflow UI whatever table it trained on. :class:`RunNameHook` renames the
active run once the run has loaded its first table, e.g. ``modelling · emails:3f2a9c1b7d0e · ngram_bag``, and
tags it with the parts:

- ``frugalml.pipeline``: the pipeline(s) run (``+``-joined, as kedro-mlflow names them);
- ``frugalml.dataset``: ``<catalog name>:<first 12 hex digits of its content digest>`` of the first table the
  run loads (:func:`frugalml.hooks.frame_digest`, the digest the lineage inputs carry: the same table gives
  the same key in every run, another table another key);
- ``frugalml.model_kind``: ``params:train.model.kind`` when set, else ``ngram_bag`` (the default kind); only
  for a pipeline that trains a model.

A run name set in ``mlflow.yml`` (``tracking.run.name``) is kept; the tags are set either way.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import pandas as pd
from kedro.framework.hooks import hook_impl

from frugalml.hooks import frame_digest
from frugalml.tags import MODEL_TRAINING_TAG

logger = logging.getLogger(__name__)

#: the model kind of a training that does not name one (the bag-of-n-grams classifier)
DEFAULT_MODEL_KIND = "ngram_bag"
#: separator of the parts of a run name
SEPARATOR = " · "


def dataset_key(name: str, frame: pd.DataFrame) -> str:
    """A short, stable key of a table: its catalog name and the first 12 hex digits of its content digest.

    Args:
        name: Catalog name.
        frame: Its content.

    Returns:
        ``name:digest12``.
    """
    return f"{name}:{frame_digest(frame)[:12]}"


def model_kind(params: dict[str, Any], *, student: bool = False) -> str:
    """``params:train.model.kind`` (``student``: ``params:distill.student.kind``) when the parameters set one, else
    :data:`DEFAULT_MODEL_KIND`.

    Args:
        params: All the run's parameters.
        student: The distill stage's student rather than the trained model.

    Returns:
        The model kind.
    """
    block = params.get("distill" if student else "train") if isinstance(params, dict) else None
    model = block.get("student" if student else "model") if isinstance(block, dict) else None
    kind = model.get("kind") if isinstance(model, dict) else None
    return str(kind) if kind else DEFAULT_MODEL_KIND


def run_name(pipeline: str, dataset: str | None, kind: str | None) -> str:
    """The run name made of its parts (those known).

    Args:
        pipeline: Pipeline name(s).
        dataset: :func:`dataset_key` of the first table, if the run loaded one.
        kind: The model kind, for a pipeline that trains.

    Returns:
        e.g. ``modelling · emails:3f2a9c1b7d0e · ngram_bag``.
    """
    return SEPARATOR.join(part for part in (pipeline, dataset, kind) if part)


class RunNameHook:
    """Names the active kedro-mlflow run after its pipeline, first table and model kind (module docstring)."""

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._pipeline = "__default__"
        self._kind: str | None = None
        self._dataset: str | None = None
        self._applied: tuple[str | None, ...] | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Keep the run's parameters (for the model kind).

        Args:
            context: The Kedro context.
        """
        self._params = dict(context.params)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any) -> None:
        """Note the pipeline's name and whether it trains a model.

        Args:
            run_params: Kedro's run parameters (``pipeline_names``).
            pipeline: The pipeline about to run.
        """
        names = run_params.get("pipeline_name") or run_params.get("pipeline_names") or ["__default__"]
        self._pipeline = names if isinstance(names, str) else "+".join(names)
        trains = [node.name for node in pipeline.nodes if MODEL_TRAINING_TAG in node.tags]
        student = bool(trains) and all(name.startswith("distill") for name in trains)  # the distill stage alone
        self._kind = model_kind(self._params, student=student) if trains else None
        self._dataset = None
        self._applied = None

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        """Key the run by the first table it loads, and rename the run.

        Args:
            dataset_name: Catalog name.
            data: The loaded data.
        """
        if self._dataset is None and isinstance(data, pd.DataFrame) and not dataset_name.startswith("params:"):
            self._dataset = dataset_key(dataset_name, data)
            self._apply()

    @hook_impl(trylast=True)
    def before_node_run(self) -> None:
        """Name the run once kedro-mlflow has re-entered it (a run not active when the table was loaded)."""
        self._apply()

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        """Name a run that loaded no table, before kedro-mlflow ends it."""
        self._apply()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        """Name a run that failed, before kedro-mlflow ends it."""
        self._apply()

    def _apply(self) -> None:
        state = (self._pipeline, self._dataset, self._kind)
        active = mlflow.active_run()
        if active is None or state == self._applied:
            return
        tags = {"frugalml.pipeline": self._pipeline}
        if self._dataset:
            tags["frugalml.dataset"] = self._dataset
        if self._kind:
            tags["frugalml.model_kind"] = self._kind
        current = active.data.tags.get("mlflow.runName") or active.info.run_name
        named = run_name(*state)
        # kedro-mlflow's default name is the pipeline's (or the last one this hook set): a name from mlflow.yml stays
        if not current or current == self._pipeline or current.startswith(self._pipeline + SEPARATOR):
            tags["mlflow.runName"] = named
        try:
            mlflow.set_tags(tags)
        except Exception as error:  # noqa: BLE001 - a name is a label: never fail a run over it
            logger.warning("could not name the MLflow run %s: %s", active.info.run_id, error)
            return
        self._applied = state
        if "mlflow.runName" in tags:
            logger.info("MLflow run %s is '%s'", active.info.run_id, named)
