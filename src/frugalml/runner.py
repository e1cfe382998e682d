"""Run a pipeline (or a slice of one) in memory, with the project's validated parameters.

What benchmarks, wiring tests and notebooks use to exercise the *real* pipelines without a Kedro session,
files or MLflow: the pipeline is the registered one (sliced with Kedro's ``from_inputs``/``to_outputs``…),
every dataset is a ``MemoryDataset``, and parameters are the project's ``conf/`` (``base`` alone by default)
deep-merged with overrides and validated the way :class:`~frugalml.hooks.ParameterValidationHook` validates a
``kedro run`` (so a typo in an override fails with the key's name). Hooks (audit, RBAC, lineage) do not run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DataCatalog, DatasetError, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from frugalml.params import deep_merge, load_project_parameters, validate_parameters

_UNSAVED = object()


class _Kept(AbstractDataset):
    """An in-memory dataset that may hold ``None`` (a node's documented "absent" input) and that the runner's
    release does not empty (a requested output that later nodes of the pipeline also read)."""

    def __init__(self, data: Any = _UNSAVED) -> None:
        self._data = data

    def load(self) -> Any:
        if self._data is _UNSAVED:
            raise DatasetError("the pipeline did not produce this output")
        return self._data

    def save(self, data: Any) -> None:
        self._data = data

    def _describe(self) -> dict[str, Any]:
        return {"type": type(self._data).__name__}


def parameter_entries(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params:<key>`` for every key and nested key, as Kedro's context adds them (plus ``parameters``)."""
    entries: dict[str, Any] = {"parameters": dict(params)}

    def walk(prefix: str, value: Any) -> None:
        entries[f"params:{prefix}"] = value
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)

    for key, value in params.items():
        walk(str(key), value)
    return entries


def project_parameters(
    overrides: Mapping[str, Any] | None = None, conf_source: str | Path = "conf", env: str | None = None
) -> dict[str, Any]:
    """The project's parameters with ``overrides`` deep-merged, validated.

    Raises:
        ParameterError: Naming a bad or unknown key.
    """
    params = deep_merge(load_project_parameters(conf_source, env), dict(overrides or {}))
    validate_parameters(params)
    return params


def run_in_memory(
    pipeline: Pipeline,
    inputs: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    conf_source: str | Path = "conf",
    env: str | None = None,
    outputs: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Run ``pipeline`` on in-memory ``inputs`` and return the data of its outputs.

    Args:
        pipeline: A registered pipeline or a slice of one.
        inputs: Dataset name -> data for the pipeline's free inputs (``params:`` entries come from conf).
        params: Parameter overrides, deep-merged over the project's parameters.
        conf_source: The project's ``conf`` folder.
        env: A config environment over ``base`` (``None``: the committed ``base`` files alone).
        outputs: Datasets to return (default: the pipeline's free outputs). Intermediate datasets may be named.

    Returns:
        Dataset name -> data.

    Raises:
        ValueError: When an input the pipeline needs is not given.
        ParameterError: When an override is not a valid parameter.
    """
    values = {**parameter_entries(project_parameters(params, conf_source, env)), **inputs}
    needed = {name for name in pipeline.inputs() if not name.startswith("params:") and name != "parameters"}
    missing = sorted(needed - set(inputs))
    if missing:
        raise ValueError(f"run_in_memory: give the pipeline's inputs {missing}")
    catalog = DataCatalog({name: _Kept(None) if data is None else MemoryDataset(data) for name, data in values.items()})
    wanted = list(outputs) if outputs is not None else sorted(pipeline.outputs())
    for name in wanted:
        if name in inputs:
            catalog[name] = _Kept(inputs[name])
        elif name not in catalog:
            catalog[name] = _Kept()
    SequentialRunner().run(pipeline, catalog)
    return {name: catalog.load(name) for name in wanted}


def slice_pipeline(pipeline: Pipeline, inputs: Iterable[str], outputs: Iterable[str]) -> Pipeline:
    """The part of ``pipeline`` that starts at the given ``inputs`` and ends at ``outputs``.

    A given input is computed already: the nodes that would produce it do not run (nor what only they need).
    """
    given = set(inputs)
    piece = pipeline.from_inputs(*given)
    producers = [node for node in piece.nodes if set(node.outputs) & given]
    return (piece - Pipeline(producers)).to_outputs(*outputs)


def catalog_inputs(pipeline: Pipeline, given: Iterable[str], conf_source: str | Path = "conf") -> dict[str, Any]:
    """The free inputs of ``pipeline`` that are neither given nor parameters, loaded from the project's catalog
    (configuration datasets such as the expectation suites), with relative paths under the project.

    Raises:
        ValueError: When such an input has no catalog entry.
    """
    import contextlib
    import os

    from frugalml.config import load_config

    names = sorted(n for n in pipeline.inputs() - set(given) if not n.startswith("params:") and n != "parameters")
    if not names:
        return {}
    conf = Path(conf_source).resolve()
    previous = Path.cwd()
    os.chdir(conf.parent)
    with contextlib.ExitStack() as stack:
        stack.callback(os.chdir, previous)
        catalog = DataCatalog.from_config(load_config("catalog", conf, env=None))
        unknown = [name for name in names if name not in catalog]
        if unknown:
            raise ValueError(f"the pipeline needs {unknown}: pass them as inputs (no catalog entry reads them)")
        return {name: catalog.load(name) for name in names}
