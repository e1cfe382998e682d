"""Compress a trained classifier of any kind: ``quantize(model, precision=..., calibration=...)``.

Every float tensor of the model is given a codec (:mod:`frugalml.models.codecs`) by one rule: non-float tensors
stay ``raw``; tensors under ``min_numel`` weights stay ``fp32``; vectors of at least ``min_numel`` entries (an
idf table) go to ``int8`` under the 8- and 4-bit precisions (one scale each, never 16 centroids); tensor names
matching a
``keep_int8`` pattern get ``int8`` under ``int4-kmeans`` (mixed precision); the rest get ``precision``. For the
``pretrained`` and ``hybrid`` kinds the encoder is compressed by the same rule and travels inside the artifact
(``encoder/``: its config, tokenizer and one compressed-weights file whose sha256 the model pins), so the
compressed model no longer needs the 90 MB fp32 encoder. INT8 Linear layers of the encoder run as INT8
(dynamic activation quantisation, x86/fbgemm); the other codecs are decoded to float32 at load.

The calibration rows (the dev split - never test rows) check the result: accuracy and agreement with the
uncompressed model, in the report; for the encoder kinds they also calibrate it (docs/compression.md).
``activations: static`` (precision ``int8``, encoder kinds) also fixes each INT8 Linear's input range on the
calibration texts (observer ``activation_observer``) instead of measuring it per batch. Under ``int4-kmeans`` the
encoder's Linear indices can be re-chosen by GPTQ and its centroids re-solved by least squares on the calibration
inputs (``gptq``, ``refit_centroids``; :mod:`frugalml.models.codebook_fit`). QAT is not built (issue 18). A
fine-tuned encoder (LoRA merged into its Linear layers, or fully trained) is compressed as the frozen encoder it
equals (:func:`frugalml.models.fine_tune.frozen_equivalent`). ``prune_ffn`` /
``prune_heads`` remove channels and heads of the encoder before it is quantised (:mod:`frugalml.models.pruning`),
``prune_hidden`` hidden units of MLP heads (:mod:`frugalml.models.head_pruning`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from frugalml.errors import CompressionError
from frugalml.models.codecs import (
    ACTIVATIONS,
    OBSERVERS,
    PRECISIONS,
    Encoded,
    check_precision,
    decode,
    deserialise,
    encode,
    serialise,
)
from frugalml.models.encoder import (
    COMPRESSED_WEIGHTS,
    EncoderSpec,
    forget_encoder,
    frame_texts,
    load_encoder,
    replace_model,
    resolve_encoder_dir,
    weights_file,
)
from frugalml.models.fine_tune import check_mergeable
from frugalml.models.multitask import ALL_OUTPUTS, model_tasks, task_output, task_targets, with_tasks
from frugalml.models.ngram_bag import csr_to_bags
from frugalml.models.pruning import PruneSpec, encoder_layers, prune_encoder

FORMAT = "frugalml.compressed/1"
ENCODER_DIR = "encoder"
_STATIC_NEEDS_CALIBRATION = (
    "static INT8 activations fix each layer's input range on calibration texts: give calibration rows "
    "(dev_labelled) or set compress.activations: dynamic"
)
_TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass(frozen=True)
class CompressionSpec:
    """How to compress: the precision, the int8 observer, grouping, what stays wide."""

    precision: str = "int8"
    observer: str = "minmax"
    per_channel: bool = True
    group_weights: int = 4096  # int4-kmeans: weights per codebook (whole output channels)
    iterations: int = 20  # int4-kmeans: Lloyd iterations
    min_numel: int = 1024  # tensors with fewer weights stay fp32
    keep_int8: tuple[str, ...] = ()  # int4-kmeans: tensor-name patterns (fnmatch) that stay int8
    encoder: bool = True  # also compress the encoder of the pretrained / hybrid kinds
    # calibrated (encoder kinds, with calibration rows): int4-kmeans keeps this share of the encoder's weights at
    # int8, the most sensitive tensors first; int8 Linear layers whose dynamic-INT8 output error exceeds
    # max_dynamic_int8_error decode to fp32 instead of running INT8 (None: every int8 Linear runs INT8)
    int8_share: float = 0.0
    max_dynamic_int8_error: float | None = None
    activation_aware: bool = True  # int4-kmeans: weight the k-means by calibration importance (encoder kinds)
    # int4-kmeans, encoder kinds (frugalml.models.codebook_fit): re-choose each Linear weight's indices by GPTQ error
    # compensation over its k-means codebooks, then re-solve its centroids by least squares, on calibration inputs
    gptq: bool = False
    refit_centroids: bool = False
    calibration_texts: int = 64
    # how the encoder's INT8 Linear layers quantise their inputs (precision int8): dynamic (per batch) | static
    # (a range fixed on the calibration texts by activation_observer)
    activations: str = "dynamic"
    activation_observer: str = "minmax"
    # structured pruning of the encoder before it is quantised (frugalml.models.pruning): shares of each layer's
    # FFN channels and attention heads removed, and how they are scored
    prune_ffn: float = 0.0
    prune_heads: float = 0.0
    prune_importance: str = "fluctuation"
    prune_hidden: float = 0.0  # share of the MLP heads' hidden units removed (frugalml.models.head_pruning)

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            CompressionError: On an unknown precision or observer, FP8 without a GPU, a bad size setting.
        """
        check_precision(self.precision)
        if self.observer not in OBSERVERS:
            raise CompressionError(f"unknown observer {self.observer!r}; choose one of {list(OBSERVERS)}")
        if self.group_weights < 16 or self.iterations < 1 or self.min_numel < 1:
            raise CompressionError("group_weights must be >= 16, iterations >= 1 and min_numel >= 1")
        if not 0 <= self.int8_share <= 1 or self.calibration_texts < 1:
            raise CompressionError(f"int8_share must be in [0, 1] (got {self.int8_share}) and calibration_texts >= 1")
        if self.max_dynamic_int8_error is not None and self.max_dynamic_int8_error < 0:
            raise CompressionError(f"max_dynamic_int8_error must be >= 0, got {self.max_dynamic_int8_error}")
        if self.activations not in ACTIVATIONS:
            raise CompressionError(f"unknown activations {self.activations!r}; choose one of {list(ACTIVATIONS)}")
        if self.activation_observer not in OBSERVERS:
            raise CompressionError(
                f"unknown activation_observer {self.activation_observer!r}; choose one of {list(OBSERVERS)}"
            )
        if self.activations == "static" and self.precision != "int8":
            raise CompressionError(
                f"static INT8 activations need precision int8, not {self.precision!r} (only int8 Linear layers "
                "quantise their inputs); set compress.activations: dynamic"
            )
        self.pruning()  # validates the ratios and the importance
        if not 0 <= self.prune_hidden < 1:
            raise CompressionError(
                f"the hidden-unit pruning ratio must be in [0, 1) (a share removed), got {self.prune_hidden}"
            )

    def pruning(self) -> PruneSpec:
        """The structured pruning of the encoder this spec asks for."""
        return PruneSpec(ffn=self.prune_ffn, heads=self.prune_heads, importance=self.prune_importance)

    def calibrated(self) -> bool:
        """Whether the encoder's compression needs its sensitivity measured on calibration texts."""
        return (self.precision == "int4-kmeans" and (self.int8_share > 0 or self.activation_aware
                                                     or self.gptq or self.refit_centroids)) or (
            self.precision == "int8" and (self.max_dynamic_int8_error is not None or self.static()))  # fmt: skip

    def static(self) -> bool:
        """Whether the encoder's INT8 layers get calibrated (static) input ranges."""
        return self.activations == "static"

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {**asdict(self), "keep_int8": list(self.keep_int8)}


def plan(
    tensors: dict[str, torch.Tensor], spec: CompressionSpec, overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """The codec of each tensor under ``spec`` (see the module docstring); ``overrides`` win (calibration)."""
    codecs: dict[str, str] = {}
    for name, tensor in tensors.items():
        if overrides and name in overrides and tensor.is_floating_point() and tensor.dim() >= 2:
            codecs[name] = overrides[name]
        elif not tensor.is_floating_point():
            codecs[name] = "raw"
        elif tensor.numel() < spec.min_numel:
            codecs[name] = "fp32"
        elif tensor.dim() < 2:
            codecs[name] = "int8" if spec.precision in ("int8", "int4-kmeans") else spec.precision
        elif spec.precision == "int4-kmeans" and any(fnmatch.fnmatchcase(name, p) for p in spec.keep_int8):
            codecs[name] = "int8"
        else:
            codecs[name] = spec.precision
    return codecs


def compress_tensors(
    tensors: dict[str, torch.Tensor], spec: CompressionSpec, *, overrides: dict[str, str] | None = None,
    weight_only: frozenset[str] = frozenset(), importance: dict[str, torch.Tensor] | None = None,
) -> dict[str, Encoded]:  # fmt: skip
    """Encode every tensor by :func:`plan`; int8 weights named in ``weight_only`` decode to fp32 at load;
    ``importance`` weights the int4 k-means of the tensors it names."""
    codecs = plan(tensors, spec, overrides)
    importance = importance or {}
    codes = {
        name: encode(
            tensor,
            codecs[name],
            **encode_settings(spec),
            name=name,
            importance=importance.get(name) if codecs[name] == "int4-kmeans" else None,
        )  # fmt: skip
        for name, tensor in tensors.items()
    }
    for name in weight_only:
        if name in codes and codes[name].codec == "int8":
            codes[name].meta["dynamic"] = False
    return codes


def encode_settings(spec: CompressionSpec) -> dict[str, Any]:
    """The codec keyword arguments of ``spec``."""
    return {"observer": spec.observer, "per_channel": spec.per_channel, "group_weights": spec.group_weights,
            "iterations": spec.iterations}  # fmt: skip


def decode_all(codes: dict[str, Encoded]) -> dict[str, torch.Tensor]:
    """Every tensor decoded (float32, or as stored for ``raw``)."""
    return {name: decode(code) for name, code in codes.items()}


def check_calibration(calibration: pd.DataFrame | None, text_columns: list[str], label_column: str | None) -> None:
    """Refuse a calibration set that cannot check anything.

    Raises:
        CompressionError: When it is empty, not a table, or lacks the model's text columns or the label column.
    """
    if calibration is None:
        return
    if not isinstance(calibration, pd.DataFrame):
        raise CompressionError(f"the calibration set must be a table of rows, not {type(calibration).__name__}")
    if calibration.empty:
        raise CompressionError("the calibration set is empty: compress needs labelled dev rows (dev_labelled)")
    missing = [c for c in [*text_columns, *([label_column] if label_column else [])] if c not in calibration.columns]
    if missing:
        raise CompressionError(
            f"the calibration set lacks column(s) {missing}; it has {list(calibration.columns)[:10]} "
            f"(the model reads {text_columns})"
        )


class CompressedEncoder:
    """A compressed encoder directory (config, tokenizer, compressed weights) in a private temporary folder,
    until the model is saved; its spec pins the compressed file's sha256."""

    def __init__(
        self, source: EncoderSpec, spec: CompressionSpec, texts: list[str] | None = None, objective: Any = None
    ) -> None:
        """Compress the encoder ``source`` names (digest-checked as it loads).

        Args:
            source: The fp32 encoder's spec.
            spec: How to compress.
            texts: Calibration texts (used when ``spec.calibrated()``).
            objective: ``(embeddings, rows) -> summed loss`` of the classifier on ``texts`` (their labels), for
                ``prune_importance: taylor`` (:func:`taylor_objective`).
        """
        if spec.static() and not texts:
            raise CompressionError(_STATIC_NEEDS_CALIBRATION)
        encoder = load_encoder(source)
        model, self.pruning = self._pruned(encoder, spec, texts, source, objective)
        state = {name: tensor for name, tensor in model.state_dict().items()}
        self.sensitivity: dict[str, Any] = {}
        measured: dict[str, Any] = {}
        recorded: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None
        overrides: dict[str, str] = {}
        weight_only: frozenset[str] = frozenset()
        weights: dict[str, torch.Tensor] = {}
        if spec.calibrated() and texts:
            from frugalml.models.calibration import choose_int8, encoder_sensitivity, importance, record_inputs

            sample = texts[: spec.calibration_texts]
            # a static range is fitted on every recorded token row (a sample would miss the extremes)
            recorded = record_inputs(model, encoder.tokenizer, sample, max_tokens=source.max_tokens,
                                     max_rows=1 << 14 if spec.static() else 2048)  # fmt: skip
            if spec.precision == "int4-kmeans" and spec.activation_aware:
                weights = importance(model, *recorded)
            codecs = ("int4-kmeans",) if spec.precision == "int4-kmeans" else ("int8",)
            measured = encoder_sensitivity(model, encoder.tokenizer, sample, codecs=codecs,
                                           max_tokens=source.max_tokens, encode_settings=encode_settings(spec),
                                           recorded=recorded, weights=weights, activations=spec.activations,
                                           activation_observer=spec.activation_observer)  # fmt: skip
            self.sensitivity = {name: entry.as_dict() for name, entry in measured.items()}
            if spec.precision == "int4-kmeans":
                total = sum(t.numel() for t in state.values() if t.is_floating_point() and t.dim() >= 2)
                overrides = dict.fromkeys(choose_int8(measured, share=spec.int8_share, total_weights=total), "int8")
            else:
                limit = spec.max_dynamic_int8_error
                weight_only = frozenset(n for n, e in measured.items()
                                        if e.dynamic_int8_error is not None and limit is not None
                                        and e.dynamic_int8_error > limit)  # fmt: skip
        self.codes = compress_tensors(state, spec, overrides=overrides, weight_only=weight_only, importance=weights)
        self._fit_codebooks(recorded[0] if recorded else {}, state, spec)
        if spec.static():
            for name, code in self.codes.items():
                entry = measured.get(name)
                if entry is not None and entry.input_meta and code.codec == "int8" and name not in weight_only:
                    code.meta.update(entry.input_meta)
        data = serialise(self.codes)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self._tmp = tempfile.TemporaryDirectory(prefix="frugalml-encoder-")
        self.directory = Path(self._tmp.name)
        source_dir = resolve_encoder_dir(source.path)
        for name in _TOKENIZER_FILES:
            if (source_dir / name).is_file():
                shutil.copy2(source_dir / name, self.directory / name)
        (self.directory / COMPRESSED_WEIGHTS).write_bytes(data)
        self.source_bytes = weights_file(source_dir).stat().st_size
        self.spec = replace(source, sha256=self.sha256, path=str(self.directory))

    def _fit_codebooks(
        self, inputs: dict[str, torch.Tensor], state: dict[str, torch.Tensor], spec: CompressionSpec
    ) -> None:
        """GPTQ assignment and centroid refit (:mod:`frugalml.models.codebook_fit`) of every int4-kmeans Linear
        weight whose inputs were recorded; each step's output error on those inputs goes to the tensor's
        sensitivity entry (``codebook_fit``: ``kmeans``, then ``gptq`` and / or ``refit``)."""
        from frugalml.models.codebook_fit import gptq_assign, refit_centroids

        steps = [(step, fit) for step, fit, on in (("gptq", gptq_assign, spec.gptq),
                                                   ("refit", refit_centroids, spec.refit_centroids)) if on]  # fmt: skip
        for module, x in inputs.items() if steps else ():
            name = f"{module}.weight"
            if name not in self.codes or self.codes[name].codec != "int4-kmeans":
                continue
            errors: dict[str, float] = {}
            for step, fit in steps:
                self.codes[name], before, after = fit(self.codes[name], state[name], x)
                errors.setdefault("kmeans", round(before, 6))
                errors[step] = round(after, 6)
            self.sensitivity.setdefault(name, {})["codebook_fit"] = errors

    @staticmethod
    def _pruned(
        encoder: Any, spec: CompressionSpec, texts: list[str] | None, source: EncoderSpec, objective: Any
    ) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
        """The encoder's model after :attr:`CompressionSpec.pruning` (a copy; the loaded encoder is shared) and
        the per-layer pruning report; the model itself when nothing is pruned.

        Raises:
            CompressionError: Fluctuation or Taylor pruning without (labelled) calibration texts.
        """
        max_tokens = source.max_tokens
        import copy

        prune = spec.pruning()
        if encoder.device.type != "cpu":  # compression and calibration run on the CPU, from a copy
            cpu = copy.deepcopy(encoder.model).cpu()
            encoder = replace_model(encoder, cpu)
        if not prune.active():
            return encoder.model, []

        # a copy: the loaded encoder is shared (process-wide), so no hook is ever put on it
        model = copy.deepcopy(encoder.model) if encoder.device.type == "cpu" else encoder.model
        inputs: dict[str, torch.Tensor] | None = None
        if prune.importance in ("fluctuation", "taylor") and not texts:
            raise CompressionError(
                f"{prune.importance} pruning scores channels on calibration texts: give calibration rows "
                "(dev_labelled) or compress.prune_importance l1 / l2"
            )
        if prune.importance == "taylor" and objective is None:
            raise CompressionError(
                "taylor pruning scores channels by the classifier's loss on labelled calibration rows: give "
                "calibration rows with their labels (dev_labelled), or compress.prune_importance fluctuation / l1 / l2"
            )
        if texts and prune.importance in ("fluctuation", "taylor"):
            from frugalml.models.calibration import record_inputs, record_taylor

            sample = texts[: spec.calibration_texts]
            inputs, _ = record_inputs(model, encoder.tokenizer, sample, max_tokens=max_tokens)  # (and the errors)
            if prune.importance == "taylor":
                names = [f"encoder.layer.{i}.{part}" for i in range(len(encoder_layers(model)))
                         for part in ("output.dense", "attention.output.dense")]  # fmt: skip
                inputs.update(record_taylor(model, encoder.tokenizer, sample, objective, max_tokens=max_tokens,
                                            pooling=source.pooling, names=names))  # fmt: skip
        return model, prune_encoder(model, prune, inputs)

    def nbytes(self) -> int:
        """Bytes of the compressed weights file."""
        return (self.directory / COMPRESSED_WEIGHTS).stat().st_size


class CompressedClassifier:
    """A compressed model of any kind: the base bundle computing with the decoded weights (and, for the encoder
    kinds, the compressed encoder), plus what is needed to save it in compressed form."""

    def __init__(
        self, base: Any, *, codes: dict[str, Encoded], spec: CompressionSpec, encoder_dir: Path | None = None,
        source: dict[str, Any] | None = None, holder: Any = None,
    ) -> None:  # fmt: skip
        """Wrap a rebuilt base bundle (see :func:`quantize` and :meth:`from_parts`)."""
        self.base, self.codes, self.spec, self.encoder_dir = base, codes, spec, encoder_dir
        self.source = dict(source or {})
        self._holder = holder  # keeps a temporary encoder folder alive until the model is saved
        self.module = base.module
        self.text_columns, self.labels, self.label_names = base.text_columns, base.labels, base.label_names
        self.kind = getattr(base, "kind", "ngram_bag")
        self.tasks = model_tasks(base)  # a multi-task model's extra heads, compressed like every other tensor

    @property
    def encoder(self) -> EncoderSpec | None:
        """The compressed encoder's spec (encoder kinds), or ``None``."""
        return getattr(self.base, "encoder", None)

    @property
    def store(self) -> Any:
        """The base bundle's embedding store (encoder kinds)."""
        return self.base.store

    @store.setter
    def store(self, value: Any) -> None:
        self.base.store = value

    def predict_proba(self, frame: pd.DataFrame, *, batch_size: int = 1024) -> np.ndarray:
        """(N, C) class probabilities, computed by the compressed model."""
        return self.base.predict_proba(frame, batch_size=batch_size)  # type: ignore[no-any-return]  # base bundle

    def to_cpu(self) -> CompressedClassifier:
        """Move to CPU (in place) and return self."""
        self.base.to_cpu()
        return self

    def metadata(self) -> dict[str, Any]:
        """The base bundle's metadata, the compression settings, every tensor's codec, the source model."""
        base = with_tasks(self.base.metadata(), self.base)
        if "encoder" in base:
            base["encoder"] = {**base["encoder"], "path": None}  # re-pointed at <model>/encoder on load
        return {
            "format": FORMAT,
            "base": base,
            "compression": self.spec.as_dict(),
            "codecs": {name: code.describe() for name, code in self.codes.items()},
            "encoder_dir": ENCODER_DIR if self.encoder_dir is not None else None,
            "source": self.source,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The stored parts of every compressed tensor, named ``<tensor>::<part>``."""
        return {f"{name}::{part}": value.contiguous() for name, code in self.codes.items()
                for part, value in code.parts.items()}  # fmt: skip

    def write_extra(self, directory: Path) -> None:
        """Copy the compressed encoder into ``directory/encoder`` (encoder kinds)."""
        if self.encoder_dir is not None:
            shutil.copytree(self.encoder_dir, directory / ENCODER_DIR, dirs_exist_ok=True)

    def nbytes(self) -> int:
        """Bytes of all compressed weights: the model's tensors and, for the encoder kinds, the encoder file."""
        own = sum(code.nbytes() for code in self.codes.values())
        encoder = (self.encoder_dir / COMPRESSED_WEIGHTS).stat().st_size if self.encoder_dir is not None else 0
        return own + encoder

    @classmethod
    def from_parts(
        cls, metadata: dict[str, Any], tensors: dict[str, torch.Tensor], *, directory: Path | None,
        load_base: Callable[[dict[str, Any], dict[str, torch.Tensor]], Any],
    ) -> CompressedClassifier:  # fmt: skip
        """Rebuild a saved compressed model.

        Raises:
            CompressionError: When a tensor's parts are missing, or the encoder folder is.
        """
        codes: dict[str, Encoded] = {}
        for name, info in metadata["codecs"].items():
            parts = {key.split("::", 1)[1]: value for key, value in tensors.items() if key.split("::", 1)[0] == name}
            if not parts:
                raise CompressionError(f"compressed model lacks the stored parts of {name}")
            codes[name] = Encoded(info["codec"], list(info["shape"]), parts, dict(info["meta"]))
        base_meta = dict(metadata["base"])
        encoder_dir = None
        if metadata.get("encoder_dir"):
            if directory is None or not (directory / metadata["encoder_dir"]).is_dir():
                raise CompressionError(f"compressed model lacks its encoder folder {metadata['encoder_dir']!r}")
            encoder_dir = directory / metadata["encoder_dir"]
            base_meta["encoder"] = {**base_meta["encoder"], "path": str(encoder_dir)}
        base = load_base(base_meta, decode_all(codes))
        spec = CompressionSpec(**{**metadata["compression"], "keep_int8": tuple(metadata["compression"]["keep_int8"])})
        return cls(base, codes=codes, spec=spec, encoder_dir=encoder_dir, source=metadata.get("source"))

    def __repr__(self) -> str:
        return f"CompressedClassifier({self.kind}, {self.spec.precision}, {self.nbytes()} bytes)"


def fp32_nbytes(model: Any) -> int:
    """Bytes of a model's weights uncompressed: its tensors as float32 and, for the encoder kinds, the encoder's
    weights file (what the uncompressed model needs beside it). A fine-tuned encoder counts the base file once: a
    LoRA model's adapters add to it; a fully fine-tuned model's encoder tensors are not counted again (its saved
    folder holds them and it loads the base file as well, about twice these bytes on disk; this is the size of the
    one encoder it computes with)."""
    full = getattr(model, "fine_tuning", "frozen") == "full"  # its encoder tensors replace the base file's
    own = sum(t.numel() * (4 if t.is_floating_point() else t.element_size()) for name, t in model.tensors().items()
              if not (full and name.startswith("encoder.")))  # fmt: skip
    spec = getattr(model, "encoder", None) or getattr(model, "base_encoder", None)
    return own + (weights_file(resolve_encoder_dir(spec.path)).stat().st_size if spec is not None else 0)


def check_model(model: Any, spec: CompressionSpec) -> None:
    """Refuse what ``spec`` asks of a model that cannot give it.

    Raises:
        CompressionError: A compressed model, or structured pruning of a model without an encoder.
    """
    if isinstance(model, CompressedClassifier):
        raise CompressionError("the model is compressed already; compress the uncompressed text_classifier")
    fine_tuned = check_mergeable(
        model, "compressing", "train with adapter.type: lora or fine_tuning: full, or set compress.enabled: false"
    )
    if fine_tuned and not spec.encoder:  # the merged encoder exists only while it is compressed
        raise CompressionError(
            f"a fine-tuned encoder classifier (fine_tuning: {model.fine_tuning}) is compressed with its merged "
            "encoder, which the artifact must carry: set compress.encoder: true"
        )
    has_encoder = fine_tuned or getattr(model, "encoder", None) is not None
    if spec.static() and (not has_encoder or not spec.encoder):
        raise CompressionError(
            "static INT8 activations apply to an encoder's Linear layers: the model has none (the "
            f"{getattr(model, 'kind', 'ngram_bag')} kind's int8 weights are decoded to float32), or compress.encoder "
            "is off; set compress.activations: dynamic"
        )
    if spec.prune_hidden > 0:
        from frugalml.models.head_pruning import mlp_heads

        if not mlp_heads(model.module.head if fine_tuned else model.module):
            raise CompressionError(
                "compress.prune_hidden removes hidden units of an MLP head: this model's head is linear "
                "(train.model.hidden_dim 0), or its kind has none; set prune_hidden 0, or train with a hidden layer"
            )
    if spec.pruning().active() and (not has_encoder or not spec.encoder):
        raise CompressionError(
            "structured pruning removes channels and heads of an encoder: the model has none to prune (the "
            f"{getattr(model, 'kind', 'ngram_bag')} kind), or compress.encoder is off; set the pruning ratios to 0"
        )


def quantize(
    model: Any, *, precision: str = "int8", calibration: pd.DataFrame | None = None, per_channel: bool = True,
    label_column: str | None = None, load_base: Callable[[dict[str, Any], dict[str, torch.Tensor]], Any],
    frozen: Compressible | None = None, **settings: Any,
) -> tuple[CompressedClassifier, dict[str, Any]]:  # fmt: skip
    """Compress ``model`` (any kind) to ``precision``; check it on ``calibration`` rows.

    Args:
        model: A trained frugalml classifier.
        precision: One of :data:`~frugalml.models.codecs.PRECISIONS`.
        calibration: Labelled dev rows (never test rows) to measure accuracy and agreement with ``model``.
        per_channel: One scale / codebook group per output channel (else per tensor, int8/fp8).
        label_column: The calibration rows' label column (their labels are class values of ``model.labels``).
        load_base: Rebuilds a base bundle from (metadata, tensors) (:func:`frugalml.models.zoo.load_classifier`).
        frozen: :func:`compressible`'s value for ``model``, when the caller holds it (else built here).
            One built for another model is refused.
        **settings: Other :class:`CompressionSpec` fields.

    Returns:
        The compressed model and its report (sizes, per-codec tensor counts, calibration figures, seconds).

    Raises:
        CompressionError: On a bad precision, observer or calibration set (before any work).
    """
    if precision not in PRECISIONS:
        check_precision(precision)
    spec = CompressionSpec(precision=precision, per_channel=per_channel, **settings)
    check_model(model, spec)
    check_calibration(calibration, list(model.text_columns), label_column)
    if spec.static() and calibration is None:
        raise CompressionError(_STATIC_NEEDS_CALIBRATION)
    if frozen is not None:
        if frozen.source is not model:
            raise CompressionError("frozen was built for another model: pass compressible(model)'s own value")
        return _quantize(frozen.model, model, spec, calibration, label_column, load_base=load_base)
    with compressible(model) as equivalent:
        return _quantize(equivalent.model, model, spec, calibration, label_column, load_base=load_base)


@dataclass(frozen=True)
class Compressible:
    """What compression reads of ``source``: ``model``, the frozen-encoder classifier it equals."""

    source: Any
    model: Any


@contextlib.contextmanager
def compressible(model: Any) -> Iterator[Compressible]:
    """What compression reads of ``model``: the model itself when its encoder is frozen (or it has none); else the
    frozen-encoder classifier it equals (:func:`frugalml.models.fine_tune.frozen_equivalent`: LoRA merged, or the
    fully trained encoder), written to a temporary encoder directory for the length of the block. The compressed
    model carries its own compressed copy, as for the frozen kind. ``quantize(model, ..., frozen=...)`` takes it, so
    compressing one fine-tuned model several ways merges and writes it once."""
    if getattr(model, "fine_tuning", "frozen") == "frozen":
        yield Compressible(model, model)
        return
    from frugalml.models.fine_tune import frozen_equivalent

    with tempfile.TemporaryDirectory(prefix="frugalml-merged-") as folder:
        frozen = frozen_equivalent(model, Path(folder))
        try:
            yield Compressible(model, frozen)
        finally:
            forget_encoder(frozen.encoder)


def _quantize(
    model: Any, original: Any, spec: CompressionSpec, calibration: pd.DataFrame | None, label_column: str | None, *,
    load_base: Callable[[dict[str, Any], dict[str, torch.Tensor]], Any],
) -> tuple[CompressedClassifier, dict[str, Any]]:  # fmt: skip
    """:func:`quantize` on a checked request: ``model`` compressed, its figures against ``original`` (itself, or
    the fine-tuned model ``model`` is the frozen equivalent of)."""
    started = time.perf_counter()
    model, head_pruning = _pruned_head(model, spec, calibration, label_column, load_base)
    codes = compress_tensors(model.tensors(), spec)
    base_meta = with_tasks(model.metadata(), model)
    holder = None
    encoder_spec: EncoderSpec | None = getattr(model, "encoder", None)
    if encoder_spec is not None and spec.encoder:
        texts = frame_texts(calibration, list(model.text_columns)) if calibration is not None else None
        objective = None
        if spec.pruning().active() and spec.prune_importance == "taylor" and calibration is not None and label_column:
            objective = taylor_objective(model, calibration.iloc[: spec.calibration_texts], label_column)
        holder = CompressedEncoder(encoder_spec, spec, texts, objective)
        base_meta["encoder"] = holder.spec.as_dict()
    base = load_base(base_meta, decode_all(codes))
    if holder is not None and hasattr(model, "store"):
        base.store = model.store
    source = {
        "format": base_meta["format"],
        "kind": getattr(model, "kind", "ngram_bag"),
        "fp32_bytes": fp32_nbytes(original),
    }
    if original is not model and getattr(original, "fine_tuning", "frozen") != "frozen":
        source["fine_tuning"] = original.fine_tuning  # merged into the encoder that was compressed
    compressed = CompressedClassifier(base, codes=codes, spec=spec, encoder_dir=holder.directory if holder else None,
                                      source=source, holder=holder)  # fmt: skip
    report: dict[str, Any] = {
        "precision": spec.precision,
        "spec": spec.as_dict(),
        "fp32_bytes": source["fp32_bytes"],
        "bytes": compressed.nbytes(),
        "seconds": round(time.perf_counter() - started, 3),
        "tensors": _codec_counts(codes, holder.codes if holder else {}),
    }
    if holder is not None:
        report.update(_encoder_report(holder))
    if head_pruning is not None:
        report["head_pruning"] = head_pruning
    report["size_ratio"] = round(report["fp32_bytes"] / max(report["bytes"], 1), 3)
    if calibration is not None:
        report["calibration"] = agreement(original, compressed, calibration, label_column)
    return compressed, report


def _pruned_head(
    model: Any, spec: CompressionSpec, calibration: pd.DataFrame | None, label_column: str | None, load_base: Any
) -> tuple[Any, dict[str, Any] | None]:
    """``model`` with ``spec.prune_hidden`` of its MLP heads' hidden units removed (itself when 0), and the report;
    under Taylor pruning every calibration row's label is checked first (both Taylor paths read them)."""
    taylor = spec.prune_importance == "taylor" and (spec.prune_hidden > 0 or spec.pruning().active())
    if taylor and calibration is not None and label_column:
        check_calibration_labels(model, calibration, label_column)
    if spec.prune_hidden <= 0:
        return model, None
    from frugalml.models.head_pruning import prune_hidden_units

    return prune_hidden_units(model, share=spec.prune_hidden, importance=spec.prune_importance,
                              calibration=calibration, label_column=label_column, load_base=load_base)  # fmt: skip


def _encoder_report(holder: CompressedEncoder) -> dict[str, Any]:
    """The compressed encoder's part of the report: pruning, sensitivity and which layers compute how."""
    report: dict[str, Any] = {}
    if holder.pruning:
        report["encoder_pruning"] = holder.pruning
        report["encoder_parameters"] = sum(int(np.prod(c.shape)) for c in holder.codes.values())
    if holder.sensitivity:
        report["encoder_sensitivity"] = holder.sensitivity
        report["encoder_int8_tensors"] = sorted(n for n, c in holder.codes.items() if c.codec == "int8")
        report["encoder_fp32_compute"] = sorted(n for n, c in holder.codes.items() if c.meta.get("dynamic") is False)
        report["encoder_static_int8"] = sorted(n for n, c in holder.codes.items() if "input_scale" in c.meta)
    return report


def check_calibration_labels(model: Any, rows: pd.DataFrame, label_column: str) -> None:
    """Refuse calibration rows whose label is not one of the model's (Taylor scores need every row's loss).

    Raises:
        CompressionError: Naming the labels.
    """
    known = set(model.labels)
    unknown = sorted({str(v) for v in rows[label_column] if v not in known})
    if unknown:
        raise CompressionError(
            f"calibration labels {unknown[:5]} (column {label_column!r}) are not among the model's labels "
            f"{model.labels}: taylor pruning needs each calibration row's loss"
        )


def taylor_objective(model: Any, rows: pd.DataFrame, label_column: str) -> Any:
    """``(embeddings, part) -> summed loss`` of ``model``'s heads (with its bag features for ``hybrid``) on
    ``rows[part]``, from the rows' pooled encoder embeddings (Taylor pruning's loss): the main cross-entropy plus,
    for a multi-task model, each task's (times its weight; rows without a task label add nothing). The encoder is
    shared by every head, so every head's loss scores its channels.

    Raises:
        CompressionError: A calibration label outside the model's labels.
    """
    check_calibration_labels(model, rows, label_column)
    index = {label: k for k, label in enumerate(model.labels)}
    y = torch.tensor([index[v] for v in rows[label_column]], dtype=torch.long)
    tasks = model_tasks(model)
    task_y = [torch.from_numpy(task_targets(rows, task, where="the calibration rows")) for task in tasks]
    bag = model.bag_weights(rows) if hasattr(model, "bag_weights") else None
    module = model.module.cpu().eval()
    classes = len(model.labels)

    def loss(embeddings: torch.Tensor, part: slice) -> torch.Tensor:
        inputs: tuple[torch.Tensor, ...] = csr_to_bags(bag[part], "cpu") if bag is not None else ()
        with task_output(module, ALL_OUTPUTS):
            logits = module(*inputs, embeddings)
        value = torch.nn.functional.cross_entropy(logits[:, :classes], y[part], reduction="sum")
        start = classes
        for task, labels in zip(tasks, task_y, strict=True):
            block = logits[:, start : start + len(task.labels)]
            value = value + task.weight * torch.nn.functional.cross_entropy(block, labels[part], ignore_index=-1,
                                                                            reduction="sum")  # fmt: skip
            start += len(task.labels)
        return value

    return loss


def _codec_counts(*groups: dict[str, Encoded]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for codes in groups:
        for code in codes.values():
            entry = counts.setdefault(code.codec, {"tensors": 0, "weights": 0, "bytes": 0})
            numel = 1
            for size in code.shape:
                numel *= size
            entry["tensors"] += 1
            entry["weights"] += numel
            entry["bytes"] += code.nbytes()
    return counts


def agreement(reference: Any, compressed: Any, rows: pd.DataFrame, label_column: str | None) -> dict[str, Any]:
    """How the compressed model compares with the reference on ``rows``: both accuracies (with labels), the
    share of identical predictions, the largest probability change."""
    p_ref = reference.predict_proba(rows)
    p_new = compressed.predict_proba(rows)
    out: dict[str, Any] = {
        "rows": len(rows),
        "agreement": float((p_ref.argmax(1) == p_new.argmax(1)).mean()),
        "max_probability_change": float(np.abs(p_ref - p_new).max()) if len(rows) else 0.0,
    }
    if label_column is not None:
        index = {label: k for k, label in enumerate(reference.labels)}
        truth = np.array([index.get(v, -1) for v in rows[label_column].tolist()])
        out["accuracy_reference"] = float((p_ref.argmax(1) == truth).mean())
        out["accuracy"] = float((p_new.argmax(1) == truth).mean())
    return out


def latency(model: Any, rows: pd.DataFrame, *, batch: int, repeats: int = 3) -> float:
    """Median seconds to predict ``batch`` rows (cycled from ``rows``), end to end from text, on this machine.

    For the encoder kinds the embedding cache is bypassed, so the encoder's own cost is measured.
    """
    frame = rows.iloc[np.arange(batch) % len(rows)].reset_index(drop=True)
    store = getattr(model, "store", None)
    times = []
    for _ in range(repeats):
        if store is not None:
            from frugalml.models.embedding_store import EmbeddingStore

            model.store = EmbeddingStore(None)
        started = time.perf_counter()
        model.predict_proba(frame, batch_size=max(batch, 1))
        times.append(time.perf_counter() - started)
    if store is not None:
        model.store = store
    return float(np.median(times))


def load_compressed_encoder_codes(directory: Path) -> dict[str, Encoded]:
    """The codes of a saved compressed encoder (for inspection and tests)."""
    return deserialise((directory / COMPRESSED_WEIGHTS).read_bytes(), source=str(directory / COMPRESSED_WEIGHTS))


__all__ = ["FORMAT", "CompressedClassifier", "CompressionSpec", "plan", "quantize"]
