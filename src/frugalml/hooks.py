"""Kedro hooks of frugalml: strict parameter validation before any work, a check of the training against the
size of the data before the gates run, dataset lineage in MLflow, and one MLflow run entry per ``kedro run``."""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any

import mlflow
import pandas as pd
from kedro.framework.hooks import hook_impl

from frugalml.params import validate_parameters
from frugalml.tags import MODEL_TRAINING_TAG

logger = logging.getLogger(__name__)


def has_bytes(values: pd.Series) -> bool:
    """Whether a column holds raw bytes (only object columns can).

    Args:
        values: A column.

    Returns:
        True when any value is ``bytes``.
    """
    return values.dtype == object and any(isinstance(value, bytes) for value in values)


def frame_digest(frame: pd.DataFrame) -> str:
    """Content digest of a frame (values and column names, not the index).

    Args:
        frame: Any frame (bytes columns included).

    Returns:
        A 16-hex-digit digest (MLflow's dataset digest length limit is 36).
    """
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    for column in frame.columns:
        values = frame[column]
        if has_bytes(values):
            for value in values:
                digest.update(value if isinstance(value, bytes) else str(value).encode())
        else:
            digest.update(pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


class ParameterValidationHook:
    """Validates every parameter (``extra="forbid"``) as soon as the context exists: a typo fails the run
    with the key's name before any dataset is loaded."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Validate ``context.params``.

        Args:
            context: The Kedro context.
        """
        validate_parameters(context.params)


class DatasetLineageHook:
    """Records each dataset listed under ``params:tracking.log_inputs`` with ``mlflow.log_input`` the first
    time it is loaded or written in a run (name, content digest, source path, and the raw-archive digests it
    holds); ``train_set`` is written after training, from the rows the training node read."""

    def __init__(self) -> None:
        self._log_inputs: dict[str, str] = {}
        self._catalog: Any = None
        self._logged: set[str] = set()

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Read which datasets to record.

        Args:
            context: The Kedro context.
        """
        tracking = context.params.get("tracking") or {}
        self._log_inputs = dict(tracking.get("log_inputs") or {})
        self._logged = set()

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        """Keep the catalog to describe dataset sources.

        Args:
            catalog: The run's catalog.
        """
        self._catalog = catalog

    def _source(self, name: str) -> str:
        try:
            described = self._catalog[name]._describe() if self._catalog is not None else {}
        except Exception:  # noqa: BLE001 - a description is best effort
            described = {}
        return str(described.get("filepath") or described.get("sources") or name)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        """Log a training input to the active MLflow run.

        Args:
            dataset_name: Catalog name.
            data: The loaded data.
            node: The node that loaded it.
        """
        self._log(dataset_name, data)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        """Log a listed dataset a run writes (``train_set`` is written once training has succeeded).

        Args:
            dataset_name: Catalog name.
            data: The saved data.
            node: The node that produced it.
        """
        self._log(dataset_name, data)

    def _log(self, dataset_name: str, data: Any) -> None:
        context = self._log_inputs.get(dataset_name)
        if context is None or dataset_name in self._logged or mlflow.active_run() is None:
            return
        if not isinstance(data, pd.DataFrame):
            return
        tags = {"layer_dataset": dataset_name, "rows": str(len(data))}
        if "archive_sha256" in data.columns:
            archives = sorted(data["archive_sha256"].dropna().unique())
            tags["archive_sha256"] = ",".join(archives)[:5000]
            mlflow.set_tag("lineage.archive_sha256", ",".join(archives)[:5000])
        profile = data.drop(columns=[c for c in data.columns if has_bytes(data[c])])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
            warnings.filterwarnings("ignore", message=".*[Ii]nteger column.*")
            dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]  # mlflow.data is lazy
                profile, source=self._source(dataset_name), name=dataset_name, digest=frame_digest(data)
            )
            mlflow.log_input(dataset, context=context, tags=tags)
        self._logged.add(dataset_name)
        logger.info("lineage: logged input %s (digest %s)", dataset_name, dataset.digest)


# the tables a run can start from, in the order the default chain meets them, and what bounds the training rows
_TABLES = ("emails", "emails_validated", "train_labelled", "train_clean")


class TrainingPreflightHook:
    """Checks the training a run will end with against the first table it loads, before any node works on it.

    Under DP a fixed ``train.batch_size`` must not exceed the training rows (and an explicit ``target_delta``
    must be below 1/N), which the training node finds only after the quality gates, the split and the cleaning
    have run. When the run's pipeline contains a training node, the first node that reads ``emails``,
    ``emails_validated``, ``train_labelled`` (+ ``weak_labels``) or ``train_clean`` is preceded by a check of
    an upper bound of the training rows that table can give (:func:`frugalml.nodes.train.max_training_rows`),
    so the run stops in seconds with the parameter to set instead of after the gates.
    """

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._armed = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Keep the run's parameters.

        Args:
            context: The Kedro context.
        """
        self._params = dict(context.params)

    @hook_impl
    def before_pipeline_run(self, pipeline: Any) -> None:
        """Arm the check when the pipeline trains a model.

        Args:
            pipeline: The pipeline about to run.
        """

        self._armed = any(MODEL_TRAINING_TAG in node.tags for node in pipeline.nodes)

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        """Check the training against the first table of the run, before the node that reads it runs.

        Args:
            node: The node about to run.
            inputs: Its loaded inputs.

        Raises:
            ParameterError: When the training cannot run on the rows this table can give.
        """
        from frugalml.nodes.train import check_training_rows, max_training_rows

        name = next((n for n in _TABLES if n in node.inputs and isinstance(inputs.get(n), pd.DataFrame)), None)
        if not self._armed or name is None:
            return
        self._armed = False  # once per run: the first table bounds every later one
        frame = inputs[name]
        if name in ("emails", "emails_validated"):
            bound = max_training_rows(frame, self._params.get("split") or {}, self._params.get("data") or {})
            source = f"that the {len(frame)} rows of '{name}' can give after the split"
        else:
            weak = inputs.get("weak_labels") if name == "train_labelled" else None
            bound = len(frame) + (len(weak) if isinstance(weak, pd.DataFrame) else 0)
            source = f"of '{name}'" + (" + 'weak_labels'" if weak is not None else "")
        if bound is not None:
            data = self._params.get("data") or {}
            check_training_rows(self._params.get("train") or {}, bound, source=source, data=data)


class MlflowRunStackHook:
    """Keeps one entry per run on MLflow's active-run stack.

    kedro-mlflow re-enters its run before every node (``tracking.run.nested: true`` in ``conf/base/mlflow.yml``),
    which pushes the same run onto MLflow's thread-local stack once per node; a failed run then ended that run
    and logged "The run ... was closed because of an error in the pipeline." once per entry (17 lines for the
    default chain), and a finished run stayed "active" in the process. This drops the repeated entries after
    kedro-mlflow's ``before_node_run`` (``trylast``) and before its ``on_pipeline_error`` and
    ``after_pipeline_run`` (``tryfirst``: also when another hook refused the node), so a failure is one line.
    """

    @staticmethod
    def _collapse() -> None:
        from mlflow.tracking import fluent

        stack = getattr(fluent, "_active_run_stack", None)
        runs = stack.get() if stack is not None else []
        while len(runs) >= 2 and runs[-1].info.run_id == runs[-2].info.run_id:
            runs.pop()

    @hook_impl(trylast=True)
    def before_node_run(self) -> None:
        """Drop the entries kedro-mlflow pushed again for a run that is already active in this thread."""
        self._collapse()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        """Leave one entry for kedro-mlflow to close (and report) when the run fails."""
        self._collapse()

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        """Leave one entry for kedro-mlflow to close when the run finishes."""
        self._collapse()


class LoadErrorHintHook:
    """Adds the remedy to a failed read that Kedro's own datasets report only as a codec error.

    ``pandas.CSVDataset`` on a file that is not UTF-8 fails with ``'utf-8' codec can't decode byte 0xe9``;
    this logs which dataset it was, the encoding the bytes look like, and the ``load_args`` to set
    (``frugalml.datasets.TextTableDataset`` puts the same advice in its own error).
    """

    @hook_impl
    def on_pipeline_error(self, error: Exception, catalog: Any) -> None:
        """Log the encoding hint when a dataset could not be decoded.

        Args:
            error: What stopped the run.
            catalog: The run's catalog.
        """
        import re
        from pathlib import Path

        chain: list[BaseException] = []
        seen: BaseException | None = error
        while seen is not None and len(chain) < 20:
            chain.append(seen)
            seen = seen.__cause__ or seen.__context__
        text = " ".join(str(e) for e in chain)
        if not any(isinstance(e, UnicodeDecodeError) for e in chain) and "codec can't decode" not in text:
            return
        if "load_args: {encoding" in text:
            return  # the dataset already said it
        match = re.search(r"(\S+): Failed while loading data", text)
        name = match.group(1) if match else None
        encoding = "cp1252"
        try:
            from frugalml.datasets.corpus import guess_encoding

            described = catalog[name]._describe() if name else {}
            path = Path(str(described.get("filepath", "")))
            if path.is_file():
                encoding = guess_encoding(path.read_bytes()[: 1 << 20], exclude="utf-8")
        except Exception:  # noqa: BLE001 - a hint is best effort; the error itself is raised anyway
            pass
        logger.error(
            "%s is not UTF-8 text: add `load_args: {encoding: %s}` (or the file's real encoding) to its entry "
            "in conf/local/catalog.yml",
            f"dataset {name!r}" if name else "a dataset",
            encoding,
        )
