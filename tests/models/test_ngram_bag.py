"""The bag-of-n-grams module, its tf-idf weighting and its safetensors round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from frugalml.models.ngram_bag import NgramBagClassifier, csr_to_bags, fit_idf, tfidf_weights
from frugalml.models.pyfunc import load_text_classifier, predict_frame, save_text_classifier
from frugalml.nodes.train import train_text_classifier

DATA: dict = {}
NO_DP = {"enabled": False}  # these tests are about the model and its file format, not privacy


def test_tfidf_rows_are_unit_norm_and_empty_rows_stay_empty():
    counts = sp.csr_matrix(np.array([[1, 0, 3], [0, 0, 0], [2, 2, 0]], dtype=np.float32))
    weights = tfidf_weights(counts, fit_idf(counts), sublinear=True)
    norms = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=1)).ravel())
    assert np.allclose(norms, [1, 0, 1], atol=1e-6)
    # reference: sublinear tf * smoothed idf, normalised
    idf = np.log(4 / (1 + np.array([2, 1, 1]))) + 1
    row = np.array([1.0, 0.0, 1 + np.log(3)]) * idf
    assert np.allclose(weights[0].toarray().ravel(), row / np.linalg.norm(row), atol=1e-6)


def test_embedding_bag_equals_dense_matmul_reference():
    torch.manual_seed(0)
    module = NgramBagClassifier(50, 8, 2, hidden_dim=4)
    weights = sp.random(5, 50, density=0.2, format="csr", dtype=np.float32, random_state=0)
    fast = module(*csr_to_bags(weights))
    dense = torch.from_numpy(weights.toarray()) @ module.embedding.weight
    assert torch.allclose(fast, module.head(dense), atol=1e-5)


def test_save_load_round_trip_predicts_the_same(sample_emails, tmp_path):
    train, dev = sample_emails.iloc[:400], sample_emails.iloc[400:]
    model, _, _ = train_text_classifier(train, dev, {"epochs": 2, "progress": False, "privacy": NO_DP}, DATA, 0)
    save_text_classifier(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model.json").read_text())["format"] == "frugalml.ngram_bag/1"
    loaded = load_text_classifier(tmp_path / "m")
    assert np.allclose(model.predict_proba(dev), loaded.predict_proba(dev), atol=1e-6)
    frame = predict_frame(loaded, dev.head(3))
    assert list(frame.columns) == ["label", "probability_ham", "probability_spam"]


def test_missing_text_column_at_inference_is_named(sample_emails):
    model, _, _ = train_text_classifier(
        sample_emails.iloc[:300], sample_emails.iloc[300:], {"epochs": 1, "progress": False, "privacy": NO_DP}, DATA, 0
    )
    with pytest.raises(KeyError, match="subject"):
        model.predict_proba(pd.DataFrame({"body": ["hello"]}))


def test_bags_from_the_featuriser_hold_each_bucket_once(sample_emails):
    """The contract `frugalml_unique_per_bag` (fast ghost norms) relies on."""
    from frugalml.models.hashing import HashingConfig, HashingFeaturizer

    model = NgramBagClassifier(2**12, 4, 2)
    assert model.embedding.frugalml_unique_per_bag
    counts = HashingFeaturizer(HashingConfig(buckets=2**12)).transform(
        [sample_emails["subject"], sample_emails["body"]]
    )
    indices, offsets, _ = csr_to_bags(tfidf_weights(counts, None, sublinear=True))
    bounds = [*offsets.tolist(), len(indices)]
    assert all(len(set(indices[a:b].tolist())) == b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
