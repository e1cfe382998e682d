"""ONNX export of the ``pretrained`` kind and its compressed variants, checked with onnxruntime against torch.

One graph from token ids to class probabilities: the encoder (``input_ids``, ``attention_mask``: int64, batch and
sequence dynamic), its pooling (``mean`` over the mask or ``cls``) and L2 normalisation, the head, a softmax
(``probabilities``: (N, C), column k the probability of ``labels[k]``). Tokenisation stays outside the graph: the
tokenizer files travel with the model (the compressed artifact's ``encoder/``), truncation at ``max_tokens``.

The weights exported are the model's own, decoded to float32 (an int4 or fp16 encoder's values, not their
storage). ``int8``: onnxruntime's dynamic quantisation then stores every MatMul weight as per-channel symmetric
int8 (the grid of frugalml's ``minmax`` int8 codec, so an int8 model keeps its weights) and quantises activations
per batch, as torch's dynamic INT8 layers do; the layers the compressed encoder computes in float32 (weight-only
int8, ``max_dynamic_int8_error``) stay float32 MatMuls. The check runs both on the same rows: agreement of the predicted
classes and the largest probability change.

Not supported: the ``ngram_bag`` and ``hybrid`` kinds (their hashed n-gram features are computed in Python, not in
a graph).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from frugalml.errors import CompressionError
from frugalml.models.encoder import float_encoder_model, forget_encoder, frame_texts, load_encoder
from frugalml.models.fine_tune import EncoderClassifier, check_mergeable, frozen_equivalent

OPSET = 17
SUPPORTED_KINDS = ("pretrained",)


class _Graph(EncoderClassifier):
    """Token ids -> encoder -> pooling -> L2 norm -> head -> softmax."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(super().forward(input_ids, attention_mask), dim=-1)


def _scope(module_name: str) -> str:
    """The ONNX node-name scope the TorchScript exporter gives an encoder module (``encoder.layer.0.output.dense``
    -> ``/encoder/encoder/layer.0/output/dense/``)."""
    parts: list[str] = []
    for part in module_name.split("."):
        if part.isdigit() and parts:
            parts[-1] = f"{parts[-1]}.{part}"
        else:
            parts.append(part)
    return "/encoder/" + "/".join(parts) + "/"


def _fp32_layers(spec: Any) -> list[str]:
    """The encoder Linear layers a compressed int8 encoder computes in float32 (weight-only: their activations
    quantise badly), so the ONNX graph keeps them float too."""
    from frugalml.models.encoder import COMPRESSED_WEIGHTS, resolve_encoder_dir, weights_file

    directory = resolve_encoder_dir(spec.path)
    if weights_file(directory).name != COMPRESSED_WEIGHTS:
        return []
    from frugalml.models.codecs import deserialise

    codes = deserialise((directory / COMPRESSED_WEIGHTS).read_bytes(), source=str(directory / COMPRESSED_WEIGHTS))
    return sorted(name.removesuffix(".weight") for name, code in codes.items()
                  if code.codec == "int8" and code.meta.get("dynamic") is False)  # fmt: skip


def check_exportable(model: Any) -> None:
    """Refuse a model ONNX export does not cover.

    Raises:
        CompressionError: Naming the kind.
    """
    kind = getattr(model, "kind", "ngram_bag")
    if getattr(model, "tasks", None):
        raise CompressionError(
            f"ONNX export of a multi-task model (tasks {[task.name for task in model.tasks]}) is not built yet: the "
            "graph would hold the main head only; turn compress.onnx off for it"
        )
    fine_tuned = check_mergeable(model, "ONNX export of", "turn compress.onnx off for it")
    if kind not in SUPPORTED_KINDS or (getattr(model, "encoder", None) is None and not fine_tuned):
        why = "its hashed n-gram features are" if kind in ("ngram_bag", "hybrid") else "its inputs are"
        raise CompressionError(
            f"ONNX export covers the {list(SUPPORTED_KINDS)} kind; this model is {kind!r} ({why} computed in "
            "Python, outside any graph, and its export is not built): turn compress.onnx off for it"
        )


def export_onnx(model: Any, rows: pd.DataFrame, *, int8: bool) -> tuple[bytes, dict[str, Any]]:
    """The ONNX graph of ``model`` and how onnxruntime's outputs compare with torch's on ``rows``.

    Args:
        model: A ``pretrained`` classifier, compressed or not.
        rows: Rows to check on (the dev split; never test rows), with the model's text columns.
        int8: Quantise the exported graph's MatMul weights to int8 (onnxruntime dynamic quantisation).

    Returns:
        The ``.onnx`` bytes and the report (opset, inputs, bytes, rows, agreement, largest probability change).

    Raises:
        CompressionError: An unsupported kind, or no rows to check on.
    """
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    check_exportable(model)
    if rows is None or len(rows) == 0:
        raise CompressionError("the ONNX check needs rows (dev_labelled), and there are none")
    if getattr(model, "fine_tuning", "frozen") != "frozen":  # LoRA merged / fully trained: a plain encoder
        with tempfile.TemporaryDirectory(prefix="frugalml-merged-") as folder:
            frozen = frozen_equivalent(model, Path(folder))
            try:
                return export_onnx(frozen, rows, int8=int8)
            finally:
                forget_encoder(frozen.encoder)
    spec = model.encoder
    tokenizer = load_encoder(spec).tokenizer
    graph = _Graph(float_encoder_model(spec), model.module, spec.pooling).eval()
    texts = frame_texts(rows, list(model.text_columns))
    batch = tokenizer(texts, truncation=True, max_length=spec.max_tokens, padding=True, return_tensors="pt")
    example = (batch["input_ids"][:2], batch["attention_mask"][:2])
    axes = {"input_ids": {0: "rows", 1: "tokens"}, "attention_mask": {0: "rows", 1: "tokens"},
            "probabilities": {0: "rows"}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="frugalml-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(graph, example, str(path), input_names=["input_ids", "attention_mask"],
                              output_names=["probabilities"], dynamic_axes=axes, opset_version=OPSET,
                              dynamo=False)  # fmt: skip
        excluded: list[str] = []
        if int8:
            import onnx

            scopes = [_scope(name) for name in _fp32_layers(spec)]
            matmuls = [node.name for node in onnx.load(str(path)).graph.node if node.op_type in ("MatMul", "Gemm")]
            excluded = [name for name in matmuls if any(name.startswith(scope) for scope in scopes)]
            quantised = Path(folder) / "model.int8.onnx"
            quantize_dynamic(str(path), str(quantised), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_exclude=excluded)  # fmt: skip
            path = quantised
        data = path.read_bytes()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    outputs = []
    for start in range(0, len(texts), 64):
        part = tokenizer(texts[start : start + 64], truncation=True, max_length=spec.max_tokens, padding=True,
                         return_tensors="np")  # fmt: skip
        feed = {name: part[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        outputs.append(session.run(["probabilities"], feed)[0])
    onnx_probs = np.concatenate(outputs)
    torch_probs = model.predict_proba(rows)
    report = {
        "opset": OPSET,
        "int8": int8,
        "bytes": len(data),
        "inputs": ["input_ids", "attention_mask"],
        "max_tokens": spec.max_tokens,
        "pooling": spec.pooling,
        "fp32_matmuls": len(excluded),  # the layers torch also computes in float32
        "rows": len(rows),
        "agreement": float((onnx_probs.argmax(1) == torch_probs.argmax(1)).mean()),
        "max_probability_change": float(np.abs(onnx_probs - torch_probs).max()),
    }
    return data, report
