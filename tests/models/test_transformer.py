"""The ``transformer`` kind and dynamic sliding-window attention: every DSWA path against dense masked attention
and a per-query loop, the windows' rule, training through the train node with DP and without, the saved model,
ghost norms against per-sample gradients, gradient checkpointing, and the bad inputs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from frugalml.errors import CompressionError, ModelError, ParameterError
from frugalml.models.attention import (
    banded_window_attention,
    dense_window_attention,
    flex_window_attention,
    relevance_windows,
    window_attention,
)
from frugalml.models.memory import transformer_activation_bytes
from frugalml.models.pyfunc import load_text_classifier, predict_frame, save_text_classifier
from frugalml.models.transformer import SmallTransformer, TransformerConfig, tokenize
from frugalml.nodes.split import split_dataset
from frugalml.nodes.train import train_text_classifier
from frugalml.params import TrainParams, parse_params
from tests.helpers import DATA
from tests.privacy.clipping_reference import assert_clipped_sum_matches_per_sample_gradients

SMALL = {"vocab": 4096, "dim": 32, "layers": 2, "heads": 2, "ffn_dim": 64, "max_tokens": 96, "batch_size": 16}
DSWA = {"type": "dswa", "block": 16, "w_min": 16, "w_max": 48}
NO_DP = {"epochs": 2, "patience": 2, "progress": False, "batch_size": 16, "privacy": {"enabled": False}}


@pytest.fixture(scope="module")
def sets(sample_emails: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, dev, _, test, *_ = split_dataset(sample_emails, {"gold_dev_size": 0}, DATA, 0)
    return train.iloc[:128], dev.iloc[:32], test.iloc[:40]


def _qkv(n: int = 3, heads: int = 2, steps: int = 150, dim: int = 8) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    q, k, v = (torch.randn(n, heads, steps, dim) for _ in range(3))
    mask = torch.ones(n, steps, dtype=torch.bool)
    mask[1, 97:] = False  # padded rows: a partial last block, and whole blocks of padding
    mask[2, 20:] = False
    return q, k, v, mask


def _loop_reference(q, k, v, mask, *, windows, block):
    """Query by query: softmax over the real keys within the query block's half-window (and itself)."""
    out = torch.zeros_like(q)
    for row in range(q.shape[0]):
        for i in range(q.shape[2]):
            keys = [j for j in range(q.shape[2])
                    if (abs(i - j) <= windows[row, i // block] and mask[row, j]) or i == j]  # fmt: skip
            scores = torch.einsum("hd,hkd->hk", q[row][:, i], k[row][:, keys]) / math.sqrt(q.shape[-1])
            out[row, :, i] = torch.einsum("hk,hkd->hd", torch.softmax(scores, -1), v[row][:, keys])
    return out


@pytest.mark.parametrize("path", ["banded", "flex", "dense"])
def test_every_dswa_path_matches_dense_masked_attention_and_a_per_query_loop(path):
    q, k, v, mask = _qkv()
    windows = torch.tensor([[16, 32, 48, 16, 16, 48, 32, 16, 16, 16], [32] * 10, [48] * 10])
    reference = _loop_reference(q, k, v, mask, windows=windows, block=16)
    torch.testing.assert_close(
        dense_window_attention(q, k, v, mask, windows=windows, block=16), reference, rtol=1e-4, atol=1e-5
    )
    run = {"banded": lambda: banded_window_attention(q, k, v, mask, windows=windows, block=16, w_max=48),
           "flex": lambda: flex_window_attention(q, k, v, mask, windows=windows, block=16),
           "dense": lambda: dense_window_attention(q, k, v, mask, windows=windows, block=16)}[path]  # fmt: skip
    torch.testing.assert_close(run(), reference, rtol=1e-4, atol=1e-5)


def test_dswa_gradients_match_the_dense_reference():
    q, k, v, mask = (t.requires_grad_(True) if t.dtype.is_floating_point else t for t in _qkv(steps=70))
    windows = relevance_windows(q, k, mask, block=16, w_min=16, w_max=40)
    grads = []
    for attend in (lambda: banded_window_attention(q, k, v, mask, windows=windows, block=16, w_max=40),
                   lambda: dense_window_attention(q, k, v, mask, windows=windows, block=16)):  # fmt: skip
        grads.append(torch.autograd.grad(attend().pow(2).sum(), (q, k, v)))
    for ours, reference in zip(*grads, strict=True):  # FlexAttention has no backward on CPU (torch 2.13)
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_windows_are_narrow_where_attention_is_local_and_wide_where_it_is_spread():
    steps, block, dim = 128, 16, 8
    local = torch.zeros(1, 1, steps, dim)
    for b in range(steps // block):  # each block's queries and keys share one direction: block-local attention
        local[0, 0, b * block : (b + 1) * block, b % dim] = 40.0
    spread = torch.zeros(1, 1, steps, dim)  # all scores equal: attention spread evenly over the text
    mask = torch.ones(1, steps, dtype=torch.bool)
    narrow = relevance_windows(local, local, mask, block=block, w_min=16, w_max=100)
    wide = relevance_windows(spread, spread, mask, block=block, w_min=16, w_max=100)
    # even attention over 8 blocks: w_min reaches 2 or 3 of them, so a window misses 5/8 to 6/8 of the mass:
    # 16 + 0.625 * 84 = 68.5 (middle) or 16 + 0.75 * 84 = 79 (edges), rounded up to whole blocks: 80
    assert narrow.tolist() == [[16] * 8] and wide.tolist() == [[80] * 8]
    assert ((narrow >= 16) & (narrow <= 100)).all()


def test_window_attention_refuses_an_empty_range_and_an_unknown_backend():
    q, k, v, mask = _qkv(steps=32)
    with pytest.raises(ModelError, match="w_min <= w_max"):
        window_attention(q, k, v, mask, block=16, w_min=32, w_max=16)
    with pytest.raises(ModelError, match="unknown attention backend"):
        window_attention(q, k, v, mask, block=16, w_min=16, w_max=16, backend="sparse")  # type: ignore[arg-type]


def test_tokens_are_hashed_words_after_a_cls_token_and_truncated():
    ids, mask = tokenize(["Hello, World!", "", "a " * 500], vocab=64, max_tokens=10)
    assert ids.shape == (3, 10) and ids[:, 0].tolist() == [1, 1, 1]
    assert mask.sum(1).tolist() == [5, 1, 10]  # [CLS] hello , world ! / [CLS] only / truncated
    assert ((ids >= 2) | (mask == 0) | (ids == 1)).all() and ids.max() < 64
    again, _ = tokenize(["hello , WORLD !"], vocab=64, max_tokens=10)
    assert again[0, :5].tolist() == ids[0, :5].tolist()  # lowercased, same hash in every process


@pytest.mark.parametrize("attention", [{"type": "dense"}, DSWA])
def test_the_transformer_trains_saves_and_predicts_on_raw_text(tmp_path, sets, attention):
    train, dev, test = sets
    params = {**NO_DP, "model": {"kind": "transformer", "transformer": {**SMALL, "attention": attention}}}
    model, history, report = train_text_classifier(train, dev, params, {}, 0)
    assert report == {"enabled": False} and model.kind == "transformer"
    assert model.config.attention == attention["type"]
    torch.manual_seed(0)  # the train node's seed: the same initial weights
    fresh = SmallTransformer(model.config)
    assert not torch.equal(fresh.state_dict()["head.weight"], model.module.state_dict()["head.weight"])
    assert "dev_accuracy" in history
    save_text_classifier(model, tmp_path / "saved")
    loaded = load_text_classifier(tmp_path / "saved")
    raw = test[["subject", "body"]]
    pd.testing.assert_frame_equal(predict_frame(loaded, raw), predict_frame(model, raw))


def test_the_transformer_under_dp_spends_epsilon(sets):
    train, dev, _ = sets
    params = {"epochs": 1, "batch_size": 32, "progress": False,
              "model": {"kind": "transformer", "transformer": {**SMALL, "attention": DSWA}},
              "privacy": {"refuse_signal_to_noise": 0, "min_signal_to_noise": 0}}  # fmt: skip
    model, _, report = train_text_classifier(train, dev, params, {}, 0)
    assert report["enabled"] and 0 < report["epsilon"] <= 1.0 + 1e-6
    assert model.predict_proba(dev).shape == (len(dev), 2)


@pytest.mark.parametrize("attention", ["dense", "dswa"])
def test_ghost_norms_of_the_transformer_match_per_sample_gradients(attention):
    """Per-sample clipping (embeddings, sequence Linear layers, LayerNorms, the head) against each sample's
    gradient computed alone: DSWA's windows depend on each text only, so rows stay independent."""
    torch.manual_seed(0)
    module = SmallTransformer(TransformerConfig(2, vocab=256, dim=16, heads=2, ffn_dim=32, max_tokens=64,
                                                attention=attention, block=8, w_min=8, w_max=24))  # fmt: skip
    ids = torch.randint(2, 256, (4, 40))
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    ids[1, 25:] = 0
    y = torch.tensor([0, 1, 1, 0])
    assert_clipped_sum_matches_per_sample_gradients(module, ids, mask, y, checked=6)


def test_gradient_checkpointing_keeps_the_gradients_and_holds_fewer_activations():
    config = {"num_classes": 2, "vocab": 512, "dim": 32, "heads": 2, "ffn_dim": 64, "max_tokens": 512, "layers": 4}
    ids = torch.randint(2, 512, (2, 512))
    mask = torch.ones_like(ids)
    grads, held = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        module = SmallTransformer(TransformerConfig(**config, gradient_checkpointing=checkpointing)).train()
        module(ids, mask).sum().backward()
        grads.append([p.grad.clone() for p in module.parameters()])
        held.append(transformer_activation_bytes(module, ids, mask))
    for plain, recomputed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, recomputed)
    assert held[1] < 0.5 * held[0], held  # 4 blocks: the 8 sublayer inputs plus one sublayer, against all four


def test_a_checkpoint_input_is_an_autograd_saved_tensor_so_the_forward_count_has_it():
    """What the activation count relies on: a non-reentrant checkpoint saves its input through autograd's saved
    tensors (seen by the counting hooks), so counting it again as held would count it twice."""
    layer = torch.nn.Linear(64, 64)
    x = torch.randn(32, 64, requires_grad=True)
    seen = set()

    def pack(tensor):
        seen.add(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        h = x * 2  # a scalar product saves nothing itself
        torch.utils.checkpoint.checkpoint(lambda a: torch.nn.functional.gelu(layer(a)), h, use_reentrant=False)
    assert h.untyped_storage().data_ptr() in seen and len(seen) == 1  # the input only: the inside is recomputed


@pytest.mark.parametrize(
    ("transformer", "extra", "match"),
    [
        ({"max_tokens": 128, "attention": {"type": "dswa", "w_max": 512}}, {}, "larger than the sequence"),
        ({"max_tokens": 64, "attention": {"type": "dswa", "w_min": 80, "w_max": 80}}, {}, "larger than the sequence"),
        ({"attention": {"type": "dswa", "w_min": 128, "w_max": 64}}, {}, "w_min 128 is above w_max 64"),
        ({"dim": 30, "heads": 4}, {}, "heads of an even width"),
        ({"attention": {"type": "sparse"}}, {}, "type"),
        ({"attention": {"backend": "cuda"}}, {}, "backend"),
        ({"gradient_checkpointing": True}, {}, "gradient_checkpointing with DP"),
        ({"vocab": 8}, {}, "vocab"),
        ({}, {"precision": "fp16"}, "precision fp16 with DP"),
        ({}, {"precision": "bf16"}, "precision bf16 with DP: the DP step runs in fp32"),
    ],
)
def test_bad_transformer_parameters_fail_before_any_work(transformer, extra, match):
    with pytest.raises(ParameterError, match=match):
        parse_params(TrainParams, {"model": {"kind": "transformer", "transformer": transformer}, **extra},
                     name="train")  # fmt: skip


def test_training_with_flexattention_on_cpu_is_refused_before_any_step(sets):
    train, dev, _ = sets
    transformer = {**SMALL, "attention": {**DSWA, "backend": "flex"}}
    params = {**NO_DP, "device": "cpu", "model": {"kind": "transformer", "transformer": transformer}}
    with pytest.raises(ModelError, match="FlexAttention has no backward pass on CPU"):
        train_text_classifier(train, dev, params, {}, 0)


def test_checkpointing_without_dp_is_accepted():
    config = parse_params(TrainParams, {"privacy": {"enabled": False}, "model": {
        "kind": "transformer", "transformer": {"gradient_checkpointing": True}}}, name="train")  # fmt: skip
    assert config.model.transformer.gradient_checkpointing


def test_the_compress_stage_compresses_a_transformer_and_onnx_export_is_refused_by_name(sets, tmp_path):
    """The compress node on a transformer: every variant measured on dev, the saved artifact as small as the report
    says, and the loaded model predicting as the compressed one did; ONNX export is refused, naming the kind."""
    from frugalml.models.onnx_export import check_exportable
    from frugalml.nodes.compress import compress_classifier

    train, dev, test = sets
    params = {**NO_DP, "epochs": 1, "model": {"kind": "transformer", "transformer": SMALL}}
    model, _, _ = train_text_classifier(train.iloc[:64], dev.iloc[:16], params, {}, 0)
    settings = {"precision": "int8", "compare": ["int4-kmeans"], "latency_batches": [8], "latency_repeats": 1}
    compressed, _, report = compress_classifier(model, dev, settings, {})
    variants = report["variants"]
    assert variants["int8"]["size_ratio"] > 3.5 and variants["int4-kmeans"]["size_ratio"] > 7
    assert variants["int8"]["agreement"] >= 0.9
    save_text_classifier(compressed, tmp_path / "c")
    assert (tmp_path / "c" / "model.safetensors").stat().st_size <= variants["int8"]["bytes"] * 1.01 + 4096
    loaded = load_text_classifier(tmp_path / "c")
    pd.testing.assert_frame_equal(predict_frame(loaded, test), predict_frame(compressed, test))
    with pytest.raises(CompressionError, match="'transformer'"):
        check_exportable(model)


def test_a_saved_transformer_whose_weights_do_not_fit_its_config_is_refused(tmp_path, sets):
    import json

    train, dev, _ = sets
    params = {**NO_DP, "epochs": 1, "model": {"kind": "transformer", "transformer": SMALL}}
    model, _, _ = train_text_classifier(train.iloc[:32], dev.iloc[:8], params, {}, 0)
    save_text_classifier(model, tmp_path / "saved")
    meta_path = tmp_path / "saved" / "model.json"
    original = json.loads(meta_path.read_text())
    edits = [({"layers": 3}, "do not fit the transformer's config"),  # a block that was never trained
             ({"max_tokens": 8}, "do not fit the transformer's config"),  # the saved position table says 96
             ({"attention": "Dswa"}, "attention 'Dswa'"), ({"backend": "nope"}, "backend 'nope'"),
             ({"w_min": 0}, "w_min 0"), ({"heads": 3}, "heads of an even width"),
             ({"extra": 1}, r"unexpected \['extra'\]")]  # fmt: skip
    for edit, match in [*edits, (None, r"missing \['dropout'\]")]:
        metadata = json.loads(json.dumps(original))
        if edit is None:
            del metadata["model_config"]["dropout"]
        else:
            metadata["model_config"].update(edit)
        meta_path.write_text(json.dumps(metadata))
        with pytest.raises(ValueError, match=match):
            load_text_classifier(tmp_path / "saved")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_the_transformer(sets, precision):
    """bf16 autocast, and fp16 autocast with a GradScaler (on CPU here; the same code path on CUDA)."""
    train, dev, _ = sets
    params = {**NO_DP, "epochs": 1, "precision": precision, "model": {"kind": "transformer", "transformer": SMALL}}
    model, history, _ = train_text_classifier(train.iloc[:64], dev.iloc[:16], params, {}, 0)
    assert all(torch.isfinite(p).all() for p in model.module.parameters())
    assert history["train_loss"][0]["value"] > 0
    torch.manual_seed(0)  # the initial weights: the (scaled) steps were taken, not skipped
    assert not torch.equal(SmallTransformer(model.config).head.weight, model.module.head.weight)


def test_the_train_node_logs_the_activation_memory_checkpointing_saves(sets):
    train, dev, _ = sets
    held = {}
    for checkpointing in (False, True):
        transformer = {**SMALL, "layers": 4, "gradient_checkpointing": checkpointing}
        params = {**NO_DP, "epochs": 1, "model": {"kind": "transformer", "transformer": transformer}}
        _, history, _ = train_text_classifier(train.iloc[:32], dev.iloc[:8], params, {}, 0)
        held[checkpointing] = history["activation_mb_per_step"]["value"]
    assert 0 < held[True] < 0.6 * held[False], held
    short = train.iloc[:32].assign(body="tiny", subject="")  # other private rows: the figure must not move
    _, again, _ = train_text_classifier(short, dev.iloc[:8], params, {}, 0)
    assert again["activation_mb_per_step"]["value"] == held[True]
    private = {**params, "privacy": {"refuse_signal_to_noise": 0, "min_signal_to_noise": 0}}
    with pytest.raises(ParameterError, match="gradient_checkpointing with DP"):
        train_text_classifier(train.iloc[:32], dev.iloc[:8], private, {}, 0)


def test_a_model_too_large_for_the_memory_limit_is_refused_with_the_estimate(sets):
    train, dev, _ = sets
    params = {**NO_DP, "memory_limit_mb": 1, "model": {"kind": "transformer", "transformer": SMALL}}
    with pytest.raises(ParameterError, match=r"needs about \d+ MiB to train, above train.memory_limit_mb 1: .*"
                                             r"weights .* MiB of activations per physical step"):  # fmt: skip
        train_text_classifier(train, dev, params, {}, 0)
    roomy = {**params, "memory_limit_mb": 4096, "epochs": 1}
    assert train_text_classifier(train.iloc[:32], dev.iloc[:8], roomy, {}, 0)[0].kind == "transformer"
