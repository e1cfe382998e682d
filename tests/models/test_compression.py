"""Compression: the tensor codecs, ``quantize`` on real trained models (the n-gram bag, and the pretrained kind
with the pinned MiniLM encoder compressed into the artifact), the saved artifact and its digests, bad requests."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from frugalml.errors import CompressionError, ModelArtifactError, PretrainedModelError
from frugalml.models.codecs import (
    CODECS,
    StaticInt8Linear,
    decode,
    deserialise,
    encode,
    fp8_available,
    observe_range,
    serialise,
    static_input_meta,
    unpack,
)
from frugalml.models.compression import CompressedClassifier, latency, load_compressed_encoder_codes, quantize
from frugalml.models.embedding_store import EmbeddingStore
from frugalml.models.encoder import COMPRESSED_WEIGHTS, forget_loaded_encoders
from frugalml.models.pyfunc import load_text_classifier, predict_frame, save_text_classifier
from frugalml.models.zoo import load_classifier
from frugalml.nodes.split import split_dataset
from frugalml.nodes.train import train_text_classifier
from tests.helpers import DATA

NO_DP = {"epochs": 15, "patience": 3, "progress": False, "privacy": {"enabled": False}}
SHORT = {"max_tokens": 48, "batch_size": 64}


@pytest.fixture(scope="module")
def sets(sample_emails: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, dev, _, test, *_ = split_dataset(sample_emails, {"gold_dev_size": 0}, DATA, 0)
    return train, dev, test


@pytest.fixture(scope="module")
def bag(sets):
    train, dev, _ = sets
    model, *_ = train_text_classifier(train, dev, {**NO_DP, "features": {"buckets": 2**14}}, {}, 0, None)
    return model


@pytest.fixture(scope="module")
def pretrained(sets, tmp_path_factory):
    train, dev, _ = sets
    params = {**NO_DP, "lr": 0.02, "model": {"kind": "pretrained", "pretrained": SHORT}}
    model, *_ = train_text_classifier(train, dev, params, {}, 0, EmbeddingStore(tmp_path_factory.mktemp("cache")))
    return model


def _compress(model, dev, precision, **settings):
    return quantize(model, precision=precision, calibration=dev, label_column="label", load_base=load_classifier,
                    **settings)  # fmt: skip


# --- codecs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "bytes_per_weight", "max_error"),
    [("fp16", 2.0, 1e-3), ("bf16", 2.0, 5e-3), ("int8", 1.02, 0.01), ("int4-kmeans", 0.51, 0.12)],
)
def test_each_codec_stores_what_it_says_and_decodes_close(codec, bytes_per_weight, max_error):
    torch.manual_seed(0)
    weight = torch.randn(768, 384) * 0.05
    code = encode(weight, codec)
    relative = ((decode(code) - weight).norm() / weight.norm()).item()
    assert relative < max_error, relative
    assert code.nbytes() / weight.numel() <= bytes_per_weight
    assert decode(code).dtype == torch.float32 and decode(code).shape == weight.shape


def test_int4_kmeans_uses_16_centroids_per_group_and_packs_two_indices_per_byte():
    torch.manual_seed(1)
    weight = torch.randn(96, 128)
    code = encode(weight, "int4-kmeans", group_weights=1024)  # 8 rows per codebook -> 12 codebooks
    assert code.parts["codebook"].shape == (12, 16) and code.parts["codebook"].dtype == torch.float16
    assert code.parts["idx"].dtype == torch.uint8 and code.parts["idx"].numel() == weight.numel() // 2
    codes = unpack(code.parts["idx"], weight.numel()).reshape(96, 128)
    decoded = decode(code)
    for row in (0, 8, 95):  # each row's values are exactly its group's centroids
        book = code.parts["codebook"][min(row // 8, 11)].float()
        assert torch.equal(decoded[row], book[codes[row]])
    # k-means beats a uniform 16-level grid on the same groups (that is why it is k-means)
    low, high = weight.min(), weight.max()
    uniform = torch.round((weight - low) / (high - low) * 15) / 15 * (high - low) + low
    assert (decoded - weight).pow(2).mean() < (uniform - weight).pow(2).mean()


@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse"])
def test_int8_observers_differ_where_there_are_outliers(observer):
    torch.manual_seed(2)
    weight = torch.randn(16, 30_000) * 0.02
    weight[:, 0] = 1.0  # one outlier per channel (1 in 30,000: above the 99.99th percentile)
    code = encode(weight, "int8", observer=observer)
    minmax = encode(weight, "int8", observer="minmax")
    if observer == "minmax":
        assert torch.allclose(code.parts["scale"], weight.abs().amax(1) / 127)
    else:  # both clip the outlier: smaller scales, a better fit of the other weights
        assert (code.parts["scale"] < minmax.parts["scale"]).all()
        body = slice(1, None)
        assert (decode(code)[:, body] - weight[:, body]).abs().mean() < (
            decode(minmax)[:, body] - weight[:, body]
        ).abs().mean()


def test_serialised_codes_round_trip_and_carry_their_codecs():
    torch.manual_seed(3)
    codes = {"a": encode(torch.randn(40, 32), "int4-kmeans"), "b": encode(torch.randn(16, 8), "int8"),
             "ids": encode(torch.arange(10), "fp16")}  # fmt: skip
    back = deserialise(serialise(codes))
    assert back["ids"].codec == "raw" and torch.equal(back["ids"].parts["w"], torch.arange(10))
    for name, code in codes.items():
        assert torch.equal(decode(back[name]), decode(code))
    with pytest.raises(CompressionError, match="not a frugalml compressed-weights file"):
        deserialise(b"\x00" * 64)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: encode(torch.randn(2, 4), "int4-kmeans", name="head.bias"), "head.bias has 8 weights, too few"),
        (lambda: encode(torch.randn(4, 4), "int3"), "unsupported codec 'int3'"),
        (lambda: encode(torch.randn(4, 4), "int8", observer="entropy"), "unknown observer 'entropy'"),
    ],
)
def test_bad_codec_requests_are_named(call, match):
    with pytest.raises(CompressionError, match=match):
        call()


def test_activation_observers_cover_zero_and_clip_outliers_as_named():
    values = torch.cat([torch.linspace(-1.0, 3.0, 100_000), torch.tensor([40.0])])  # one outlier
    lo, hi = observe_range(values, "minmax")
    assert (lo, hi) == (-1.0, 40.0)
    p_lo, p_hi = observe_range(values, "percentile")
    assert -1.0 <= p_lo < -0.99 and 2.99 < p_hi < 3.01  # the outlier is clipped
    m_lo, m_hi = observe_range(values, "mse")
    assert 3.0 <= m_hi < 40.0 and m_lo <= 0  # a shrink of the min-max range, not the whole of it
    assert observe_range(torch.full((50,), 2.0), "minmax")[0] == 0.0  # the range always holds 0
    with pytest.raises(CompressionError, match="unknown observer 'max'"):
        observe_range(values, "max")
    with pytest.raises(CompressionError, match="needs finite activations"):
        observe_range(torch.tensor([1.0, float("nan")]), "minmax")
    with pytest.raises(CompressionError, match="needs finite activations"):
        observe_range(torch.empty(0), "mse")


def test_a_static_int8_linear_computes_with_its_calibrated_range():
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(96, 64, generator=generator) * 0.1, torch.randn(96, generator=generator)
    calibration = torch.randn(512, 64, generator=generator)
    code = encode(weight, "int8", name="w")
    code.meta.update(static_input_meta(calibration, "minmax"))
    layer = StaticInt8Linear(code, bias)
    x = torch.randn(7, 5, 64, generator=generator) * 0.8  # inside the calibrated range
    exact = x @ weight.T + bias
    y = layer(x)
    assert y.shape == (7, 5, 96) and y.dtype == torch.float32
    assert float((y - exact).norm() / exact.norm()) < 0.02
    # the same quantised numbers multiplied in float32 (the path without oneDNN) agree with the integer kernel
    if "onednn" in torch.backends.quantized.supported_engines:  # x86 builds, this project's CPU torch included
        assert layer.integer, "oneDNN's quantised Linear is there but the probe says it does not run"
    fallback = StaticInt8Linear(code, bias)
    fallback.integer = False
    assert torch.allclose(fallback(x), y, atol=1e-3)
    assert torch.equal(copy.deepcopy(layer)(x), y)  # a copy re-packs its weight (oneDNN's is not copyable)
    # inputs far outside the calibrated range saturate (the range is fixed, not measured per batch)
    huge = torch.full((1, 64), 1000.0)
    assert float((layer(huge) - (huge @ weight.T + bias)).norm() / (huge @ weight.T + bias).norm()) > 0.5


@pytest.mark.parametrize(
    "quantiser",
    [{"input_scale": 0.0, "input_zero_point": 0}, {"input_scale": -0.1, "input_zero_point": 10},
     {"input_scale": float("nan"), "input_zero_point": 10}, {"input_scale": 0.1, "input_zero_point": 300},
     {"input_scale": "0.1", "input_zero_point": 10}, {"input_scale": 0.1}],
)  # fmt: skip
def test_a_hand_made_input_quantiser_is_refused_by_name(quantiser):
    code = encode(torch.randn(16, 64), "int8", name="w")
    code.meta.update(quantiser)
    with pytest.raises(CompressionError, match="static INT8 layer needs a positive finite input_scale"):
        StaticInt8Linear(code, None)


def test_every_codec_name_is_known():
    assert set(CODECS) == {"raw", "fp32", "fp16", "bf16", "fp8", "int8", "int4-kmeans"}


# --- quantize on trained models ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        ({"precision": "int2"}, "unsupported precision 'int2'"),
        ({"precision": "int8", "calibration": "dev"}, "calibration set must be a table"),
        ({"precision": "int8", "calibration": "empty"}, "calibration set is empty"),
        ({"precision": "int8", "calibration": "no_text"}, r"lacks column\(s\) \['subject', 'body'\]"),
        ({"precision": "int8", "calibration": "no_label"}, r"lacks column\(s\) \['label'\]"),
        ({"precision": "int8", "observer": "entropy"}, "unknown observer"),
        ({"precision": "int4-kmeans", "group_weights": 8}, "group_weights must be >= 16"),
        (
            {"precision": "int8", "prune_ffn": 1.0},
            r"FFN pruning ratio must be in \[0, 1\) \(a share removed\), got 1.0",
        ),
        ({"precision": "int8", "prune_heads": -0.1}, r"head pruning ratio must be in \[0, 1\)"),
        ({"precision": "int8", "prune_importance": "gradient"}, "unknown pruning importance 'gradient'"),
        ({"precision": "int8", "prune_ffn": 0.2}, "the model has none to prune"),
        ({"precision": "int8", "activations": "fixed"}, "unknown activations 'fixed'"),
        ({"precision": "int8", "activations": "static", "activation_observer": "max"}, "unknown activation_observer"),
        ({"precision": "int4-kmeans", "activations": "static"}, "static INT8 activations need precision int8"),
        ({"precision": "int8", "activations": "static"}, "static INT8 activations apply to an encoder's Linear"),
    ],
)
def test_bad_requests_fail_before_any_work(bag, sets, request_, match):
    dev = sets[1]
    calibrations = {"dev": dev.to_numpy(), "empty": dev.iloc[:0], "no_text": dev.drop(columns=["subject", "body"]),
                    "no_label": dev.drop(columns=["label"])}  # fmt: skip
    settings = dict(request_)
    calibration = calibrations.get(settings.pop("calibration", None), dev)
    with pytest.raises(CompressionError, match=match):
        quantize(bag, calibration=calibration, label_column="label", load_base=load_classifier, **settings)


def test_a_frozen_twin_built_for_another_model_is_refused(bag, pretrained, sets):
    from frugalml.models.compression import compressible

    with compressible(bag) as twin:  # a frozen-encoder (here: encoder-less) model is its own twin, nothing built
        assert twin.model is bag and twin.source is bag
        with pytest.raises(CompressionError, match="frozen was built for another model"):
            quantize(pretrained, precision="fp16", load_base=load_classifier, frozen=twin)
        _, report = quantize(bag, precision="fp16", load_base=load_classifier, frozen=twin)
    assert report["size_ratio"] > 1.5  # the bag's own twin compresses it


@pytest.mark.skipif(fp8_available(), reason="this machine has an FP8 GPU")
def test_fp8_on_a_machine_without_an_fp8_gpu_is_refused(bag, sets):
    with pytest.raises(CompressionError, match="'fp8' needs a CUDA GPU with FP8 support"):
        _compress(bag, sets[1], "fp8")


@pytest.mark.parametrize(("precision", "min_ratio"), [("fp16", 1.9), ("int8", 3.5), ("int4-kmeans", 5.0)])
def test_the_bag_compresses_keeps_its_predictions_and_round_trips(tmp_path, bag, sets, precision, min_ratio):
    _, dev, test = sets
    compressed, report = _compress(bag, dev, precision)
    assert report["size_ratio"] >= min_ratio, report
    assert report["calibration"]["rows"] == len(dev)
    assert report["calibration"]["agreement"] >= 0.97, report["calibration"]
    assert abs(report["calibration"]["accuracy"] - report["calibration"]["accuracy_reference"]) <= 0.03
    save_text_classifier(compressed, tmp_path / "m")
    on_disk = (tmp_path / "m" / "model.safetensors").stat().st_size
    assert report["bytes"] <= on_disk <= report["bytes"] * 1.05 + 4096  # the report's bytes are the file's
    loaded = load_text_classifier(tmp_path / "m")
    assert isinstance(loaded, CompressedClassifier) and loaded.spec.precision == precision
    rows = test[["subject", "body"]].iloc[:50]
    pd.testing.assert_frame_equal(predict_frame(loaded, rows), predict_frame(compressed, rows))


def test_keep_int8_leaves_matching_tensors_at_8_bits(bag, sets):
    compressed, report = _compress(bag, sets[1], "int4-kmeans", keep_int8=("module.head.*",), min_numel=2)
    assert compressed.codes["module.embedding.weight"].codec == "int4-kmeans"
    assert compressed.codes["module.head.1.weight"].codec == "int8"
    assert compressed.codes["idf"].codec == "int8"  # a vector: one scale, never 16 centroids
    assert set(report["tensors"]) >= {"int4-kmeans", "int8"}


def test_a_changed_file_in_a_saved_model_is_refused(tmp_path, bag, sets):
    compressed, _ = _compress(bag, sets[1], "int8")
    save_text_classifier(compressed, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelArtifactError, match="model.safetensors has sha256 .* but model.json records"):
        load_text_classifier(tmp_path / "m")
    weights.unlink()
    with pytest.raises(ModelArtifactError, match="lacks model.safetensors"):
        load_text_classifier(tmp_path / "m")


def test_compressing_a_compressed_model_is_refused(bag, sets):
    compressed, _ = _compress(bag, sets[1], "int8")
    with pytest.raises(CompressionError, match="compressed already"):
        _compress(compressed, sets[1], "int8")


def test_the_pretrained_kind_carries_a_compressed_encoder_that_runs_int8(tmp_path, pretrained, sets):
    _, dev, test = sets
    compressed, report = _compress(pretrained, dev, "int8")
    fp32_encoder = 90_864_192  # bytes of the pinned MiniLM model.safetensors (checked below via the report)
    assert report["fp32_bytes"] >= fp32_encoder
    assert report["size_ratio"] >= 3.5, report
    assert report["calibration"]["agreement"] >= 0.95, report["calibration"]
    assert report["tensors"]["int8"]["tensors"] >= 37  # the 36 Linear weights of 6 layers, the pooler, embeddings
    save_text_classifier(compressed, tmp_path / "m")
    folder = tmp_path / "m"
    files = json.loads((folder / "model.json").read_text())["files"]
    assert {"model.safetensors", f"encoder/{COMPRESSED_WEIGHTS}", "encoder/config.json"} <= set(files)
    assert not (folder / "encoder" / "model.safetensors").exists()  # the fp32 encoder is not shipped
    forget_loaded_encoders()
    loaded = load_text_classifier(folder)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from frugalml.models.encoder import load_encoder

    encoder = load_encoder(loaded.encoder)
    assert sum(isinstance(m, DynamicLinear) for m in encoder.model.modules()) == 37  # runs as INT8
    rows = test[["subject", "body"]].iloc[:30]
    pd.testing.assert_frame_equal(predict_frame(loaded, rows), predict_frame(compressed, rows), atol=1e-5)
    codes = load_compressed_encoder_codes(folder / "encoder")
    assert codes["embeddings.word_embeddings.weight"].codec == "int8"
    assert latency(loaded, rows, batch=4, repeats=1) > 0


def test_static_int8_activations_are_calibrated_on_dev_and_round_trip(tmp_path, pretrained, sets):
    _, dev, test = sets
    with pytest.raises(CompressionError, match="static INT8 activations fix each layer's input range"):
        quantize(pretrained, precision="int8", activations="static", load_base=load_classifier)
    compressed, report = _compress(pretrained, dev, "int8", activations="static", activation_observer="minmax",
                                   max_dynamic_int8_error=0.05)  # fmt: skip
    static, fp32 = set(report["encoder_static_int8"]), set(report["encoder_fp32_compute"])
    assert len(static) + len(fp32) == 36 and len(static) >= 25, report["encoder_sensitivity"]  # 6 x 6 Linears
    assert report["calibration"]["agreement"] >= 0.95, report["calibration"]
    for name in static:
        quantiser = report["encoder_sensitivity"][name]["input_quantiser"]
        assert quantiser["input_observer"] == "minmax" and quantiser["input_scale"] > 0
        assert report["encoder_sensitivity"][name]["dynamic_int8_error"] <= 0.05
    save_text_classifier(compressed, tmp_path / "m")
    forget_loaded_encoders()
    loaded = load_text_classifier(tmp_path / "m")
    from frugalml.models.encoder import load_encoder

    modules = dict(load_encoder(loaded.encoder).model.named_modules())
    assert {f"{n}.weight" for n, m in modules.items() if isinstance(m, StaticInt8Linear)} == static
    codes = load_compressed_encoder_codes(tmp_path / "m" / "encoder")
    name = sorted(static)[0]
    assert codes[name].meta["input_scale"] == report["encoder_sensitivity"][name]["input_quantiser"]["input_scale"]
    rows = test[["subject", "body"]].iloc[:30]
    pd.testing.assert_frame_equal(predict_frame(loaded, rows), predict_frame(compressed, rows), atol=1e-5)


def test_a_tampered_compressed_encoder_is_refused(tmp_path, pretrained, sets):
    compressed, _ = _compress(pretrained, sets[1], "int4-kmeans")
    save_text_classifier(compressed, tmp_path / "m")
    weights = tmp_path / "m" / "encoder" / COMPRESSED_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelArtifactError, match=f"{COMPRESSED_WEIGHTS} has sha256"):
        load_text_classifier(tmp_path / "m")
    metadata = json.loads((tmp_path / "m" / "model.json").read_text())
    metadata.pop("files")  # a folder whose manifest was stripped: the encoder's pinned digest still refuses it
    (tmp_path / "m" / "model.json").write_text(json.dumps(metadata))
    forget_loaded_encoders()
    loaded = load_text_classifier(tmp_path / "m")
    with pytest.raises(PretrainedModelError, match="has sha256 .* but .* is pinned"):
        loaded.predict_proba(sets[2].iloc[:2])


def test_int4_pretrained_is_8x_smaller_and_close(pretrained, sets):
    compressed, report = _compress(pretrained, sets[1], "int4-kmeans")
    assert report["size_ratio"] >= 7.0, report
    assert report["calibration"]["agreement"] >= 0.9, report["calibration"]
    assert np.isfinite(compressed.predict_proba(sets[2].iloc[:5])).all()


def test_gptq_and_centroid_refit_fit_the_encoders_codebooks_to_its_dev_inputs(tmp_path, pretrained, sets):
    _, dev, test = sets
    from frugalml.nodes.compress import compress_classifier

    plain, plain_report = _compress(pretrained, dev, "int4-kmeans")  # quantize() leaves both off unless asked
    assert not any("codebook_fit" in entry for entry in plain_report["encoder_sensitivity"].values())
    # the stage: gptq by its defaults, the refit asked for; its report carries each tensor's errors
    params = {"precision": "int4-kmeans", "compare": [], "refit_centroids": True, "latency_batches": [4],
              "latency_repeats": 1}  # fmt: skip
    fitted, _, stage_report = compress_classifier(pretrained, dev, params, {})
    report = stage_report["variants"]["int4-kmeans"]
    fits = {name: entry["codebook_fit"] for name, entry in report["encoder_sensitivity"].items()
            if "codebook_fit" in entry}  # fmt: skip
    assert len(fits) == 36, sorted(fits)  # every Linear of the 6 layers (the pooler is never calibrated)
    for name, errors in fits.items():  # an assignment or refit that did not help would leave its error equal
        assert errors["gptq"] < errors["kmeans"], (name, errors)
    assert sum(errors["refit"] < errors["gptq"] for errors in fits.values()) >= 30, fits
    mean = {step: np.mean([errors[step] for errors in fits.values()]) for step in ("kmeans", "gptq", "refit")}
    assert mean["refit"] < 0.9 * mean["kmeans"], mean
    assert report["bytes"] == plain_report["bytes"]  # same layout, same size
    assert report["agreement"] >= max(0.9, plain_report["calibration"]["agreement"] - 0.02), report
    before = load_compressed_encoder_codes(_saved(plain, tmp_path / "plain") / "encoder")
    after = load_compressed_encoder_codes(_saved(fitted, tmp_path / "fitted") / "encoder")
    name = "encoder.layer.0.output.dense.weight"
    assert not torch.equal(before[name].parts["idx"], after[name].parts["idx"])
    assert not torch.equal(before[name].parts["codebook"], after[name].parts["codebook"])
    forget_loaded_encoders()
    loaded = load_text_classifier(tmp_path / "fitted")
    rows = test[["subject", "body"]].iloc[:20]
    pd.testing.assert_frame_equal(predict_frame(loaded, rows), predict_frame(fitted, rows), atol=1e-5)


def _saved(model, folder):
    save_text_classifier(model, folder)
    return folder


class _Counting:
    """The trained bag, counting how often it is asked to predict (to show a refusal comes first)."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0
        self.text_columns, self.labels, self.kind = model.text_columns, model.labels, "ngram_bag"

    def predict_proba(self, frame, **kwargs):
        self.calls += 1
        return self.model.predict_proba(frame, **kwargs)


@pytest.mark.parametrize(
    ("params", "match"),
    [({"precision": "int8", "compare": ["fp8"]}, "'fp8' needs a CUDA GPU"),
     ({"precision": "int4-kmeans", "int8_share": 0.5, "compare": []}, None),
     ({"precision": "int8", "compare": [], "prune_ffn": 0.3}, "the model has none to prune"),
     ({"precision": "int8", "compare": [], "onnx": True}, r"ONNX export covers the \['pretrained'\] kind")],
)  # fmt: skip
def test_the_compress_node_refuses_every_bad_variant_before_running_the_model(bag, sets, params, match):
    from frugalml.nodes.compress import compress_classifier

    if match is None:  # the same request, but the calibration set lacks the label column
        counting = _Counting(bag)
        with pytest.raises(CompressionError, match=r"lacks column\(s\) \['label'\]"):
            compress_classifier(counting, sets[1].drop(columns=["label"]), params, DATA)
        assert counting.calls == 0
        return
    if "fp8" in params["compare"] and fp8_available():
        pytest.skip("this machine has an FP8 GPU")
    counting = _Counting(bag)
    with pytest.raises(CompressionError, match=match):
        compress_classifier(counting, sets[1], params, DATA)
    assert counting.calls == 0


# --- structured pruning ----------------------------------------------------------------------------------------


def test_pruning_removes_channels_and_heads_physically_and_round_trips(tmp_path, pretrained, sets):
    _, dev, test = sets
    compressed, report = _compress(pretrained, dev, "fp16", prune_ffn=0.25, prune_heads=0.25)
    codes = {name: code for name, code in compressed._holder.codes.items()}
    assert codes["encoder.layer.0.intermediate.dense.weight"].shape == [1152, 384]  # 1536 FFN channels -> 1152
    assert codes["encoder.layer.5.output.dense.weight"].shape == [384, 1152]
    assert codes["encoder.layer.3.attention.self.query.weight"].shape == [288, 384]  # 12 heads of 32 -> 9
    assert codes["encoder.layer.3.attention.output.dense.weight"].shape == [384, 288]
    assert report["encoder_parameters"] < 22_713_216 - 6 * (3 * 384 * 96 + 2 * 384 * 384)  # fewer weights stored
    layers = report["encoder_pruning"]
    assert len(layers) == 6 and all(0 < entry["ffn_error"] < 1 and 0 < entry["attention_error"] < 1 for entry in layers)
    assert report["calibration"]["agreement"] >= 0.9, report["calibration"]
    save_text_classifier(compressed, tmp_path / "m")
    forget_loaded_encoders()
    loaded = load_text_classifier(tmp_path / "m")
    from frugalml.models.encoder import load_encoder

    attention = load_encoder(loaded.encoder).model.encoder.layer[3].attention.self
    assert attention.num_attention_heads == 9 and attention.query.weight.shape == (288, 384)
    rows = test[["subject", "body"]].iloc[:30]
    pd.testing.assert_frame_equal(predict_frame(loaded, rows), predict_frame(compressed, rows), atol=1e-5)


def test_fluctuation_pruning_with_bias_compensation_beats_weight_norms(pretrained, sets):
    from frugalml.models.encoder import frame_texts, load_encoder

    dev = sets[1]
    texts = frame_texts(dev.iloc[:40], ["subject", "body"])
    encoder = load_encoder(pretrained.encoder)
    reference = encoder.embed(texts)
    cosines = {}
    for importance in ("fluctuation", "l2"):
        compressed, _ = _compress(pretrained, dev, "fp16", prune_ffn=0.2, prune_importance=importance)
        pruned = load_encoder(compressed.encoder).embed(texts)
        cosines[importance] = float((pruned * reference).sum(axis=1).mean())
    assert cosines["fluctuation"] > cosines["l2"] + 0.01, cosines
    with pytest.raises(CompressionError, match="fluctuation pruning scores channels on calibration texts"):
        quantize(pretrained, precision="fp16", prune_ffn=0.2, load_base=load_classifier)
    weights_only, report = quantize(pretrained, precision="fp16", prune_ffn=0.2, prune_importance="l1",
                                    load_base=load_classifier)  # fmt: skip
    assert all(entry["ffn_error"] is None for entry in report["encoder_pruning"])  # no data: nothing measured


def test_taylor_terms_are_the_loss_change_of_scaling_each_channel():
    """record_taylor's x_j * dL/dx_j against a finite difference: the loss with channel j's input to the output
    projection scaled by (1 + e), central difference over 2e, on a small BERT with the pinned tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from frugalml.models.calibration import record_taylor
    from frugalml.models.encoder import default_encoder_dir

    tokenizer = AutoTokenizer.from_pretrained(str(default_encoder_dir()), local_files_only=True)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=48)).eval().double()  # fmt: skip
    head = torch.nn.Linear(32, 2).double()  # float64: the finite difference resolves small terms
    texts = ["cheap meds, click now", "see you at lunch tomorrow", "re: the build is broken", "win a prize!!!"]
    y = torch.tensor([1, 0, 0, 1])

    def loss(embeddings, part):
        return torch.nn.functional.cross_entropy(head(embeddings), y[part], reduction="sum")

    name = "encoder.layer.1.output.dense"
    terms = record_taylor(model, tokenizer, texts, loss, max_tokens=16, pooling="mean", names=[name], batch_size=2)
    term = terms[f"{name}::taylor"]
    assert term.shape == (48,)

    def loss_scaled(channel: int, factor: float) -> float:
        def scale(_module, args):
            x = args[0].clone()
            x[..., channel] *= factor
            return (x,)

        handle = model.get_submodule(name).register_forward_pre_hook(scale)
        try:
            with torch.no_grad():
                batch = tokenizer(texts, truncation=True, max_length=16, padding=True, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).double()
                pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
                return float(loss(pooled, slice(0, 4)))
        finally:
            handle.remove()

    eps = 1e-4
    for channel in (0, 7, 31):
        expected = (loss_scaled(channel, 1 + eps) - loss_scaled(channel, 1 - eps)) / (2 * eps)
        assert abs(expected) > 1e-6  # a channel that matters
        assert float(term[channel]) == pytest.approx(expected, rel=1e-3)


def _grads(model):
    return [None if p.grad is None else float(p.grad.abs().sum()) for p in model.module.parameters()]


def test_taylor_pruning_scores_channels_by_the_classifier_loss_on_labelled_dev_rows(pretrained, sets):
    _, dev, test = sets
    grads = _grads(pretrained)
    compressed, report = _compress(pretrained, dev, "fp16", prune_ffn=0.3, prune_heads=0.25,
                                   prune_importance="taylor")  # fmt: skip
    codes = compressed._holder.codes
    assert codes["encoder.layer.0.intermediate.dense.weight"].shape == [1075, 384]  # 1536 FFN channels, 30% off
    assert codes["encoder.layer.2.attention.self.query.weight"].shape == [288, 384]  # 12 heads -> 9
    fluctuation, _ = _compress(pretrained, dev, "fp16", prune_ffn=0.3, prune_importance="fluctuation")
    kept = {imp: model._holder.codes["encoder.layer.0.intermediate.dense.weight"].parts for imp, model in
            (("taylor", compressed), ("fluctuation", fluctuation))}  # fmt: skip
    assert not torch.equal(*(next(iter(parts.values())) for parts in kept.values()))  # other channels chosen
    assert report["calibration"]["agreement"] >= 0.8, report["calibration"]
    assert all(0 < entry["ffn_error"] < 1 for entry in report["encoder_pruning"])  # measured on the calibration rows
    assert _grads(pretrained) == grads  # the caller's model is left as it was (no gradients written into it)
    bad = dev.copy()
    bad.loc[bad.index[20], "label"] = 5  # past the 16 rows the scores read: every row is checked
    with pytest.raises(CompressionError, match=r"calibration labels \['5'\]"):
        _compress(pretrained, bad, "fp16", prune_ffn=0.3, prune_importance="taylor", calibration_texts=16)
    with pytest.raises(CompressionError, match="taylor pruning scores channels on calibration texts"):
        quantize(pretrained, precision="fp16", prune_ffn=0.2, prune_importance="taylor", load_base=load_classifier)
    with pytest.raises(CompressionError, match="taylor pruning scores channels by the classifier's loss"):
        quantize(pretrained, precision="fp16", prune_ffn=0.2, prune_importance="taylor", calibration=dev,
                 load_base=load_classifier)  # fmt: skip  # rows without their label column named: no loss


@pytest.fixture(scope="module")
def mlp_bag(sets):
    train, dev, _ = sets
    params = {**NO_DP, "features": {"buckets": 2**14}, "model": {"embedding_dim": 8, "hidden_dim": 32}}
    model, *_ = train_text_classifier(train, dev, params, {}, 0, None)
    return model


@pytest.mark.parametrize("importance", ["fluctuation", "l2", "taylor"])
def test_hidden_units_of_an_mlp_head_are_removed_physically_and_round_trip(tmp_path, mlp_bag, sets, importance):
    _, dev, test = sets
    compressed, report = _compress(mlp_bag, dev, "fp16", prune_hidden=0.5, prune_importance=importance)
    pruning = report["head_pruning"]
    assert (pruning["hidden_before"], pruning["hidden_after"], pruning["heads"]) == (32, 16, ["head"])
    assert 0 < pruning["output_error"] < 1
    head = compressed.base.module.head
    assert head[1].weight.shape == (16, 8) and head[4].weight.shape == (2, 16)  # smaller tensors, not masks
    assert report["calibration"]["agreement"] >= 0.9, report["calibration"]
    save_text_classifier(compressed, tmp_path / "m")
    loaded = load_text_classifier(tmp_path / "m")
    assert loaded.base.model_config["hidden_dim"] == 16
    pd.testing.assert_frame_equal(predict_frame(loaded, test), predict_frame(compressed, test), atol=1e-6)


def test_hidden_unit_pruning_covers_every_task_head_and_the_frozen_encoder_head(pretrained, sets):
    train, dev, test = sets
    tasks = {"multitask": {"tasks": [{"name": "difficulty", "column": "group", "labels": ["easy", "hard"],
                                      "map": {"easy-ham*": "easy", "hard-ham*": "hard"}}]}}  # fmt: skip
    params = {**NO_DP, "lr": 0.02, "model": {"kind": "pretrained", "pretrained": SHORT, "hidden_dim": 24}, **tasks}
    model, *_ = train_text_classifier(train, dev, params, {}, 0, pretrained.store)  # the fixture's cached features
    grads = _grads(model)
    compressed, report = _compress(model, dev, "fp16", prune_hidden=0.25, prune_importance="taylor", encoder=False)
    assert report["head_pruning"]["heads"] == ["head.main", "head.tasks.difficulty"]
    assert compressed.base.module.head.tasks["difficulty"][0].out_features == 18
    served = predict_frame(compressed, test.iloc[:20])
    assert {"difficulty_label", "difficulty_probability_hard"} <= set(served.columns)
    assert _grads(model) == grads
    spam = dev[dev["label"] == 1]  # the difficulty task labels ham only: its head has nothing to be scored on
    with pytest.raises(CompressionError, match="task 'difficulty'.s head: no calibration row has a label"):
        _compress(model, spam, "fp16", prune_hidden=0.25, prune_importance="taylor", encoder=False)


def test_hidden_unit_pruning_refuses_what_it_cannot_prune(bag, mlp_bag, sets):
    dev = sets[1]
    with pytest.raises(CompressionError, match="head is linear"):
        _compress(bag, dev, "fp16", prune_hidden=0.3)
    with pytest.raises(CompressionError, match=r"hidden-unit pruning ratio must be in \[0, 1\)"):
        _compress(mlp_bag, dev, "fp16", prune_hidden=1.0)
    with pytest.raises(CompressionError, match="scores them on calibration rows"):
        quantize(mlp_bag, precision="fp16", prune_hidden=0.3, load_base=load_classifier)
    _, report = quantize(mlp_bag, precision="fp16", prune_hidden=0.3, prune_importance="l1", load_base=load_classifier)
    assert report["head_pruning"]["hidden_after"] == 22 and report["head_pruning"]["output_error"] is None


def test_the_compress_node_reports_what_pruning_removed(mlp_bag, sets):
    from frugalml.nodes.compress import compress_classifier

    settings = {"precision": "fp16", "compare": [], "prune_hidden": 0.5, "latency_batches": [8], "latency_repeats": 1}
    _, _, report = compress_classifier(mlp_bag, sets[1], settings, {})
    assert report["variants"]["fp16"]["head_pruning"]["hidden_after"] == 16


# --- ONNX export -----------------------------------------------------------------------------------------------


def test_the_int8_model_exports_to_onnx_and_onnxruntime_agrees_with_torch(pretrained, sets):
    import onnx

    from frugalml.models.onnx_export import export_onnx
    from frugalml.nodes.compress import export_compressed_onnx

    dev = sets[1]
    plain, report = export_onnx(pretrained, dev, int8=False)
    assert report["agreement"] == 1.0 and report["max_probability_change"] < 1e-4  # the same float computation
    compressed, quantised = _compress(pretrained, dev, "int8", max_dynamic_int8_error=0.05)
    assert quantised["encoder_fp32_compute"]  # some layers run float32 in torch ...
    data, report = export_onnx(compressed, dev, int8=True)
    assert report["fp32_matmuls"] == len(quantised["encoder_fp32_compute"])  # ... and in the graph
    # onnxruntime's INT8 differs from torch's as much as torch's INT8 differs from float32 (one row of 48 here)
    noise = 1 - quantised["calibration"]["agreement"]
    assert report["agreement"] >= 1 - max(noise, 1 / len(dev)) - 1e-9 and report["max_probability_change"] < 0.3
    assert report["rows"] == len(dev) and len(data) < len(plain) / 3  # int8 MatMul weights
    operators = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= operators, operators
    files, metrics = export_compressed_onnx(compressed, dev, {"precision": "int8", "onnx": True})
    assert {"model.onnx", "model.json", "tokenizer.json"} <= set(files)
    assert json.loads(files["model.json"])["labels"] == [0, 1]
    assert metrics["agreement"]["value"] == report["agreement"]
    assert export_compressed_onnx(compressed, dev, {"precision": "int8"}) == ({}, {})  # off by default


def test_onnx_export_refuses_what_it_cannot_export(bag, sets, pretrained):
    from frugalml.models.onnx_export import export_onnx

    with pytest.raises(
        CompressionError, match=r"ONNX export covers the \['pretrained'\] kind; this model is 'ngram_bag'"
    ):
        export_onnx(bag, sets[1], int8=True)
    with pytest.raises(CompressionError, match="the ONNX check needs rows"):
        export_onnx(pretrained, sets[1].iloc[:0], int8=True)


def test_the_onednn_probe_falls_back_and_says_why_where_the_kernel_is_missing(monkeypatch, caplog):
    """A torch build or CPU without oneDNN's quantised Linear: the probe answers False with the reason logged, and
    new static INT8 layers take the float32 path (whose results the test above checks against the kernel)."""
    from frugalml.models.codecs import onednn_int8_available

    def missing(*args: object) -> None:
        raise NotImplementedError("Could not run 'onednn::qlinear_prepack' with arguments from the 'CPU' backend")

    monkeypatch.setattr(torch.ops.onednn, "qlinear_prepack", missing)
    onednn_int8_available.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="frugalml.models.codecs"):
            assert onednn_int8_available() is False
            code = encode(torch.randn(96, 64) * 0.1, "int8", name="w")
            code.meta.update(static_input_meta(torch.randn(512, 64), "minmax"))
            layer = StaticInt8Linear(code, None)
        assert layer.integer is False and layer(torch.randn(2, 64)).shape == (2, 96)
        assert "does not run here (NotImplementedError: Could not run 'onednn::qlinear_prepack'" in caplog.text
    finally:
        monkeypatch.undo()
        onednn_int8_available.cache_clear()  # the next caller probes the real op again


@pytest.mark.parametrize("shape", [(8, 16), (96, 16), (8, 64)])
def test_a_narrow_static_int8_layer_uses_its_shared_scales(shape):
    """Layers with fewer than 64 inputs share one weight scale across several channels (rows_per_group): the static
    layer expands them, on the integer kernel and on the float32 path."""
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(*shape, generator=generator) * 0.1
    code = encode(weight, "int8", name="w")
    code.meta.update(static_input_meta(torch.randn(256, shape[1], generator=generator), "minmax"))
    x = torch.randn(5, shape[1], generator=generator) * 0.8
    for integer in (True, False):
        layer = StaticInt8Linear(code, None)
        layer.integer = layer.integer and integer
        assert float((layer(x) - x @ weight.T).norm() / (x @ weight.T).norm()) < 0.03, (shape, integer)
