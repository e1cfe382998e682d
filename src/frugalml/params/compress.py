"""``params:compress``: which precision the compressed model gets, what else the report compares, the gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from frugalml.params.core import Strict, register_params

Precision = Literal["fp16", "bf16", "fp8", "int8", "int4-kmeans"]
_COMPARED: tuple[Precision, ...] = ("fp16", "int8", "int4-kmeans")


@register_params("compress")
class CompressParams(Strict):
    """The compress stage (``kedro run --pipeline=compress``; in the default chain when ``enabled``)."""

    enabled: bool = False  # true: `make run` / `kedro run` also compresses (and evaluates the compressed model)
    precision: Precision = "int8"  # the variant written as compressed_classifier
    compare: list[Precision] = Field(default_factory=lambda: list(_COMPARED))  # also measured for the report
    observer: Literal["minmax", "percentile", "mse"] = "minmax"  # how int8/fp8 pick each channel's scale
    per_channel: bool = True
    group_weights: int = Field(default=4096, ge=16)  # int4-kmeans: weights sharing one 16-centroid codebook
    iterations: int = Field(default=20, ge=1, le=200)  # int4-kmeans: Lloyd iterations
    min_numel: int = Field(default=1024, ge=1)  # tensors with fewer weights stay fp32
    keep_int8: list[str] = Field(default_factory=list)  # int4-kmeans: tensor-name patterns that stay int8
    encoder: bool = True  # pretrained / hybrid kinds: compress the encoder into the artifact too
    # calibrated on dev texts (encoder kinds): int8 Linear layers whose dynamic-INT8 output error exceeds this run
    # weight-only (decoded to fp32); null: every int8 Linear runs INT8
    max_dynamic_int8_error: float | None = Field(default=0.05, ge=0, allow_inf_nan=False)
    # how the encoder's INT8 Linear layers quantise their inputs (precision int8): dynamic (a range per batch) |
    # static (a range fixed per layer on the calibration texts by activation_observer)
    activations: Literal["dynamic", "static"] = "dynamic"
    activation_observer: Literal["minmax", "percentile", "mse"] = "minmax"
    int8_share: float = Field(default=0.0, ge=0, le=1)  # int4-kmeans: share of encoder weights kept int8
    activation_aware: bool = True  # int4-kmeans: k-means weighted by calibration activations / token counts
    # int4-kmeans, encoder kinds: each Linear weight's indices re-chosen by GPTQ error compensation over its k-means
    # codebooks, then its centroids re-solved by least squares, on the calibration texts' layer inputs
    gptq: bool = True
    refit_centroids: bool = False
    calibration_texts: int = Field(default=64, ge=1, le=4096)  # dev texts the encoder's calibration reads
    # structured pruning of the encoder (pretrained / hybrid kinds) before quantisation: the share of each layer's
    # FFN channels and attention heads physically removed, scored by fluctuation (calibration), l1 / l2 or taylor (the
    # classifier's loss on the labelled dev rows)
    prune_ffn: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)
    prune_heads: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)
    prune_importance: Literal["fluctuation", "l1", "l2", "taylor"] = "fluctuation"
    # the share of an MLP head's hidden units removed (train.model.hidden_dim > 0: the bag and frozen-encoder kinds),
    # scored by prune_importance like the encoder's channels
    prune_hidden: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)
    # the gate: the compressed model may lose at most this much dev accuracy against the uncompressed one
    max_dev_accuracy_drop: float = Field(default=0.01, ge=0, le=1, allow_inf_nan=False)
    on_accuracy_drop: Literal["fail", "warn"] = "fail"
    # ONNX export of the compressed model (pretrained kind): int8 precision exports int8 MatMul weights; the graph
    # is checked with onnxruntime against torch on the dev rows and refused below this agreement
    onnx: bool = False
    onnx_min_agreement: float = Field(default=0.95, ge=0, le=1, allow_inf_nan=False)
    latency_batches: list[int] = Field(default_factory=lambda: [1, 256])  # CPU latency measured at these sizes
    latency_repeats: int = Field(default=3, ge=1, le=50)

    @field_validator("latency_batches")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(batch < 1 for batch in value):
            raise ValueError(f"latency batch sizes must be >= 1, got {value}")
        return value
