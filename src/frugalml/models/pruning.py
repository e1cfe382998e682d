"""Structured pruning of a BERT-style encoder with physical removal: smaller Linear tensors, not masks.

Notation: H hidden width, F the FFN width of a layer (its ``intermediate.dense`` rows, its ``output.dense``
columns), A attention heads of width d (``query``/``key``/``value`` rows, ``attention.output.dense`` columns).

Per layer, the lowest-scoring ``ffn`` share of the F channels and ``heads`` share of the A heads are removed. A
channel's score, by ``importance``:

- ``fluctuation`` (FLAP, An et al. 2024): Var(x_j) * ||W_out[:, j]||^2, with x_j the channel's input to the
  output projection recorded on calibration texts (the dev split, never test rows): how much the layer's output
  moves with that channel. The mean contribution of each removed channel, W_out[:, j] * E[x_j], is added to the
  output bias (bias compensation), which stands in for fine-tuning;
- ``l1`` / ``l2``: the norm of the channel's weights in both projections (no data, no compensation);
- ``taylor`` (first-order Taylor expansion of the task loss, Molchanov et al. 2019): |sum over calibration tokens of
  x_j * dL/dx_j|, the loss change that removing channel j predicts, with L the classifier's own cross-entropy on the
  labelled calibration rows (the dev split) through its head (no compensation).

A head's score is the sum of its d channels' scores (``taylor``: |the sum of its channels' signed terms|, the
change removing the whole head predicts). Every layer keeps at least one head and one channel. The
pruned model's forward needs nothing else: BERT's attention reshapes to (-1 heads, d). :func:`fit_linear_shapes`
rebuilds the smaller layers of a model made from the unchanged ``config.json`` before its state is loaded.

Not built: a per-layer ratio allocated by sensitivity (the report gives each
layer's output error, measured on the calibration rows), the iterative prune -> fine-tune schedule (fine-tuning
the encoder needs text that is not private, or DP fine-tuning of 22 M weights), hidden units of MLP heads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from frugalml.errors import CompressionError

IMPORTANCE = ("fluctuation", "l1", "l2", "taylor")
TAYLOR_KEY = "::taylor"  # inputs[<linear name> + TAYLOR_KEY]: (in,) signed sums of x_j * dL/dx_j


@dataclass(frozen=True)
class PruneSpec:
    """What to remove from each encoder layer, and how channels are scored."""

    ffn: float = 0.0  # share of each layer's FFN channels removed, in [0, 1)
    heads: float = 0.0  # share of each layer's attention heads removed, in [0, 1)
    importance: str = "fluctuation"  # fluctuation (calibration inputs, bias compensation) | l1 | l2 | taylor

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            CompressionError: A ratio outside [0, 1) or an unknown importance.
        """
        for name, value in (("FFN", self.ffn), ("head", self.heads)):
            if not 0 <= value < 1:
                raise CompressionError(f"the {name} pruning ratio must be in [0, 1) (a share removed), got {value}")
        if self.importance not in IMPORTANCE:
            raise CompressionError(f"unknown pruning importance {self.importance!r}; choose one of {list(IMPORTANCE)}")

    def active(self) -> bool:
        """Whether anything is pruned."""
        return self.ffn > 0 or self.heads > 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def _sliced(layer: nn.Linear, *, rows: torch.Tensor | None = None, columns: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding the kept output ``rows`` and input ``columns`` of ``layer``."""
    weight = layer.weight.detach()
    weight = weight[rows] if rows is not None else weight
    weight = weight[:, columns] if columns is not None else weight
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.bias is not None)
    out.weight.data.copy_(weight)
    if layer.bias is not None:
        out.bias.data.copy_(layer.bias.detach()[rows] if rows is not None else layer.bias.detach())
    return out


def _channel_scores(
    spec: PruneSpec, first: list[nn.Linear], last: nn.Linear, x: torch.Tensor | None, where: str
) -> torch.Tensor:
    """Per input channel of ``last`` (rows of each of ``first``): the score of :class:`PruneSpec.importance`
    (``taylor``: the signed first-order terms; callers take the absolute value of a channel's or a head's sum)."""
    if spec.importance == "taylor":
        if x is None:
            raise CompressionError(
                f"taylor pruning needs the loss gradients of {where} on labelled calibration rows; give calibration "
                "rows (dev_labelled) or use fluctuation / l1 / l2"
            )
        return x
    if spec.importance == "fluctuation":
        if x is None:
            raise CompressionError(
                f"fluctuation pruning needs calibration inputs of {where}; give calibration rows or use l1 / l2"
            )
        return x.var(0, unbiased=False) * last.weight.detach().pow(2).sum(0)
    power = 1 if spec.importance == "l1" else 2
    score = last.weight.detach().abs().pow(power).sum(0)
    for layer in first:
        score = score + layer.weight.detach().abs().pow(power).sum(1)
    return score


def _compensate(last: nn.Linear, removed: torch.Tensor, x: torch.Tensor | None, spec: PruneSpec) -> None:
    """Add the removed channels' mean contribution to ``last``'s bias (fluctuation only)."""
    if spec.importance != "fluctuation" or x is None or removed.numel() == 0 or last.bias is None:
        return
    last.bias.data += last.weight.detach()[:, removed] @ x[:, removed].mean(0)


def _error(before: nn.Linear, after: nn.Linear, x: torch.Tensor | None, kept: torch.Tensor) -> float | None:
    """Relative output error of the pruned projection on the calibration inputs (None without them)."""
    if x is None:
        return None
    exact = before(x)
    return round(float((after(x[:, kept]) - exact).norm() / exact.norm().clamp(min=1e-12)), 6)


def _split(order: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    kept = order[:keep].sort().values
    removed = order[keep:].sort().values
    return kept, removed


def _prune_ffn(layer: Any, index: int, spec: PruneSpec, inputs: dict[str, torch.Tensor]) -> dict[str, int]:
    first, last = layer.intermediate.dense, layer.output.dense
    name = f"encoder.layer.{index}.output.dense"
    x = inputs.get(name)
    width = last.weight.shape[1]
    keep = max(1, round(width * (1 - spec.ffn)))
    scores = inputs.get(name + TAYLOR_KEY) if spec.importance == "taylor" else x
    order = _channel_scores(spec, [first], last, scores, f"layer {index}'s FFN").abs().argsort(descending=True)
    kept, removed = _split(order, keep)
    original = _sliced(last)
    _compensate(last, removed, x, spec)
    layer.intermediate.dense = _sliced(first, rows=kept)
    layer.output.dense = _sliced(last, columns=kept)
    return {"ffn_before": width, "ffn_after": keep, "ffn_error": _error(original, layer.output.dense, x, kept)}


def _prune_heads(layer: Any, index: int, spec: PruneSpec, inputs: dict[str, torch.Tensor]) -> dict[str, int]:
    attention, last = layer.attention.self, layer.attention.output.dense
    size = int(attention.attention_head_size)
    heads = last.weight.shape[1] // size
    keep = max(1, heads - int(heads * spec.heads))
    name = f"encoder.layer.{index}.attention.output.dense"
    x = inputs.get(name)
    projections = [attention.query, attention.key, attention.value]
    scores = inputs.get(name + TAYLOR_KEY) if spec.importance == "taylor" else x
    channel = _channel_scores(spec, projections, last, scores, f"layer {index}'s attention")
    order = channel.reshape(heads, size).sum(1).abs().argsort(descending=True)
    kept_heads, removed_heads = _split(order, keep)
    columns = (kept_heads[:, None] * size + torch.arange(size)).reshape(-1)
    removed = (removed_heads[:, None] * size + torch.arange(size)).reshape(-1)
    original = _sliced(last)
    _compensate(last, removed, x, spec)
    attention.query = _sliced(attention.query, rows=columns)
    attention.key = _sliced(attention.key, rows=columns)
    attention.value = _sliced(attention.value, rows=columns)
    layer.attention.output.dense = _sliced(last, columns=columns)
    attention.num_attention_heads = keep
    attention.all_head_size = keep * size
    error = _error(original, layer.attention.output.dense, x, columns)
    return {"heads_before": heads, "heads_after": keep, "attention_error": error}


def encoder_layers(model: nn.Module) -> list[Any]:
    """The transformer layers of a BERT-style encoder (``encoder.layer``).

    Raises:
        CompressionError: When the model has none (not a BERT-style encoder).
    """
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None or not len(layers):
        raise CompressionError(f"structured pruning needs a BERT-style encoder (encoder.layer); got {type(model)}")
    return list(layers)


@torch.no_grad()
def prune_encoder(
    model: nn.Module, spec: PruneSpec, inputs: dict[str, torch.Tensor] | None = None
) -> list[dict[str, Any]]:
    """Remove channels and heads of every layer of ``model`` in place (see the module docstring).

    Args:
        model: A BERT-style encoder (a copy: it is changed).
        spec: What to remove.
        inputs: Calibration inputs of each Linear (:func:`frugalml.models.calibration.record_inputs`); needed by
            ``fluctuation``; ``taylor`` reads ``<name>::taylor`` (:func:`frugalml.models.calibration.record_taylor`).

    Returns:
        Per layer: widths before and after, and the layer's relative output error on the calibration inputs of its
        output projections (null without inputs).
    """
    inputs = inputs or {}
    report = []
    for index, layer in enumerate(encoder_layers(model)):
        entry: dict[str, Any] = {"layer": index}
        if spec.ffn > 0:
            entry.update(_prune_ffn(layer, index, spec, inputs))
        if spec.heads > 0:
            entry.update(_prune_heads(layer, index, spec, inputs))
        report.append(entry)
    return report


def fit_linear_shapes(model: nn.Module, shapes: dict[str, list[int] | tuple[int, ...]]) -> list[str]:
    """Replace each Linear whose stored weight has another shape by one of that shape (a pruned model rebuilt
    from its unchanged config), and set the attention's head count from its query width.

    Args:
        model: Built from the config, weights not loaded yet.
        shapes: Tensor name -> stored shape.

    Returns:
        The names of the replaced layers.
    """
    replaced = []
    for name, module in list(model.named_modules()):
        shape = shapes.get(f"{name}.weight")
        if not isinstance(module, nn.Linear) or shape is None or tuple(shape) == tuple(module.weight.shape):
            continue
        parent_name, _, child = name.rpartition(".")
        parent: Any = model.get_submodule(parent_name) if parent_name else model  # HF attention: plain attributes
        setattr(parent, child, nn.Linear(int(shape[1]), int(shape[0]), bias=module.bias is not None))
        replaced.append(name)
        if child == "query" and hasattr(parent, "attention_head_size"):
            parent.num_attention_heads = int(shape[0]) // int(parent.attention_head_size)
            parent.all_head_size = int(shape[0])
    return replaced
