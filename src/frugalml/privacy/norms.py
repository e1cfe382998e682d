"""Per-layer norm rules: the per-sample squared gradient norm of one layer from its saved inputs and output gradient.

Notation: N samples in a batch, d layer width, B hash buckets. For each parameterised layer the squared norm of
sample i's gradient is computed from what the forward and backward passes already hold — the layer input a_i
and the gradient g_i of its output — never materialising the (N, *param.shape) per-sample gradients:

1. ``Linear`` on (N, d_in):   ||g_i||^2 ||a_i||^2 (+ ||g_i||^2 for the bias); on sequences (N, T, d_in) the
   ghost-clipping sum over token pairs, or the (d_out, d_in) gradient itself when that is cheaper
2. ``EmbeddingBag`` (sum/mean, per-sample weights w): row b of sample i's gradient is c_ib g_i with
   c_ib the total weight of bucket b in bag i, so the norm is ||g_i||^2 sum_b c_ib^2.
3. ``Embedding`` on (N, T): rows are sums of g_it over positions with the same id; grouped with scatter_add.
4. ``LayerNorm`` (inputs (N, ..., d)): ||sum_t g_it * xhat_it||^2 + ||sum_t g_it||^2.

Rules are registered per layer class (:func:`register_norm_sampler`) and looked up along the MRO; any other
layer with trainable parameters is refused (``ModelError``), so a norm is never silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from frugalml.errors import ModelError
from frugalml.registry import TypeRegistry

NormRule = Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]
SaveInputs = Callable[[nn.Module, tuple, dict], tuple]
Validate = Callable[[nn.Module, str], None]


def save_first_input(layer: nn.Module, args: tuple, kwargs: dict) -> tuple:
    """The default of what a forward hook keeps: ``(input,)``, detached."""
    return (args[0].detach(),)


@dataclass(frozen=True)
class NormSampler:
    """A registered rule: the norm, what the forward hook saves for it, and a check of the layer."""

    norm: NormRule
    save: SaveInputs = save_first_input
    validate: Validate | None = None


NORM_SAMPLERS: TypeRegistry[NormSampler] = TypeRegistry("norm sampler")


def register_norm_sampler(
    *classes: type[nn.Module],
    save: SaveInputs | None = None,
    validate: Validate | None = None,
    replace: bool = False,
) -> Callable[[NormRule], NormRule]:
    """Decorator: register the per-sample squared gradient norm rule of a layer type (Opacus-style).

    The rule is called after the backward pass reaches the layer's output as ``rule(layer, saved, grad_output)``
    and must return the (N,) squared L2 norms of each sample's gradient over the layer's *own* trainable
    parameters (``layer.parameters(recurse=False)``); child modules get their own rules. ``saved`` is what
    ``save(layer, args, kwargs)`` kept in the forward hook (default: ``(args[0].detach(),)``). ``validate(layer,
    name)`` runs when :class:`~frugalml.privacy.GhostNorms` or :func:`~frugalml.privacy.dp_sgd_step` sees the
    layer and raises ``ModelError`` for a configuration the rule cannot handle. Subclasses use their nearest
    registered base's rule unless they register their own. Example, for a layer ``y = x * scale`` with a
    (d,) ``scale`` on (N, d) inputs (sample i's gradient is g_i * x_i)::

        @register_norm_sampler(Scale)
        def _scale_norm(layer, saved, grad_output):
            (x,) = saved
            return (grad_output.float() * x.float()).pow(2).sum(1)

    Args:
        classes: The layer classes (``nn.Module`` subclasses).
        save: What the forward hook keeps for the rule.
        validate: Refuses unsupported layer configurations.
        replace: Replace an existing registration for one of ``classes``.

    Returns:
        The decorator (it returns the rule unchanged).

    Raises:
        ParameterError: When a class already has a rule and ``replace`` is false.
    """

    def decorator(rule: NormRule) -> NormRule:
        NORM_SAMPLERS.register(*classes, replace=replace)(NormSampler(rule, save or save_first_input, validate))
        return rule

    return decorator


def norm_sampler(layer: nn.Module) -> NormSampler | None:
    """The registered rule of ``layer``'s class or its nearest registered base; None when there is none."""
    return NORM_SAMPLERS.lookup(type(layer))


def supported() -> tuple[type, ...]:
    """The layer classes with a registered rule (subclasses are supported too)."""
    return tuple(NORM_SAMPLERS.classes())


def squared_norms(layer: nn.Module, saved: tuple, grad_output: torch.Tensor) -> torch.Tensor:
    """Per-sample squared gradient norms of one layer's parameters (its registered rule).

    Args:
        layer: A layer with a registered rule.
        saved: Its forward inputs (EmbeddingBag: indices, offsets, per-sample weights).
        grad_output: Gradient of the loss sum w.r.t. the layer's output.

    Returns:
        (N,) squared norms.

    Raises:
        ModelError: When the layer has no rule.
    """
    sampler = norm_sampler(layer)
    if sampler is None:
        raise ModelError(f"{type(layer).__name__} has no per-sample norm rule ({_how_to_register()})")
    return sampler.norm(layer, saved, grad_output)


def _how_to_register() -> str:
    return "register one with @frugalml.privacy.register_norm_sampler(<layer class>)"


def _bag_of(offsets: torch.Tensor, total: int) -> torch.Tensor:
    """Bag index of every entry of a flat EmbeddingBag input."""
    lengths = torch.diff(offsets, append=torch.tensor([total], device=offsets.device))
    return torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), lengths)


def _grouped_square_sum(groups: torch.Tensor, sample: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """sum over unique (sample, group) keys of ||sum of values in the key||^2, per sample. values: (E,) or (E, d)."""
    keys, inverse = torch.unique(sample * (int(groups.max().item()) + 1 if len(groups) else 1) + groups,
                                 return_inverse=True)  # fmt: skip
    shape = (len(keys),) + tuple(values.shape[1:])
    summed = torch.zeros(shape, dtype=values.dtype, device=values.device).index_add_(0, inverse, values)
    squares = summed.pow(2).reshape(len(keys), -1).sum(dim=1)
    owner = torch.zeros(len(keys), dtype=torch.long, device=values.device).index_copy_(0, inverse, sample)
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, owner, squares)


@register_norm_sampler(nn.Linear)
def _linear_norm(layer: nn.Module, saved: tuple, grad_output: torch.Tensor) -> torch.Tensor:
    g = grad_output.detach().float()
    a = saved[0].float()
    if a.dim() == 2:
        squares = g.pow(2).sum(1) * a.pow(2).sum(1)
        return squares + g.pow(2).sum(1) if layer.bias is not None else squares
    if a.dim() < 2:
        raise ModelError("Linear ghost norms need (N, d) or (N, ..., d) inputs")
    # sequences (N, T, d_in) -> (N, T, d_out): sample i's weight gradient is G_i = g_i^T a_i, and
    # ||G_i||^2 = sum_{t,s} (a_it . a_is)(g_it . g_is) (ghost clipping, O(T^2 (d_in + d_out))), or G_i itself
    # when that is smaller (O(T d_in d_out))
    a, g = a.reshape(len(a), -1, a.shape[-1]), g.reshape(len(g), -1, g.shape[-1])
    steps, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    if steps * steps * (d_in + d_out) <= steps * d_in * d_out:
        squares = (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))
    else:
        squares = torch.bmm(g.transpose(1, 2), a).pow(2).sum((1, 2))
    return squares + g.sum(1).pow(2).sum(1) if layer.bias is not None else squares


@register_norm_sampler(nn.LayerNorm)
def _layer_norm_norm(layer: nn.Module, saved: tuple, grad_output: torch.Tensor) -> torch.Tensor:
    assert isinstance(layer, nn.LayerNorm)  # looked up by class: always true
    g = grad_output.detach().float()
    x = saved[0].float()
    dims = tuple(range(x.dim() - len(layer.normalized_shape), x.dim()))
    xhat = (x - x.mean(dims, keepdim=True)) / torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + layer.eps)
    features = int(torch.tensor(layer.normalized_shape).prod())
    squares = (g * xhat).reshape(len(g), -1, features).sum(1).pow(2).sum(1)
    if getattr(layer, "bias", None) is not None:
        squares = squares + g.reshape(len(g), -1, features).sum(1).pow(2).sum(1)
    return squares


def _save_bag_inputs(layer: nn.Module, args: tuple, kwargs: dict) -> tuple:
    """EmbeddingBag keeps (indices, offsets, per-sample weights)."""
    offsets = args[1] if len(args) > 1 else kwargs.get("offsets")
    weights = args[2] if len(args) > 2 else kwargs.get("per_sample_weights")
    if offsets is None:
        raise ValueError("DP training of an EmbeddingBag needs its offsets (1-D input with offsets)")
    return args[0].detach(), offsets.detach(), None if weights is None else weights.detach()


def _validate_bag(layer: nn.Module, name: str) -> None:
    if layer.mode not in ("sum", "mean"):
        raise ModelError(f"layer '{name}': EmbeddingBag mode {layer.mode!r} is not supported")


@register_norm_sampler(nn.EmbeddingBag, save=_save_bag_inputs, validate=_validate_bag)
def _embedding_bag_norm(layer: nn.Module, saved: tuple, grad_output: torch.Tensor) -> torch.Tensor:
    g = grad_output.detach().float()
    indices, offsets, weights = saved
    bag = _bag_of(offsets, len(indices))
    w = torch.ones(len(indices), device=g.device) if weights is None else weights.float()
    if layer.mode == "mean":
        w = w / torch.bincount(bag, minlength=len(offsets)).clamp(min=1).float()[bag]
    if getattr(layer, "frugalml_unique_per_bag", False):  # no bucket twice in a bag: no grouping needed
        weight_squares = torch.zeros(len(offsets), device=g.device).index_add_(0, bag, w.pow(2))
    else:
        weight_squares = _grouped_square_sum(indices, bag, w, len(offsets))
    return g.pow(2).sum(1) * weight_squares


@register_norm_sampler(nn.Embedding)
def _embedding_norm(layer: nn.Module, saved: tuple, grad_output: torch.Tensor) -> torch.Tensor:
    g = grad_output.detach().float()
    ids = saved[0]  # nn.Embedding on (N, T) ids; g: (N, T, d)
    sample = torch.arange(ids.shape[0], device=ids.device).repeat_interleave(ids[0].numel())
    return _grouped_square_sum(ids.reshape(-1), sample, g.reshape(-1, g.shape[-1]), ids.shape[0])
