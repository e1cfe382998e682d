"""Fine-tuning the pretrained encoder (the pinned MiniLM, for real): LoRA through peft, bottleneck adapters and full
fine-tuning through the shared train node, with DP and without; the saved model; the per-sample norms of every
trainable encoder layer against per-sample gradients; the bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from frugalml.errors import CompressionError, ModelError, ParameterError, PretrainedModelError
from frugalml.models.encoder import EncoderSpec
from frugalml.models.fine_tune import AdapterSpec, FineTuneConfig, build_module, trainable_share
from frugalml.models.pyfunc import load_text_classifier, predict_frame, save_text_classifier
from frugalml.nodes.split import split_dataset
from frugalml.nodes.train import train_text_classifier
from frugalml.params import TrainParams, parse_params
from frugalml.privacy.step import _accumulate_clipped
from tests.helpers import DATA
from tests.privacy.clipping_reference import assert_clipped_sum_matches_per_sample_gradients

SHORT = {"max_tokens": 24, "batch_size": 16}
NO_DP = {"epochs": 2, "patience": 2, "progress": False, "batch_size": 16, "lr": 0.05,
         "privacy": {"enabled": False}}  # fmt: skip
HEAD = {"num_classes": 2, "encoder_dim": 384, "hidden_dim": 0, "dropout": 0.0}


@pytest.fixture(scope="module")
def sets(sample_emails: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, dev, _, test, *_ = split_dataset(sample_emails, {"gold_dev_size": 0}, DATA, 0)
    return train.iloc[:96], dev.iloc[:32], test.iloc[:40]


def _params(tuning: str, **adapter: object) -> dict:
    return {"kind": "pretrained", "pretrained": {**SHORT, "fine_tuning": tuning, "adapter": adapter}}


@pytest.mark.parametrize(("tuning", "adapter"), [("adapters", {"type": "lora"}), ("adapters", {"type": "bottleneck"}),
                                                 ("full", {})])  # fmt: skip
def test_fine_tuned_encoders_train_save_and_predict_on_raw_text(tmp_path, sets, tuning, adapter):
    train, dev, test = sets
    torch.manual_seed(0)
    model, history, report = train_text_classifier(train, dev, {**NO_DP, "model": _params(tuning, **adapter)}, {}, 0)
    assert report == {"enabled": False} and model.fine_tuning == tuning
    share = trainable_share(model.module)
    assert (share < 0.01) if tuning == "adapters" else (share > 0.95), share  # adapters: under 1% of the weights
    base = build_module(EncoderSpec(**SHORT), FineTuneConfig(tuning, model.config.adapter, model.model_config))
    moved = [name for name, p in model.module.encoder.named_parameters() if p.requires_grad
             and not torch.equal(p, dict(base.encoder.named_parameters())[name])]  # fmt: skip
    assert moved, "training changed no encoder weight"  # the encoder itself was trained, not just the head
    save_text_classifier(model, tmp_path / "saved")
    loaded = load_text_classifier(tmp_path / "saved")
    raw = test[["subject", "body"]]
    pd.testing.assert_frame_equal(predict_frame(loaded, raw), predict_frame(model, raw))
    size = (tmp_path / "saved" / "model.safetensors").stat().st_size
    assert (size < 2_000_000) if tuning == "adapters" else (size > 80_000_000), size  # adapters: only they are saved


def test_adapters_under_dp_clip_every_trainable_layer_and_spend_epsilon(sets):
    train, dev, _ = sets
    params = {"epochs": 1, "batch_size": 24, "progress": False, "model": _params("adapters", type="lora"),
              "privacy": {"refuse_signal_to_noise": 0, "min_signal_to_noise": 0}}  # fmt: skip
    model, _, report = train_text_classifier(train, dev, params, {}, 0)
    assert report["enabled"] and 0 < report["epsilon"] <= 1.0 + 1e-6 and report["max_physical_batch_size"] == 16
    assert model.predict_proba(dev).shape == (len(dev), 2)


@pytest.mark.parametrize("tuning", ["adapters", "full"])
def test_ghost_norms_of_a_fine_tuned_encoder_match_per_sample_gradients(tuning):
    """Per-sample clipping by ghost norms (sequence Linear layers, embeddings, LayerNorms, LoRA pairs) against the
    gradients of each sample computed alone."""
    torch.manual_seed(0)
    adapter = AdapterSpec(target_modules=("query", "value", "intermediate.dense"))
    module = build_module(EncoderSpec(**SHORT), FineTuneConfig(tuning, adapter, HEAD)).eval()  # no dropout noise
    for parameter in module.encoder.parameters():  # LoRA's B starts at zero: give the adapters a real gradient
        if parameter.requires_grad and tuning == "adapters":
            torch.nn.init.normal_(parameter, std=0.05)
    ids = torch.randint(1000, 5000, (4, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    y = torch.tensor([0, 1, 1, 0])
    assert_clipped_sum_matches_per_sample_gradients(module, ids, mask, y, checked=3)


def test_a_trainable_table_shared_by_the_batch_is_refused_under_dp():
    module = build_module(EncoderSpec(**SHORT), FineTuneConfig("full", None, HEAD))
    module.encoder.embeddings.position_embeddings.weight.requires_grad_(True)  # one row per position, for all
    ids = torch.randint(1000, 5000, (3, 8))
    with pytest.raises(ModelError, match="shared by the batch"):
        _accumulate_clipped(module, lambda: module(ids, torch.ones_like(ids)), torch.tensor([0, 1, 0]), 1.0)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"kind": "hybrid", "pretrained": {"fine_tuning": "full"}}, "needs kind: pretrained"),
        ({"kind": "pretrained", "pretrained": {"fine_tuning": "partial"}}, "fine_tuning"),
        ({"kind": "pretrained", "pretrained": {"adapter": {"type": "prefix"}}}, "type"),
        ({"kind": "pretrained", "pretrained": {"adapter": {"target_modules": []}}}, "at least one module"),
        ({"kind": "pretrained", "pretrained": {"adapter": {"r": 0}}}, "r"),
        ({"kind": "pretrained", "pretrained": {"encoder_lr": -1}}, "positive learning rate"),
    ],
)
def test_bad_fine_tuning_parameters_fail_with_the_choices(model, match):
    with pytest.raises(ParameterError, match=match):
        parse_params(TrainParams, {"model": model}, name="train")


def test_adapter_targets_the_encoder_lacks_are_named_before_training(sets):
    train, dev, _ = sets
    params = {**NO_DP, "model": _params("adapters", target_modules=["query", "attn.c_proj"])}
    with pytest.raises(PretrainedModelError, match=r"\['attn.c_proj'\] match no Linear layer.*query"):
        train_text_classifier(train, dev, params, {}, 0)


@pytest.fixture(scope="module")
def tuned(sets):
    """A LoRA model and a fully fine-tuned one, two epochs each (the encoder's weights moved)."""
    train, dev, _ = sets
    models = {}
    for tuning in ("adapters", "full"):
        torch.manual_seed(0)
        models[tuning], _, _ = train_text_classifier(train, dev, {**NO_DP, "model": _params(tuning)}, {}, 0)
    return models


def _lora_delta(model, layer: str) -> torch.Tensor:
    """W_merged - W of one LoRA layer, from its own A, B and scale (the merge's reference, not peft's)."""
    lora = model.module.encoder.get_submodule(layer)
    a, b = lora.lora_A["default"].weight, lora.lora_B["default"].weight  # (r, in), (out, r)
    return (b @ a) * (model.config.adapter.alpha / model.config.adapter.r)


@pytest.mark.parametrize("tuning", ["adapters", "full"])
def test_a_merged_fine_tuned_encoder_is_a_frozen_classifier_with_the_same_probabilities(tmp_path, sets, tuned,
                                                                                          tuning):  # fmt: skip
    from safetensors.torch import load_file

    from frugalml.models.encoder import default_encoder_dir
    from frugalml.models.fine_tune import frozen_equivalent

    _, dev, test = sets
    model = tuned[tuning]
    frozen = frozen_equivalent(model, tmp_path / "merged")
    assert frozen.kind == "pretrained" and frozen.encoder.sha256 != model.base_encoder.sha256
    np.testing.assert_allclose(frozen.predict_proba(test), model.predict_proba(test), atol=2e-5)
    merged = load_file(str(tmp_path / "merged" / "model.safetensors"))
    base = load_file(str(default_encoder_dir() / "model.safetensors"))
    assert set(merged) == set(base)  # every tensor of the base file, the unused pooler and position ids included
    name = "encoder.layer.0.attention.self.query"
    if tuning == "adapters":  # W + (alpha / r) B A, by hand
        expected = base[f"{name}.weight"] + _lora_delta(model, name).detach()
        torch.testing.assert_close(merged[f"{name}.weight"], expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(
            merged["encoder.layer.0.intermediate.dense.weight"], base["encoder.layer.0.intermediate.dense.weight"]
        )  # no adapter there
    else:
        trained = dict(model.module.encoder.named_parameters())
        torch.testing.assert_close(merged["embeddings.word_embeddings.weight"],
                                   trained["embeddings.word_embeddings.weight"].detach())  # fmt: skip
    torch.testing.assert_close(merged["pooler.dense.weight"], base["pooler.dense.weight"])
    assert not torch.equal(merged[f"{name}.weight"], base[f"{name}.weight"])  # what was trained is what is kept


@pytest.mark.parametrize(("tuning", "precision", "settings"), [
    ("adapters", "int8", {"activations": "static"}),  # calibrated on the merged encoder's inputs
    ("full", "int4-kmeans", {"prune_ffn": 0.1}),  # pruned, then clustered
])  # fmt: skip
def test_a_fine_tuned_model_compresses_through_its_merged_encoder(tmp_path, sets, tuned, tuning, precision,  # noqa: PLR0917
                                                                   settings):  # fmt: skip
    from frugalml.models.compression import quantize
    from frugalml.models.encoder import _LOADED, resolve_encoder_dir
    from frugalml.models.zoo import load_classifier

    _, dev, test = sets
    model = tuned[tuning]
    loaded_before = set(_LOADED)
    compressed, report = quantize(model, precision=precision, calibration=dev, label_column="label",
                                  load_base=load_classifier, **settings)  # fmt: skip
    assert bool(report.get("encoder_static_int8")) == ("activations" in settings)
    assert bool(report.get("encoder_pruning")) == ("prune_ffn" in settings)
    kept = {(str(resolve_encoder_dir(compressed.encoder.path)), compressed.encoder.sha256)}
    assert set(_LOADED) - loaded_before <= kept  # the merged encoder's temporary entry is gone
    assert compressed.source["fine_tuning"] == tuning
    assert 90_000_000 < report["fp32_bytes"] < 92_000_000, report["fp32_bytes"]  # the base file and the head
    assert report["size_ratio"] > (3.5 if precision == "int8" else 7)
    calibration = report["calibration"]  # measured against the fine-tuned model itself
    assert calibration["agreement"] >= 0.9, calibration
    path = tmp_path / "compressed"
    save_text_classifier(compressed, path)
    again = load_text_classifier(path)
    np.testing.assert_allclose(again.predict_proba(test), compressed.predict_proba(test), atol=1e-6)
    agree = (again.predict_proba(test).argmax(1) == model.predict_proba(test).argmax(1)).mean()
    assert agree >= 0.9, agree


def test_the_compressed_lora_query_weights_hold_the_adapters_update(sets, tuned):
    """Decoded int8 query weights are nearer the merged ones than the base ones (the update survives int8)."""
    from frugalml.models.codecs import decode
    from frugalml.models.compression import load_compressed_encoder_codes, quantize
    from frugalml.models.encoder import float_encoder_model
    from frugalml.models.zoo import load_classifier

    model = tuned["adapters"]
    compressed, _ = quantize(model, precision="int8", load_base=load_classifier)
    codes = load_compressed_encoder_codes(compressed.encoder_dir)
    name = "encoder.layer.0.attention.self.query"
    decoded = decode(codes[f"{name}.weight"])
    base = dict(float_encoder_model(model.base_encoder).named_parameters())[f"{name}.weight"].detach()
    delta = _lora_delta(model, name).detach()
    assert (decoded - (base + delta)).norm() < (decoded - base).norm(), "the compressed weights lost the update"


def test_a_lora_model_exports_to_onnx_through_its_merged_encoder(sets, tuned):
    import onnxruntime

    from frugalml.models.onnx_export import export_onnx

    _, dev, test = sets
    model = tuned["adapters"]
    data, report = export_onnx(model, dev.iloc[:16], int8=False)
    assert report["agreement"] == 1.0 and report["max_probability_change"] < 1e-4  # against the frozen twin
    # and the graph itself against the fine-tuned model (not the twin): a merge that lost the update would fail here
    batch = model.inputs(test.iloc[:24])
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (graph,) = session.run(None, {"input_ids": batch.tokens, "attention_mask": batch.mask})
    np.testing.assert_allclose(graph, model.predict_proba(test.iloc[:24]), atol=1e-4)


def test_a_fine_tuned_model_is_not_compressed_without_its_encoder_or_merged_into_a_used_folder(tmp_path, tuned):
    from frugalml.models.compression import CompressionSpec, check_model
    from frugalml.models.fine_tune import frozen_equivalent

    with pytest.raises(CompressionError, match="set compress.encoder: true"):
        check_model(tuned["adapters"], CompressionSpec(precision="int8", encoder=False))
    (tmp_path / "vocab.txt").write_text("stale\n")
    with pytest.raises(PretrainedModelError, match="is not empty"):
        frozen_equivalent(tuned["adapters"], tmp_path)


def test_the_compress_stage_takes_a_lora_model_and_exports_its_int8_graph(sets, tuned, monkeypatch):
    from frugalml.models import fine_tune
    from frugalml.nodes.compress import compress_classifier, export_compressed_onnx

    _, dev, _ = sets
    merges = []
    real = fine_tune.frozen_equivalent
    monkeypatch.setattr(fine_tune, "frozen_equivalent", lambda *a, **k: merges.append(1) or real(*a, **k))
    params = {"precision": "int8", "compare": ["fp16"], "onnx": True, "latency_batches": [8], "latency_repeats": 1}
    compressed, metrics, report = compress_classifier(tuned["adapters"], dev, params, {})
    assert len(merges) == 1  # both variants compress the one merged encoder
    assert 90_000_000 < report["reference"]["bytes"] < 92_000_000  # the uncompressed model: base file + adapters
    assert set(report["variants"]) == {"int8", "fp16"} and report["variants"]["fp16"]["agreement"] >= 0.97
    assert metrics["size_ratio"]["value"] > 3.5
    files, onnx_metrics = export_compressed_onnx(compressed, dev, params)
    assert "model.onnx" in files and onnx_metrics["agreement"]["value"] >= 0.9


def test_compressing_a_bottleneck_adapter_model_is_refused_by_name(sets):
    from frugalml.models.compression import quantize
    from frugalml.models.onnx_export import export_onnx
    from frugalml.models.zoo import load_classifier

    train, dev, _ = sets
    model, _, _ = train_text_classifier(train.iloc[:32], dev.iloc[:8], {**NO_DP, "epochs": 1,
                                        "model": _params("adapters", type="bottleneck")}, {}, 0)  # fmt: skip
    with pytest.raises(CompressionError, match="bottleneck adapters add a GELU layer.*adapter.type: lora"):
        quantize(model, precision="int8", load_base=load_classifier)
    with pytest.raises(CompressionError, match="ONNX export of this fine-tuned.*bottleneck"):
        export_onnx(model, dev, int8=False)
    assert np.isfinite(model.predict_proba(dev.iloc[:4])).all()


def test_a_saved_adapter_model_whose_metadata_names_other_targets_is_refused(tmp_path, sets):
    import json

    train, dev, _ = sets
    model, _, _ = train_text_classifier(train.iloc[:32], dev.iloc[:8], {**NO_DP, "epochs": 1,
                                        "model": _params("adapters")}, {}, 0)  # fmt: skip
    save_text_classifier(model, tmp_path / "saved")
    meta_path = tmp_path / "saved" / "model.json"
    metadata = json.loads(meta_path.read_text())
    metadata["adapter"]["target_modules"] = ["query", "value", "key"]  # hand-edited: adapters that were never trained
    meta_path.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=r"missing \[.*attention\.self\.key\.lora_"):
        load_text_classifier(tmp_path / "saved")
