"""Helpers every benchmark shares: pipeline slices, machine facts, medians of timings, the corpus, MLflow logging.

Benchmarks produce their models and outputs by running **slices of the registered pipelines** (:func:`run_slice`),
so they run the product's own wiring and cannot drift from it. Configuration facts (parameters, the corpus
sources and digest, the tracking URI) are read from ``conf/`` through :mod:`frugalml.config`, once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
#: the rows of the ``--smoke`` sample: a small real slice of the corpus, seconds to a minute on 2 cores
SMOKE_SAMPLE = 400


@contextlib.contextmanager
def _in_repo() -> Iterator[None]:
    """Relative paths resolve under the repository, as in ``kedro run``."""
    previous = Path.cwd()
    os.chdir(REPO)
    try:
        yield
    finally:
        os.chdir(previous)


@cache
def pipelines() -> dict[str, Pipeline]:
    """The project's registered pipelines (``frugalml.pipeline_registry.register_pipelines``)."""
    from frugalml.pipeline_registry import register_pipelines

    return register_pipelines()


@cache
def _project_parameters() -> dict[str, Any]:
    from frugalml.params import load_project_parameters

    return load_project_parameters(CONF)  # conf/base: the committed parameters, not a developer's conf/local


#: what a ``--smoke`` run changes: it tests the plumbing on a few hundred rows, which cannot learn under DP at
#: epsilon 1, so the learnability pre-check warns there instead of refusing (set by :func:`sample_size`)
SMOKE_OVERRIDES: dict[str, Any] = {"train": {"privacy": {"refuse_signal_to_noise": 0}}}
_smoke = {"on": False}


def parameters(overrides: dict[str, Any] | None = None) -> Any:
    """The project's validated parameters (``conf/base``) with ``overrides`` deep-merged, as ``--params`` would
    (in a ``--smoke`` run, over :data:`SMOKE_OVERRIDES`)."""
    from frugalml.params import deep_merge, validate_parameters

    base = deep_merge(_project_parameters(), SMOKE_OVERRIDES) if _smoke["on"] else _project_parameters()
    return validate_parameters(deep_merge(base, overrides or {}))


def run_slice(
    pipeline: str | Pipeline,
    inputs: dict[str, Any],
    outputs: Sequence[str],
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the slice of a registered pipeline between ``inputs`` and ``outputs`` (dataset names), in memory.

    Args:
        pipeline: A name of ``register_pipelines()`` (``"train"``, ``"clean"``, ``"__default__"``...) or a
            pipeline.
        inputs: Dataset name -> value: where the slice starts (``Pipeline.from_inputs``). ``None`` is a
            valid value (a node's documented "absent" input).
        outputs: The datasets to return; the slice ends there (``Pipeline.to_outputs``).
        params: Overrides deep-merged over the project's ``conf/base`` parameters, then validated by the
            project's schema; the slice's ``params:<dotted key>`` inputs are fed from the result, as Kedro does.

    Other free inputs of the slice (expectation suites) are loaded from the project's catalog. No hooks run:
    no MLflow logging, no governance; the slice's intermediate datasets stay in memory.

    Returns:
        Output name -> value, for every name of ``outputs``.

    Raises:
        ValueError: When the slice needs a dataset that is neither given, a parameter, nor in the catalog.
    """
    from frugalml.runner import catalog_inputs, run_in_memory, slice_pipeline

    whole = pipelines()[pipeline] if isinstance(pipeline, str) else pipeline
    piece = slice_pipeline(whole, inputs, outputs)
    given = dict(inputs) | catalog_inputs(piece, inputs, CONF)
    logging.getLogger("kedro").setLevel(logging.WARNING)  # the runner's per-dataset lines would drown the tables
    with _in_repo():  # the validated parameters with every default filled in, as the figures were measured
        return run_in_memory(piece, given, params=parameters(params).model_dump(), conf_source=CONF, outputs=outputs)


def machine() -> dict[str, Any]:
    """CPU count and GPU name (or null), for the JSON line."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpus": os.cpu_count(), "gpu": gpu, "platform": platform.platform(), "torch": torch.__version__}


def median_time(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Run ``function`` ``repeats`` times; return the median seconds and the last result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def corpus_archive() -> pd.DataFrame:
    """The raw corpus archive, from the catalog's ``spam_corpus_archive`` sources (``frugalml.config``)."""
    from frugalml.config import corpus_sources, load_config
    from frugalml.datasets.corpus import MailCorpusDataset

    sources = []
    for source in corpus_sources(CONF):
        if source.get("kind") == "local" and not Path(source["path"]).is_absolute():
            source = source | {"path": str(REPO / source["path"])}  # `../shared/data/...` next to the repository
        sources.append(source)
    entry = (load_config("catalog", CONF, env=None) or {}).get("spam_corpus_archive") or {}
    cache_dir = REPO / entry.get("cache_dir", "data/01_raw")
    return MailCorpusDataset(sources=sources, cache_dir=str(cache_dir)).load()


def load_corpus_emails(sample: int | None = None) -> pd.DataFrame:
    """The parsed corpus: the ``ingest`` pipeline on the catalog's archive (``ingest.sample`` when ``sample``)."""
    overrides = {"ingest": {"sample": {"n": sample, "seed": 0}}} if sample else None
    return run_slice("ingest", {"spam_corpus_archive": corpus_archive()}, ["emails"], overrides)["emails"]


def validated_emails(emails: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """The ``quality`` pipeline from ``emails`` to ``emails_validated`` (table check, GX gate, text checks)."""
    return run_slice("quality", {"emails": emails}, ["emails_validated"], params)["emails_validated"]


def split(validated: pd.DataFrame, params: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """The ``split`` pipeline: train / dev / gold dev / test / unlabelled pool."""
    names = ["train_labelled", "dev_labelled", "dev_gold", "test_gold", "unlabelled_pool"]
    return run_slice("split", {"emails_validated": validated}, names, params)


def train_model(train: pd.DataFrame, dev: pd.DataFrame, params: dict[str, Any] | None = None, *, gate: bool = True):
    """The ``train`` pipeline up to ``text_classifier`` (``gate=False``: from the gate's output, the node alone)."""
    start = "train_clean" if gate else "train_set_checked"
    return run_slice("train", {start: train, "dev_labelled": dev}, ["text_classifier"], params)["text_classifier"]


def evaluate(model: Any, test: pd.DataFrame, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``evaluate`` pipeline's report of ``model`` on ``test`` (accuracy, F1, ...)."""
    inputs = {"text_classifier": model, "test_gold": test}
    return run_slice("evaluate", inputs, ["evaluation_report"], params)["evaluation_report"]


def tracking_uri() -> str:
    """The project's MLflow tracking URI (``conf/local/mlflow.yml`` over ``base``, via ``frugalml.config``)."""
    from frugalml.config import tracking_uri as project_tracking_uri

    return project_tracking_uri(REPO)


def log_to_mlflow(name: str, figures: dict[str, Any]) -> None:
    """Record the figures in the project's MLflow store, experiment ``frugalml-benchmarks``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment("frugalml-benchmarks")
    with mlflow.start_run(run_name=name):
        for key, value in figures.items():
            if isinstance(value, bool):
                mlflow.log_metric(key, float(value))
            elif isinstance(value, int | float):
                mlflow.log_metric(key, float(value))
        mlflow.log_dict(figures, f"{name}.json")


def emit(figures: dict[str, Any]) -> None:
    """The last line of every benchmark: one JSON object."""
    print(json.dumps(figures, sort_keys=True))


def reference_text(frame: pd.DataFrame) -> list[str]:
    """Subject and body, one string per row: what the TF-IDF+LR reference reads."""
    return (frame["subject"] + "\n" + frame["body"]).tolist()


def sample_size(args: Any, quick: int = 1500) -> int | None:
    """The corpus sample of a run: ``--smoke`` (:data:`SMOKE_SAMPLE`), ``--quick``, else the full corpus."""
    if getattr(args, "smoke", False):
        _smoke["on"] = True  # the smoke sample's parameters: SMOKE_OVERRIDES
        return SMOKE_SAMPLE
    return quick if getattr(args, "quick", False) else None


def finish(name: str, figures: dict[str, Any], args: Any, started: float) -> dict[str, Any]:
    """End a benchmark: add the run's facts (smoke, machine, seconds), log a full run to MLflow, print the JSON."""
    figures.update(smoke=bool(getattr(args, "smoke", False)), machine=machine(),
                   seconds=round(time.perf_counter() - started, 1))  # fmt: skip
    if not (getattr(args, "no_mlflow", False) or figures["smoke"]):
        log_to_mlflow(name, figures)
    emit(figures)
    return figures
