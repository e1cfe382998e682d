"""The compress stage's nodes: compress the trained model, compare variants side by side on the dev split, gate
the chosen one on its dev accuracy, and draw the accuracy-size frontier.

Calibration and every figure here use the dev rows (``dev_labelled``), never test rows: the compressed model's
test figures come from the evaluate nodes that run after it (``compressed.*`` datasets).
"""

from __future__ import annotations

import logging
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  # after the backend is chosen
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from frugalml.errors import CompressionError, EmptyDatasetError  # noqa: E402
from frugalml.models.compression import (  # noqa: E402
    CompressedClassifier,
    Compressible,
    CompressionSpec,
    agreement,
    check_calibration,
    check_model,
    compressible,
    fp32_nbytes,
    latency,
    quantize,
)
from frugalml.models.onnx_export import check_exportable, export_onnx  # noqa: E402
from frugalml.models.zoo import Classifier, load_classifier  # noqa: E402
from frugalml.params import CompressParams, DataSchema, parse_params  # noqa: E402
from frugalml.tracking import Metrics, as_metrics  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["check_compression", "compress_classifier", "export_compressed_onnx", "plot_compression_frontier"]


def _settings(config: CompressParams, precision: str) -> dict[str, Any]:
    """The CompressionSpec fields of ``config`` for one variant (static activations apply to int8 only)."""
    return {
        "activations": config.activations if precision == "int8" else "dynamic",
        "activation_observer": config.activation_observer,
        "observer": config.observer, "group_weights": config.group_weights, "iterations": config.iterations,
        "min_numel": config.min_numel, "keep_int8": tuple(config.keep_int8), "encoder": config.encoder,
        "max_dynamic_int8_error": config.max_dynamic_int8_error, "int8_share": config.int8_share,
        "activation_aware": config.activation_aware, "calibration_texts": config.calibration_texts,
        "gptq": config.gptq, "refit_centroids": config.refit_centroids,
        "prune_ffn": config.prune_ffn, "prune_heads": config.prune_heads, "prune_importance": config.prune_importance,
        "prune_hidden": config.prune_hidden,
    }  # fmt: skip


_PARTS = ("head_pruning", "encoder_pruning", "encoder_parameters", "encoder_sensitivity", "encoder_int8_tensors",
          "encoder_fp32_compute", "encoder_static_int8")  # fmt: skip


def _variant_parts(figures: dict[str, Any]) -> dict[str, Any]:
    """What a variant's pruning removed (head and encoder widths, per-layer errors, weights kept) and its encoder's
    calibration (per-tensor errors, the tensors kept int8, computed in fp32, with static ranges), where it has them."""
    return {key: figures[key] for key in _PARTS if key in figures}


def _latencies(model: Any, rows: pd.DataFrame, config: CompressParams) -> dict[str, float]:
    return {f"latency_b{batch}_s": round(latency(model, rows, batch=batch, repeats=config.latency_repeats), 5)
            for batch in config.latency_batches}  # fmt: skip


def _variant(
    model: Classifier, precision: str, dev: pd.DataFrame, *, frozen: Compressible, config: CompressParams,
    label_column: str, reference_accuracy: float,
) -> tuple[dict[str, Any], CompressedClassifier]:  # fmt: skip
    """One ``compress.compare`` variant of ``model`` (``frozen``: :func:`compressible`'s value): its report entry
    and the compressed model."""
    logger.info("compress: %s", precision)
    compressed, figures = quantize(
        model, precision=precision, calibration=dev, per_channel=config.per_channel, label_column=label_column,
        load_base=load_classifier, frozen=frozen, **_settings(config, precision),
    )  # fmt: skip
    calibration = figures.pop("calibration")
    entry = {
        "bytes": figures["bytes"],
        "size_ratio": figures["size_ratio"],
        "dev_accuracy": calibration["accuracy"],
        "dev_accuracy_drop": round(reference_accuracy - calibration["accuracy"], 6),
        "agreement": calibration["agreement"],
        "max_probability_change": calibration["max_probability_change"],
        "compress_seconds": figures["seconds"],
        "tensors": figures["tensors"],
        **_variant_parts(figures),
        **_latencies(compressed, dev, config),
    }
    return entry, compressed


def compress_classifier(
    model: Classifier, dev: pd.DataFrame, params: dict[str, Any], data: dict[str, Any]
) -> tuple[CompressedClassifier, Metrics, dict[str, Any]]:
    """Compress ``model`` to ``compress.precision``; measure it and each ``compress.compare`` variant on dev.

    Args:
        model: The trained ``text_classifier`` (any kind).
        dev: Labelled dev rows (calibration and the report's figures).
        params: ``params:compress``.
        data: ``params:data``.

    Returns:
        The compressed model (the chosen precision; checked by :func:`check_compression` before it is saved),
        MLflow metrics and the JSON report: per variant bytes, size ratio, dev accuracy, agreement with the
        uncompressed model, CPU latency; the uncompressed reference likewise.

    Raises:
        CompressionError: On a bad request or calibration set, before any tensor is compressed.
        EmptyDatasetError: When there are no dev rows.
    """
    config = parse_params(CompressParams, params, name="compress")
    schema = parse_params(DataSchema, data, name="data")
    if dev is None or len(dev) == 0:
        raise EmptyDatasetError("compress calibrates on the dev split (dev_labelled), which is empty")
    if isinstance(model, CompressedClassifier):
        raise CompressionError("text_classifier is compressed already; compress an uncompressed model")
    variants = [config.precision, *[p for p in dict.fromkeys(config.compare) if p != config.precision]]
    for precision in variants:  # every request checked (FP8 without a GPU, ...) before the model is run once
        check_model(
            model, CompressionSpec(precision=precision, per_channel=config.per_channel, **_settings(config, precision))
        )
    if config.onnx:
        check_exportable(model)
    check_calibration(dev, list(model.text_columns), schema.label_column)
    reference = agreement(model, model, dev, schema.label_column)
    report: dict[str, Any] = {
        "chosen": config.precision,
        "calibration_rows": len(dev),
        "reference": {
            "kind": getattr(model, "kind", "ngram_bag"),
            "bytes": fp32_nbytes(model),
            "dev_accuracy": reference["accuracy"],
            **_latencies(model, dev, config),
        },  # fmt: skip
        "variants": {},
    }
    chosen: CompressedClassifier | None = None
    with compressible(model) as frozen:  # a fine-tuned encoder is merged once for every variant
        for precision in variants:
            report["variants"][precision], compressed = _variant(
                model, precision, dev, frozen=frozen, config=config, label_column=schema.label_column,
                reference_accuracy=reference["accuracy"],
            )  # fmt: skip
            if precision == config.precision:
                chosen = compressed
    assert chosen is not None  # noqa: S101  # the chosen precision is the first variant
    best = report["variants"][config.precision]
    figures = {
        "size_ratio": best["size_ratio"], "bytes": best["bytes"], "fp32_bytes": report["reference"]["bytes"],
        "dev_accuracy": best["dev_accuracy"], "dev_accuracy_drop": best["dev_accuracy_drop"],
        "agreement": best["agreement"],
    }  # fmt: skip
    for batch in config.latency_batches:
        key = f"latency_b{batch}_s"
        figures[f"cpu_latency_ratio_b{batch}"] = report["reference"][key] / max(best[key], 1e-9)
    logger.info("compressed to %s: %.1fx smaller, dev accuracy %.4f (uncompressed %.4f)", config.precision,
                best["size_ratio"], best["dev_accuracy"], reference["accuracy"])  # fmt: skip
    return chosen, as_metrics(figures), report


def check_compression(
    candidate: CompressedClassifier, report: dict[str, Any], params: dict[str, Any]
) -> CompressedClassifier:
    """The gate: the chosen variant may lose at most ``max_dev_accuracy_drop`` dev accuracy.

    Args:
        candidate: The compressed model.
        report: From :func:`compress_classifier` (saved before this node runs).
        params: ``params:compress``.

    Returns:
        ``candidate``, to be saved (and logged to MLflow) as ``compressed_classifier``.

    Raises:
        CompressionError: When it loses more and ``on_accuracy_drop`` is ``fail``.
    """
    config = parse_params(CompressParams, params, name="compress")
    drop = report["variants"][config.precision]["dev_accuracy_drop"]
    if drop > config.max_dev_accuracy_drop:
        message = (
            f"the {config.precision} model loses {drop:.4f} dev accuracy against the uncompressed one, more than "
            f"compress.max_dev_accuracy_drop {config.max_dev_accuracy_drop}; try compress.precision int8, or keep "
            "the most sensitive layers wider (compress.keep_int8); compression_report has every variant's figures"
        )
        if config.on_accuracy_drop == "fail":
            raise CompressionError(message)
        logger.warning(message)
    return candidate


def export_compressed_onnx(
    model: CompressedClassifier, dev: pd.DataFrame, params: dict[str, Any]
) -> tuple[dict[str, bytes], Metrics]:
    """With ``compress.onnx``: the compressed model as an ONNX folder, checked with onnxruntime on the dev rows.

    Args:
        model: ``compressed_classifier`` (the pretrained kind).
        dev: Labelled dev rows (the check; never test rows).
        params: ``params:compress``.

    Returns:
        The folder's files (``model.onnx``, ``model.json`` with labels, text columns, tokenisation and the
        check's figures, the tokenizer files; nothing without ``compress.onnx``) and ``compress_onnx.*`` metrics.

    Raises:
        CompressionError: When onnxruntime's predictions agree with torch's on fewer than ``onnx_min_agreement``
            of the dev rows.
    """
    import json

    from frugalml.models.encoder import resolve_encoder_dir

    config = parse_params(CompressParams, params, name="compress")
    if not config.onnx:
        return {}, {}
    data, report = export_onnx(model, dev, int8=config.precision == "int8")
    if report["agreement"] < config.onnx_min_agreement:
        raise CompressionError(
            f"the ONNX graph's predictions match the torch model's on {report['agreement']:.4f} of {report['rows']} "
            f"dev rows, below compress.onnx_min_agreement {config.onnx_min_agreement}: not exported"
        )
    description = {"labels": list(model.labels), "label_names": list(model.label_names), "check": report,
                   "text_columns": list(model.text_columns), "precision": config.precision}  # fmt: skip
    files = {"model.onnx": data, "model.json": json.dumps(description, indent=2).encode()}
    assert model.encoder is not None  # noqa: S101  # export_onnx refused a model without one
    folder = resolve_encoder_dir(model.encoder.path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (folder / name).is_file():
            files[name] = (folder / name).read_bytes()
    logger.info("ONNX export: %.1f MB, agreement %.4f with torch on %d dev rows", len(data) / 1e6,
                report["agreement"], report["rows"])  # fmt: skip
    figures = {key: report[key] for key in ("bytes", "agreement", "max_probability_change")}
    return files, as_metrics(figures)


def plot_compression_frontier(report: dict[str, Any]) -> Figure:
    """Dev accuracy against weight bytes (log scale), one point per variant and the uncompressed model.

    Args:
        report: From :func:`compress_classifier`.

    Returns:
        The figure (saved by the catalog).
    """
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    reference = report["reference"]
    axes.scatter([reference["bytes"] / 1e6], [reference["dev_accuracy"]], color="black", zorder=3)
    axes.annotate("fp32", (reference["bytes"] / 1e6, reference["dev_accuracy"]), textcoords="offset points",
                  xytext=(5, 5))  # fmt: skip
    for name, variant in report["variants"].items():
        colour = "tab:red" if name == report["chosen"] else "tab:blue"
        axes.scatter([variant["bytes"] / 1e6], [variant["dev_accuracy"]], color=colour, zorder=3)
        axes.annotate(f"{name} ({variant['size_ratio']:.1f}x)", (variant["bytes"] / 1e6, variant["dev_accuracy"]),
                      textcoords="offset points", xytext=(5, -12))  # fmt: skip
    axes.set_xscale("log")
    axes.set(xlabel="weights (MB, log scale)", ylabel="dev accuracy",
             title=f"compression of the {reference['kind']} model (red: chosen)")  # fmt: skip
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure
