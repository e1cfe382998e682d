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


def test_compressing_a_fine_tuned_model_is_refused_by_name(sets):
    from frugalml.models.compression import quantize
    from frugalml.models.zoo import load_classifier

    train, dev, _ = sets
    model, _, _ = train_text_classifier(train.iloc[:32], dev.iloc[:8], {**NO_DP, "epochs": 1,
                                        "model": _params("adapters")}, {}, 0)  # fmt: skip
    with pytest.raises(CompressionError, match="fine-tuned"):
        quantize(model, precision="int8", load_base=load_classifier)
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
