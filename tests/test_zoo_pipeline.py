"""``kedro run --pipeline=train`` with ``train.model.kind: pretrained``: the shared train node under the default DP,
the encoder-feature cache in the catalog (a second run embeds nothing), and the MLflow pyfunc predicting raw text."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import SMALL, run, store_uri, train_only_project

pytestmark = pytest.mark.slow

PRETRAINED = {**SMALL, "train": {**SMALL["train"], "model": {"kind": "pretrained", "pretrained": {"max_tokens": 48}}}}


def _shards(project) -> set[str]:
    return {p.name for p in (project / "data" / "04_feature" / "encoder_cache").glob("*/shard-*.safetensors")}


def test_pretrained_kind_trains_privately_caches_features_and_serves_raw_text(
    tmp_path, corpus_path, sample_emails, monkeypatch
):
    project, train = train_only_project(tmp_path, corpus_path, sample_emails, PRETRAINED)
    run_id = run(project, "train", monkeypatch)
    client = MlflowClient(tracking_uri=store_uri(project))
    finished = client.get_run(run_id)
    assert finished.data.params["train.model.kind"] == "pretrained"
    assert finished.data.params["train.privacy.enabled"] == "True" and 0 < finished.data.metrics["train.epsilon"] <= 1
    shards = _shards(project)
    assert shards  # the training and dev rows' embeddings are cached ...
    run(project, "train", monkeypatch)
    assert _shards(project) == shards  # ... and a second run on the same rows embeds nothing new
    mlflow.set_tracking_uri(store_uri(project))
    loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    raw = pd.DataFrame({"subject": ["Re: lunch", "LOSE WEIGHT FAST!!!"], "body": ["See you at noon.", "Click now"]})
    predicted = loaded.predict(raw)
    assert list(predicted.columns) == ["label", "probability_ham", "probability_spam"]
    assert predicted["label"].isin([0, 1]).all()
    assert (predicted[["probability_ham", "probability_spam"]].sum(axis=1) - 1).abs().max() < 1e-5
