"""Kedro hooks of frugalml: strict parameter validation before any work, and dataset lineage in MLflow."""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any

import mlflow
import pandas as pd
from kedro.framework.hooks import hook_impl

from frugalml.params import validate_parameters

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
    time it is loaded in a run (name, content digest, source path, and the raw-archive digests it holds)."""

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
            dataset = mlflow.data.from_pandas(
                profile, source=self._source(dataset_name), name=dataset_name, digest=frame_digest(data)
            )
            mlflow.log_input(dataset, context=context, tags=tags)
        self._logged.add(dataset_name)
        logger.info("lineage: logged input %s (digest %s)", dataset_name, dataset.digest)
