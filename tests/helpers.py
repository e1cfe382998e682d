"""What several test modules share (test modules never import each other): the repository's paths, the corpus
pinned in ``conf/base/catalog.yml``, a throwaway Kedro project made like the repository, and a real run in it.

Fixtures live in ``conftest.py``; plain helpers live here.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from frugalml.config import corpus_sha256, corpus_sources, tracking_uri

REPO = Path(__file__).resolve().parents[1]
#: the corpus digest pinned in the catalog (read from conf, never repeated)
CORPUS_SHA256 = corpus_sha256(REPO / "conf")
#: what `data:` says about the real corpus (conf/base/parameters.yml)
DATA = {"text_columns": ["subject", "body"], "label_column": "label", "id_column": "email_id", "group_column": "group"}

SMALL = {
    "ingest": {"sample": {"n": 300, "seed": 0}},
    "split": {"gold_dev_size": 20},
    # DP is on by default (conf/base: epsilon 1); a DP batch must fit the ~200 training rows of the sample.
    # ~200 rows cannot teach a model at epsilon 1 (signal-to-noise bound ~0.2): these runs test the plumbing,
    # so the learnability pre-check warns instead of refusing (tests/privacy/test_signal.py tests the refusal)
    "train": {"epochs": 5, "batch_size": 32, "progress": False, "privacy": {"refuse_signal_to_noise": 0}},
    # ... and for the same reason the evaluation's useless-model gate warns (tests/nodes/test_evaluate_metrics.py
    # tests the stop)
    "evaluate": {"useless_model": "warn"},
}


def repo_corpus_sources() -> list[dict[str, Any]]:
    """Where tests find the real corpus: ``$FRUGALML_CORPUS``, then the catalog's own sources (../shared/data, npm)."""
    import os

    sources = corpus_sources(REPO / "conf")
    for source in sources:  # relative local paths in the catalog are relative to the repository
        if source.get("kind") == "local" and not Path(source["path"]).is_absolute():
            source["path"] = str((REPO / source["path"]).resolve())
    extra = os.environ.get("FRUGALML_CORPUS")
    if extra:
        sources.insert(0, {"kind": "local", "path": extra, "sha256": CORPUS_SHA256})
    return sources


def store_uri(project: Path) -> str:
    """The tracking URI a project made by :func:`make_project` uses (from its ``conf/``)."""
    return tracking_uri(project)


def make_project(
    tmp_path: Path, corpus: Path | str, params: dict, catalog: dict | None = None, governance: dict | None = None
) -> Path:
    """A Kedro project in ``tmp_path/project``: ``conf/base`` of the repository, user overrides in ``conf/local``.

    Args:
        tmp_path: Where to make it.
        corpus: The verified corpus archive.
        params: ``conf/local/parameters.yml``.
        catalog: Extra ``conf/local/catalog.yml`` entries.
        governance: Blocks merged into the project's ``conf/base/governance.yml`` (its policy of record).
    """
    project = tmp_path / "project"
    shutil.copytree(REPO / "conf" / "base", project / "conf" / "base")
    shutil.copy(REPO / "conf" / "logging.yml", project / "conf" / "logging.yml")  # read by a `kedro` subprocess
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    shutil.copy(REPO / ".telemetry", project / ".telemetry")  # the project's telemetry opt-out
    (project / "src").mkdir()  # kedro wants the source dir; the installed frugalml package is used
    local = project / "conf" / "local"
    local.mkdir(parents=True)
    overrides = {
        "spam_corpus_archive": {
            "type": "frugalml.datasets.MailCorpusDataset",
            "cache_dir": "data/01_raw",
            "sources": [{"kind": "local", "path": str(corpus), "sha256": CORPUS_SHA256}],
        },
        **(catalog or {}),
    }
    (local / "catalog.yml").write_text(yaml.safe_dump(overrides))
    (local / "parameters.yml").write_text(yaml.safe_dump(params))
    if governance:  # the project's own policy of record (conf/base): conf/local may only make it stricter
        policy = yaml.safe_load((project / "conf" / "base" / "governance.yml").read_text())
        for block, values in governance.items():
            policy[block] = {**policy.get(block, {}), **values}
        (project / "conf" / "base" / "governance.yml").write_text(yaml.safe_dump(policy))
    return project


def run(project: Path, pipeline: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``kedro run --pipeline=PIPELINE`` in ``project`` (a real session); returns the MLflow run id."""
    monkeypatch.chdir(project)
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project) as session:
            session.run(pipeline_names=[pipeline])
    finally:
        while mlflow.active_run():  # a run left active would capture the next project's logging
            mlflow.end_run()
    client = MlflowClient(tracking_uri=store_uri(project))
    experiment = client.get_experiment_by_name("frugalml")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id


def train_only_project(tmp_path: Path, corpus_path: Path, sample_emails: pd.DataFrame, params: dict):
    """A project whose `train` pipeline reads `train_clean` and `dev_labelled` made from real e-mails."""
    from frugalml.nodes.split import split_dataset

    project = make_project(tmp_path, corpus_path, params)
    train, dev, *_ = split_dataset(sample_emails, {"gold_dev_size": 0}, DATA, 0)
    primary = project / "data" / "03_primary"
    primary.mkdir(parents=True)
    train.to_parquet(primary / "train_clean.parquet")
    dev.to_parquet(primary / "dev_labelled.parquet")
    return project, train


def bad_soft_labels(train: pd.DataFrame) -> pd.DataFrame:
    """Other training rows whose soft labels are negative: the training node refuses them after the gate passed."""
    return train.iloc[:200].assign(label_prob_0=-0.5, label_prob_1=1.5)


def stage(name: str):
    """The registered pipeline ``name`` (what ``kedro run --pipeline=NAME`` runs)."""
    from frugalml.pipeline_registry import register_pipelines

    return register_pipelines()[name]


def suite(name: str) -> dict:
    """An expectation suite of ``conf/base/expectations`` as its catalog entry loads it."""
    return yaml.safe_load((REPO / "conf" / "base" / "expectations" / f"{name}.yml").read_text())


#: training fast enough for wiring tests (DP stays on: the default; on a few hundred rows the learnability
#: pre-check warns instead of refusing, as in SMALL)
FAST_TRAIN = {"epochs": 2, "progress": False, "features": {"buckets": 4096}, "privacy": {"refuse_signal_to_noise": 0}}
