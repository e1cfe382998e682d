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

from dataclasses import dataclass, field
from typing import Any

import torch

from frugalml.errors import CompressionError

PRECISIONS = ("fp16", "bf16", "fp8", "int8", "int4-kmeans")
CODECS = ("raw", "fp32", *PRECISIONS)  # raw: a non-float tensor (ids, counters), stored as is
OBSERVERS = ("minmax", "percentile", "mse")
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
    packed = _pack(indices)
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


def _pack(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes < 16 -> two per byte (low nibble first)."""
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_zeros(1)])
    pairs = codes.reshape(-1, 2)
    return (pairs[:, 0] | (pairs[:, 1] << 4)).contiguous()


def unpack(packed: torch.Tensor, count: int) -> torch.Tensor:
    """Inverse of :func:`_pack`: the first ``count`` 4-bit codes as int64."""
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


def swap_int8_linears(module: torch.nn.Module, codes: dict[str, Encoded], prefix: str = "") -> int:
    """Replace, in place, every ``nn.Linear`` of ``module`` whose weight was stored int8 by :func:`int8_linear`.

    Returns:
        How many layers were replaced.
    """
    swapped = 0
    for child_name, child in list(module.named_children()):
        name = f"{prefix}{child_name}"
        code = codes.get(f"{name}.weight")
        if (isinstance(child, torch.nn.Linear) and code is not None and code.codec == "int8"
                and code.meta.get("rows_per_group", 1) == 1 and code.meta.get("dynamic", True)):  # fmt: skip
            setattr(module, child_name, int8_linear(code, child.bias))
            swapped += 1
        else:
            swapped += swap_int8_linears(child, codes, prefix=f"{name}.")
    return swapped
