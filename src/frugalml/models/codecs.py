"""Tensor codecs: how one weight tensor is stored compressed, and read back.

Notation: a weight W of shape (R, K) (R output channels; an embedding table is (rows, width)), b bits per
weight. Every codec stores plain tensors (safetensors, no pickles) and decodes to float32:

- ``fp32`` - as is (biases, LayerNorms and tensors below ``min_numel``).
- ``fp16`` / ``bf16`` - a cast (2 bytes per weight).
- ``fp8`` - ``float8_e4m3fn`` with a per-channel fp32 scale (1 byte); GPU only (an FP8 matmul needs
  compute capability 8.9+), refused on a CPU.
- ``int8`` - symmetric, per output channel (or per tensor), scale chosen by an observer: ``minmax``
  (max |w|), ``percentile`` (the 99.99th percentile of |w|, clipping outliers) or ``mse`` (the clipping level
  among 20 that minimises the channel's squared error).
- ``int4-kmeans`` - per group of output channels (about ``group_weights`` weights each) a codebook of 16
  fp16 centroids fitted by k-means (Lloyd, quantile start), indices packed two per byte: ~4.1 bits per weight.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from frugalml.errors import CompressionError

PRECISIONS = ("fp16", "bf16", "fp8", "int8", "int4-kmeans")
CODECS = ("raw", "fp32", *PRECISIONS)  # raw: a non-float tensor (ids, counters), stored as is
OBSERVERS = ("minmax", "percentile", "mse")
ACTIVATIONS = ("dynamic", "static")  # how an encoder's INT8 Linear layers quantise their inputs
CENTROIDS = 16
_PERCENTILE = 0.9999


@dataclass
class Encoded:
    """One tensor, compressed: its codec, original shape, codec settings and the stored parts."""

    codec: str
    shape: list[int]
    parts: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Bytes of the stored parts (what the tensor costs on disk, before the file's small header)."""
        return sum(part.numel() * part.element_size() for part in self.parts.values())

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (everything but the parts)."""
        return {"codec": self.codec, "shape": list(self.shape), "meta": dict(self.meta)}


def check_precision(precision: str) -> None:
    """Refuse an unknown precision name, or FP8 on a machine without an FP8-capable GPU.

    Raises:
        CompressionError: Naming the precision and what is supported.
    """
    if precision not in PRECISIONS:
        raise CompressionError(f"unsupported precision {precision!r}; choose one of {list(PRECISIONS)}")
    if precision == "fp8" and not fp8_available():
        raise CompressionError(
            "precision 'fp8' needs a CUDA GPU with FP8 support (compute capability 8.9 or newer, e.g. an H100); "
            "none is available here - use 'int8' (CPU) or 'fp16'"
        )


def fp8_available() -> bool:
    """Whether this machine has an FP8-capable CUDA GPU."""
    return bool(torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9))


def encode(
    tensor: torch.Tensor, codec: str, *, observer: str = "minmax", per_channel: bool = True,
    group_weights: int = 4096, iterations: int = 20, name: str = "tensor", importance: torch.Tensor | None = None,
) -> Encoded:  # fmt: skip
    """Compress one tensor.

    Args:
        tensor: The weight (any float dtype; 2-D for the quantising codecs, a 1-D tensor is one channel).
        codec: One of :data:`CODECS`.
        observer: How ``int8`` / ``fp8`` pick their scale (:data:`OBSERVERS`).
        per_channel: One scale per output channel (else one per tensor).
        group_weights: ``int4-kmeans``: about this many weights share a codebook (whole output channels).
        iterations: ``int4-kmeans``: Lloyd iterations.
        name: The tensor's name, for errors.
        importance: ``int4-kmeans``: a non-negative weight per entry (broadcastable to the tensor), so the
            centroids fit the weights that matter most (calibration: the squared input activations of a Linear's
            columns, the token counts of an embedding table's rows); ``None``: all equal.

    Returns:
        The encoded tensor.

    Raises:
        CompressionError: On an unknown codec or observer, or a tensor too small for 16 centroids.
    """
    if codec not in CODECS:
        raise CompressionError(f"unsupported codec {codec!r} for {name}; choose one of {list(CODECS)}")
    if observer not in OBSERVERS:
        raise CompressionError(f"unknown observer {observer!r}; choose one of {list(OBSERVERS)}")
    if codec == "raw" or not tensor.is_floating_point():
        return Encoded("raw", list(tensor.shape), {"w": tensor.detach().cpu().contiguous()})
    weight = tensor.detach().to("cpu", torch.float32)
    shape = list(weight.shape)
    if codec == "fp32":
        return Encoded(codec, shape, {"w": weight.contiguous()})
    if codec in ("fp16", "bf16"):
        return Encoded(codec, shape, {"w": weight.to(torch.float16 if codec == "fp16" else torch.bfloat16)})
    matrix = weight.reshape(shape[0], -1) if weight.dim() > 1 else weight.reshape(1, -1)
    if codec in ("int8", "fp8"):
        return _encode_scaled(matrix, shape, codec, observer=observer, per_channel=per_channel)
    weights = None
    if importance is not None:
        weights = torch.broadcast_to(importance.detach().to("cpu", torch.float32), weight.shape).reshape(matrix.shape)
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise CompressionError(f"the importance of {name} must be finite and non-negative")
    return _encode_kmeans(matrix, shape, group_weights=group_weights, iterations=iterations, name=name,
                          importance=weights)  # fmt: skip


def _encode_scaled(matrix: torch.Tensor, shape: list[int], codec: str, *, observer: str, per_channel: bool) -> Encoded:
    """int8 / fp8: a scale per group of output channels (one channel when it has >= 64 weights)."""
    if codec == "fp8":
        check_precision("fp8")
    qmax = 127.0 if codec == "int8" else 448.0  # e4m3's largest normal
    rows, width = matrix.shape
    per_group = _groups(rows, width, 64) if per_channel else rows  # whole channels, >= 64 weights per scale
    n_groups = -(-rows // per_group)
    padded = torch.zeros(n_groups * per_group, width)
    padded[:rows] = matrix
    scale = _scale(padded.reshape(n_groups, -1), qmax, observer=observer)  # (G, 1)
    row_scale = scale.repeat_interleave(per_group, dim=0)[:rows]  # (R, 1)
    if codec == "int8":
        q = torch.clamp(torch.round(matrix / row_scale), -127, 127).to(torch.int8)
    else:
        q = (matrix / row_scale).to(torch.float8_e4m3fn)
    return Encoded(codec, shape, {"q": q, "scale": scale.squeeze(1)},
                   {"observer": observer, "rows_per_group": per_group})  # fmt: skip


def decode(encoded: Encoded) -> torch.Tensor:
    """The float32 tensor an encoding stands for (the weights the compressed model computes with).

    Raises:
        CompressionError: On an unknown codec.
    """
    codec, parts, shape = encoded.codec, encoded.parts, encoded.shape
    if codec == "raw":
        return parts["w"]
    if codec in ("fp32", "fp16", "bf16"):
        return parts["w"].to(torch.float32).reshape(shape)
    if codec in ("int8", "fp8"):
        q = parts["q"].to(torch.float32)
        rows = q.shape[0]
        group_of_row = torch.arange(rows) // int(encoded.meta.get("rows_per_group", 1))
        return (q * parts["scale"].to(torch.float32)[group_of_row][:, None]).reshape(shape)
    if codec == "int4-kmeans":
        return _decode_kmeans(encoded)
    raise CompressionError(f"unknown codec {codec!r} in a compressed artifact")


def _scale(groups: torch.Tensor, qmax: float, *, observer: str) -> torch.Tensor:
    """(G, 1) positive scales so that each row of ``groups`` / scale fits in [-qmax, qmax] (up to clipping)."""
    values = groups.abs()
    if observer == "minmax":
        level = values.amax(dim=1, keepdim=True)
    elif observer == "percentile":
        k = max(1, min(values.shape[1], round(_PERCENTILE * values.shape[1])))
        level = values.kthvalue(k, dim=1, keepdim=True).values
    else:  # mse: the clipping level (a fraction of max |w|) with the least squared error, per group
        top = values.amax(dim=1, keepdim=True)
        best, level = None, top
        for fraction in torch.linspace(0.5, 1.0, 20).tolist():
            clip = (top * fraction).clamp(min=1e-12)
            scale = clip / qmax
            error = ((torch.clamp(torch.round(groups / scale), -qmax, qmax) * scale - groups) ** 2).sum(1, keepdim=True)
            if best is None:
                best, level = error, clip
            else:
                better = error < best
                best, level = torch.where(better, error, best), torch.where(better, clip, level)
    return (level / qmax).clamp(min=1e-12)


def _groups(rows: int, width: int, group_weights: int) -> int:
    """Output channels per codebook: whole channels, about ``group_weights`` weights, never under 16 weights."""
    per_group = max(1, group_weights // max(width, 1))
    while per_group * width < CENTROIDS and per_group < rows:
        per_group += 1
    return min(per_group, rows)


def _encode_kmeans(
    matrix: torch.Tensor, shape: list[int], *, group_weights: int, iterations: int, name: str,
    importance: torch.Tensor | None = None,
) -> Encoded:  # fmt: skip
    rows, width = matrix.shape
    if rows * width < CENTROIDS:
        raise CompressionError(
            f"{name} has {rows * width} weights, too few to cluster into {CENTROIDS} centroids "
            "(int4-kmeans); keep it at a wider precision (compress.min_numel, or list it in compress.keep)"
        )
    per_group = _groups(rows, width, group_weights)
    n_groups = -(-rows // per_group)
    if n_groups > 1 and (rows - (n_groups - 1) * per_group) * width < CENTROIDS:
        n_groups -= 1  # a last group too small for 16 centroids joins the one before it
    flat = matrix.reshape(-1)
    weights = importance.reshape(-1) if importance is not None else torch.ones_like(flat)
    bounds = [g * per_group * width for g in range(n_groups)] + [flat.numel()]
    indices = torch.empty(flat.numel(), dtype=torch.uint8)
    codebooks = torch.empty(n_groups, CENTROIDS, dtype=torch.float16)
    size = per_group * width
    full = n_groups - 1 if bounds[-1] - bounds[-2] != size else n_groups
    if full:  # equal groups together, vectorised
        codes, books = _kmeans(flat[: full * size].reshape(full, size), iterations,
                               weights[: full * size].reshape(full, size))  # fmt: skip
        indices[: full * size], codebooks[:full] = codes.reshape(-1), books
    if full < n_groups:
        codes, books = _kmeans(flat[bounds[-2] :].reshape(1, -1), iterations, weights[bounds[-2] :].reshape(1, -1))
        indices[bounds[-2] :], codebooks[full:] = codes.reshape(-1), books
    packed = pack(indices)
    return Encoded("int4-kmeans", shape, {"idx": packed, "codebook": codebooks},
                   {"rows_per_group": per_group, "groups": n_groups})  # fmt: skip


def _kmeans(values: torch.Tensor, iterations: int, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted 1-D k-means per row of ``values`` (G, n) -> (G, n) uint8 codes, (G, 16) fp16 centroids."""
    quantiles = (torch.arange(CENTROIDS, dtype=torch.float32) + 0.5) / CENTROIDS
    sorted_values = values.sort(dim=1).values
    positions = (quantiles * (values.shape[1] - 1)).round().long()
    centroids = sorted_values[:, positions]  # (G, 16), sorted
    for _ in range(iterations):
        codes = _assign(values, centroids)
        sums = torch.zeros_like(centroids).scatter_add_(1, codes, values * weights)
        counts = torch.zeros_like(centroids).scatter_add_(1, codes, weights)
        updated = torch.where(counts > 0, sums / counts.clamp(min=1e-30), centroids)
        centroids = updated.sort(dim=1).values
    centroids = centroids.to(torch.float16).to(torch.float32)  # assign against the centroids that are stored
    return _assign(values, centroids).to(torch.uint8), centroids.to(torch.float16)


def _assign(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Nearest centroid of each value, centroids sorted per row: search the midpoints."""
    midpoints = (centroids[:, 1:] + centroids[:, :-1]) / 2  # (G, 15)
    return torch.searchsorted(midpoints.contiguous(), values.contiguous())


def pack(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes < 16 -> two per byte (low nibble first)."""
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_zeros(1)])
    pairs = codes.reshape(-1, 2)
    return (pairs[:, 0] | (pairs[:, 1] << 4)).contiguous()


def unpack(packed: torch.Tensor, count: int) -> torch.Tensor:
    """Inverse of :func:`pack`: the first ``count`` 4-bit codes as int64."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=1).reshape(-1)[:count].long()


def _decode_kmeans(encoded: Encoded) -> torch.Tensor:
    shape = encoded.shape
    count = 1
    for size in shape:
        count *= size
    rows = shape[0] if len(shape) > 1 else 1
    width = count // max(rows, 1)
    codes = unpack(encoded.parts["idx"], count).reshape(rows, width)
    per_group, n_groups = int(encoded.meta["rows_per_group"]), int(encoded.meta["groups"])
    group_of_row = (torch.arange(rows) // per_group).clamp(max=n_groups - 1)  # (R,)
    books = encoded.parts["codebook"].to(torch.float32)[group_of_row]  # (R, 16)
    return books.gather(1, codes).reshape(shape)


CODECS_KEY = "frugalml.codecs"


def serialise(codes: dict[str, Encoded]) -> bytes:
    """Encoded tensors as one safetensors file's bytes: parts named ``<tensor>::<part>``, codecs in its header
    (so the file's sha256 covers the codec settings as well as the numbers)."""
    import json

    from safetensors.torch import save

    tensors = {
        f"{name}::{part}": value.contiguous() for name, code in codes.items() for part, value in code.parts.items()
    }
    header = {CODECS_KEY: json.dumps({name: code.describe() for name, code in codes.items()}, sort_keys=True)}
    return bytes(save(tensors, metadata=header))


def deserialise(data: bytes, *, source: str = "compressed weights") -> dict[str, Encoded]:
    """Inverse of :func:`serialise`.

    Raises:
        CompressionError: When the bytes are not a frugalml compressed-weights file.
    """
    import json

    from safetensors.torch import load

    try:
        length = int.from_bytes(data[:8], "little")  # safetensors: u64 header length, then the JSON header
        header = json.loads(data[8 : 8 + length]).get("__metadata__") or {}
        described = json.loads(header[CODECS_KEY])
        tensors = load(data)
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise CompressionError(f"{source} is not a frugalml compressed-weights file ({error})") from error
    codes: dict[str, Encoded] = {}
    for name, info in described.items():
        parts = {key.split("::", 1)[1]: value for key, value in tensors.items() if key.split("::", 1)[0] == name}
        codes[name] = Encoded(info["codec"], list(info["shape"]), parts, dict(info["meta"]))
    return codes


def _full_range_linear() -> type:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    class FullRangeDynamicLinear(DynamicLinear):  # type: ignore[misc]  # torch.ao has no stubs
        """torch's dynamic INT8 Linear with 8-bit activations: its default quantises activations to 7 bits
        (``reduce_range``, a guard against int16 saturation on older x86), which doubles the output error
        measured on MiniLM's layers (0.13 -> 0.07 relative, layer 1's FFN output); calibration checks each layer."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=False).to(
                x.dtype
            )

        def _get_name(self) -> str:
            return "FullRangeDynamicQuantizedLinear"

    return FullRangeDynamicLinear


_DYNAMIC: dict[str, type] = {}


def dynamic_linear_class() -> type:
    """The INT8 Linear class the compressed encoders run (a subclass of torch's dynamic quantised Linear)."""
    if "cls" not in _DYNAMIC:
        _DYNAMIC["cls"] = _full_range_linear()
    return _DYNAMIC["cls"]


def int8_linear(code: Encoded, bias: torch.Tensor | None) -> torch.nn.Module:
    """A dynamically quantised INT8 ``Linear`` (int8 weights, activations quantised per batch to 8 bits; CPU:
    fbgemm/x86) computing with exactly the stored int8 weights and per-channel scales.

    Raises:
        CompressionError: When ``code`` is not an int8 2-D weight.
    """
    import warnings

    if code.codec != "int8" or len(code.shape) != 2 or code.meta.get("rows_per_group", 1) != 1:
        raise CompressionError(f"an int8 Linear needs a 2-D int8 weight, not {code.codec} {code.shape}")
    out_features, in_features = code.shape
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        weight = torch._make_per_channel_quantized_tensor(  # noqa: SLF001  # the public path re-quantises
            code.parts["q"], code.parts["scale"].to(torch.float64), torch.zeros(out_features, dtype=torch.long), 0
        )
        layer = dynamic_linear_class()(in_features, out_features, bias_=bias is not None, dtype=torch.qint8)
        layer.set_weight_bias(weight, None if bias is None else bias.detach().float())
    return layer


def observe_range(
    values: torch.Tensor, observer: str, *, max_values: int = 1 << 20, seed: int = 0
) -> tuple[float, float]:
    """The range [lo, hi] (always holding 0) that a static INT8 activation quantiser maps onto 0..255.

    Args:
        values: Calibration activations of one layer (any shape).
        observer: ``minmax`` (the extremes seen), ``percentile`` (the 0.01th and 99.99th percentiles, clipping
            outliers) or ``mse`` (the shrink of the min-max range, among 20, with the least squared error).
        max_values: ``percentile`` / ``mse`` read a fixed-seed sample of at most this many values.
        seed: The sample's seed.

    Raises:
        CompressionError: On an unknown observer, or no finite values.
    """
    if observer not in OBSERVERS:
        raise CompressionError(f"unknown observer {observer!r}; choose one of {list(OBSERVERS)}")
    flat = values.detach().reshape(-1).float()
    if flat.numel() == 0 or not torch.isfinite(flat).all():
        raise CompressionError("static INT8 calibration needs finite activations; the calibration pass gave none")
    lo, hi = float(flat.min().clamp(max=0)), float(flat.max().clamp(min=0))
    if observer == "minmax" or hi - lo <= 0:
        return lo, max(hi, lo + 1e-8)
    if flat.numel() > max_values:
        flat = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))[:max_values]]
    if observer == "percentile":
        ordered = flat.sort().values
        low = ordered[int((1 - _PERCENTILE) * (ordered.numel() - 1))]
        high = ordered[int(round(_PERCENTILE * (ordered.numel() - 1)))]
        return float(low.clamp(max=0)), max(float(high.clamp(min=0)), float(low.clamp(max=0)) + 1e-8)
    best, choice = None, (lo, hi)
    for fraction in torch.linspace(0.3, 1.0, 20).tolist():
        low, high = lo * fraction, hi * fraction
        scale, zero = _affine(low, high)
        error = float(((torch.clamp(torch.round(flat / scale) + zero, 0, 255) - zero) * scale - flat).pow(2).sum())
        if best is None or error < best:
            best, choice = error, (low, high)
    return choice


def _affine(lo: float, hi: float) -> tuple[float, int]:
    """uint8 affine scale and zero point of the range [lo, hi] (lo <= 0 <= hi)."""
    scale = max((hi - lo) / 255.0, 1e-12)
    return scale, int(min(255, max(0, round(-lo / scale))))


def static_input_meta(values: torch.Tensor, observer: str) -> dict[str, Any]:
    """The settings of a static INT8 Linear's input quantiser, as stored in its weight's codec meta."""
    lo, hi = observe_range(values, observer)
    scale, zero = _affine(lo, hi)
    return {"input_scale": scale, "input_zero_point": zero, "input_observer": observer}


@functools.cache
def onednn_int8_available() -> bool:
    """Whether oneDNN's quantised Linear (uint8 inputs, int8 weights, float32 out) runs on this torch build and
    CPU: probed once, on a 16 x 16 layer."""
    try:
        packed = torch.ops.onednn.qlinear_prepack(torch.ones(16, 16, dtype=torch.int8), None)
        torch.ops.onednn.qlinear_pointwise(torch.zeros(1, 16, dtype=torch.uint8), 1.0, 0, packed, torch.ones(16),
                                           torch.zeros(16, dtype=torch.int64), None, 1.0, 0, torch.float32, "none",
                                           [], "")  # fmt: skip
    except (RuntimeError, AttributeError, NotImplementedError) as error:
        # the build lacks the op (AttributeError), or the op has no kernel for this CPU (RuntimeError,
        # NotImplementedError): a supported configuration, not an error. StaticInt8Linear then takes its float32
        # path, which multiplies the same quantised numbers (tested with the op made to fail)
        logging.getLogger(__name__).warning(
            "oneDNN's quantised Linear does not run here (%s: %s); static INT8 layers compute the same quantised "
            "numbers in float32 (same results, no integer speed-up)",
            type(error).__name__,
            str(error)[:200],
        )
        return False
    return True


class StaticInt8Linear(torch.nn.Module):
    """An INT8 Linear with static activation quantisation: the input is mapped to uint8 with a scale and zero
    point fixed at calibration (no per-batch range pass), multiplied with the per-channel int8 weight in integer
    arithmetic (oneDNN, x86), and the int32 sums rescaled to float32. Where :func:`onednn_int8_available` is
    false, the same quantised numbers are multiplied in float32."""

    def __init__(self, code: Encoded, bias: torch.Tensor | None) -> None:
        """Build from an int8 weight whose meta has the input quantiser (:func:`static_input_meta`).

        Raises:
            CompressionError: When the stored input quantiser is not a positive finite scale and a zero point in
                0..255 (a hand-made or damaged file).
        """
        super().__init__()
        self.out_features, self.in_features = (int(n) for n in code.shape)
        scale, zero = code.meta.get("input_scale"), code.meta.get("input_zero_point")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0
                and isinstance(zero, int) and 0 <= zero <= 255):  # fmt: skip
            raise CompressionError(
                f"a static INT8 layer needs a positive finite input_scale and an input_zero_point in 0..255, got "
                f"{scale!r} and {zero!r}: the compressed weights file was not written by frugalml's calibration"
            )
        self.x_scale, self.x_zero = float(scale), zero
        self.register_buffer("q", code.parts["q"].contiguous())
        # one scale per output channel (narrow layers share a scale across rows_per_group channels: expanded)
        group_of_row = torch.arange(self.out_features) // int(code.meta.get("rows_per_group", 1))
        self.register_buffer("w_scale", code.parts["scale"].float()[group_of_row].contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self.integer = onednn_int8_available()
        self._packed: torch.Tensor | None = None  # oneDNN's packed weight, made at the first call
        self._zeros = torch.zeros(self.out_features, dtype=torch.int64)  # the int8 weights' zero points

    def __getstate__(self) -> dict[str, Any]:
        """The state without the packed weight (an opaque tensor that cannot be copied; it is re-made)."""
        return {**self.__dict__, "_packed": None}

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """x -> uint8 codes with the calibrated scale and zero point (values outside the range saturate)."""
        return torch.quantize_per_tensor(x.float(), self.x_scale, self.x_zero, torch.quint8).int_repr()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out) float32."""
        lead = x.shape[:-1]
        codes = self.quantize_input(x.reshape(-1, self.in_features))
        q, w_scale, bias = self.q, self.w_scale, self.bias
        assert isinstance(q, torch.Tensor) and isinstance(w_scale, torch.Tensor)  # noqa: S101  # buffers
        if self.integer:
            if self._packed is None:
                self._packed = torch.ops.onednn.qlinear_prepack(q, None)
            linear = torch.ops.onednn.qlinear_pointwise
            y = linear(codes, self.x_scale, self.x_zero, self._packed, w_scale, self._zeros, bias, 1.0, 0,
                       torch.float32, "none", [], "")  # fmt: skip
        else:
            y = ((codes.float() - self.x_zero) * self.x_scale) @ (q.float() * w_scale[:, None]).T
            if isinstance(bias, torch.Tensor):
                y = y + bias
        return y.reshape(*lead, self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        """Sizes and the input quantiser."""
        return f"in={self.in_features}, out={self.out_features}, x_scale={self.x_scale:.4g}, x_zero={self.x_zero}"


def _swap_linears(
    module: torch.nn.Module, codes: dict[str, Encoded],
    build: Callable[[torch.nn.Linear, Encoded], torch.nn.Module | None], prefix: str = "",
) -> int:  # fmt: skip
    """Replace, in place, every ``nn.Linear`` for which ``build(layer, code of its weight)`` gives a module."""
    swapped = 0
    for child_name, child in list(module.named_children()):
        name = f"{prefix}{child_name}"
        code = codes.get(f"{name}.weight")
        replacement = build(child, code) if isinstance(child, torch.nn.Linear) and code is not None else None
        if replacement is not None:
            setattr(module, child_name, replacement)
            swapped += 1
        else:
            swapped += _swap_linears(child, codes, build, prefix=f"{name}.")
    return swapped


def swap_int8_linears(module: torch.nn.Module, codes: dict[str, Encoded]) -> int:
    """Replace, in place, every ``nn.Linear`` of ``module`` whose weight was stored int8 by an INT8 layer:
    :class:`StaticInt8Linear` when its codec meta holds a calibrated input quantiser, else :func:`int8_linear`
    (dynamic). Weights marked ``dynamic: false`` by calibration stay decoded.

    Returns:
        How many layers were replaced.
    """

    def build(layer: torch.nn.Linear, code: Encoded) -> torch.nn.Module | None:
        if code.codec != "int8" or code.meta.get("rows_per_group", 1) != 1 or not code.meta.get("dynamic", True):
            return None
        return StaticInt8Linear(code, layer.bias) if "input_scale" in code.meta else int8_linear(code, layer.bias)

    return _swap_linears(module, codes, build)


def swap_lut_linears(module: torch.nn.Module, codes: dict[str, Encoded]) -> int:
    """Replace, in place, every ``nn.Linear`` of ``module`` whose 2-D weight was stored ``int4-kmeans`` by a
    :class:`~frugalml.kernels.lut.LutLinear`, which computes from the packed indices and codebooks through the
    Triton LUT kernel (on a GPU, or under ``TRITON_INTERPRET=1``) and keeps the weight at 4.1 bits in memory.

    Returns:
        How many layers were replaced.
    """
    from frugalml.kernels.lut import LutLinear

    def build(layer: torch.nn.Linear, code: Encoded) -> torch.nn.Module | None:
        if code.codec != "int4-kmeans" or len(code.shape) != 2:
            return None
        shape = (int(code.shape[0]), int(code.shape[1]))
        return LutLinear(code.parts["idx"], code.parts["codebook"], int(code.meta["rows_per_group"]), shape, layer.bias)

    return _swap_linears(module, codes, build)
