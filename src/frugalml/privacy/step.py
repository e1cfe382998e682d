"""A clipped, noised DP-SGD step by book-keeping, on the ghost norms of :mod:`frugalml.privacy.ghost`.

Notation: N samples in a batch, C the clipping norm, sigma the noise multiplier. The update is
``(sum_i clip_C(grad_i) + N(0, sigma^2 C^2 I)) / expected_batch_size``, the estimator Opacus uses under
Poisson sampling.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from frugalml.errors import ModelError
from frugalml.privacy.ghost import GhostNorms, _capture
from frugalml.privacy.norms import squared_norms


def _accumulate_clipped(
    module: nn.Module, forward: Callable[[], torch.Tensor], targets: Any, max_grad_norm: float,
    loss: Callable[[torch.Tensor, Any], torch.Tensor] | None = None,
) -> tuple[float, float]:  # fmt: skip
    """Add the sum of the per-sample clipped gradients of one (micro)batch to each parameter's ``.grad``.

    Returns:
        The summed loss and the number of clipped samples.
    """
    records, handles = _capture(module)
    try:
        logits = forward().float()
        losses = loss(logits, targets) if loss else nn.functional.cross_entropy(logits, targets, reduction="none")
    finally:
        for handle in handles:
            handle.remove()
    outputs = [output for _, _, output in records]
    output_grads = torch.autograd.grad(losses.sum(), outputs, retain_graph=True, allow_unused=True)
    used = [(layer, saved, out, g) for (layer, saved, out), g in zip(records, output_grads, strict=True)
            if g is not None]  # fmt: skip
    if not used:
        raise ValueError("DP-SGD step: no layer with a registered norm sampler received a gradient")
    shared = [type(layer).__name__ for layer, _, _, g in used if g.shape[0] != len(targets)]
    if shared:  # e.g. a position-embedding table looked up once for the whole batch: no per-sample gradient
        raise ModelError(
            f"DP-SGD step: trainable layer(s) {shared} computed an output shared by the batch (first dimension is "
            f"not the {len(targets)} samples), so their per-sample gradients cannot be clipped; freeze them"
        )
    squares = [squared_norms(layer, saved, g) for layer, saved, _, g in used]
    norms = functools.reduce(operator.add, squares).clamp(min=0).sqrt()  # summed in layer order, as always
    factors = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    for layer, _, out, g in used:
        # each layer's clipped gradient: its own backward with the output gradient scaled per sample
        params = [p for p in layer.parameters(recurse=False) if p.requires_grad]
        scale = factors.reshape(-1, *([1] * (g.dim() - 1))).to(g.dtype)
        for parameter, grad in zip(params, torch.autograd.grad(out, params, g * scale, retain_graph=True),
                                   strict=True):  # fmt: skip
            parameter.grad = grad if parameter.grad is None else parameter.grad + grad
    return float(losses.detach().sum()), float((norms > max_grad_norm).float().sum())


def dp_sgd_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    forward: Callable[[], torch.Tensor],
    targets: Any,
    *,
    max_grad_norm: float,
    noise_multiplier: float,
    expected_batch_size: float,
    generator: torch.Generator | None = None,
    microbatches: Sequence[tuple[Callable[[], torch.Tensor], Any]] | None = None,
    loss: Callable[[torch.Tensor, Any], torch.Tensor] | None = None,
) -> dict[str, float]:
    """One DP-SGD step with per-sample clipping, by book-keeping: one forward, one backward to the layer
    outputs only (no parameter gradients), the per-sample norms from the saved inputs and output gradients,
    then each layer's clipped gradient by its own local backward with per-sample scaled output gradients — no
    per-sample gradients and no second full pass.

    The update is ``(sum_i clip_C(grad_i) + N(0, sigma^2 C^2 I)) / expected_batch_size``, the estimator Opacus
    uses under Poisson sampling. With ``microbatches`` (virtual steps), the clipped sums of the physical
    micro-batches are accumulated and the noise is added once: the same update for a logical batch that does
    not fit in memory at once.

    Args:
        module: The model (supported layers only).
        optimizer: Its optimiser.
        forward: Computes the (N, C) logits of the batch (ignored when ``microbatches`` is given).
        targets: (N,) class indices, or (N, C) class distributions.
        max_grad_norm: Clipping norm C.
        noise_multiplier: sigma.
        expected_batch_size: Sampling rate times dataset size.
        generator: Seeds the noise.
        microbatches: ``(forward, targets)`` pairs that together make the logical batch.
        loss: ``(logits, targets) -> (N,)`` per-sample losses (default: cross-entropy on ``targets``).

    Returns:
        ``loss`` (mean, before clipping) and ``clipped_share`` (samples whose norm exceeded C).
    """
    GhostNorms(module)  # validates the layers
    optimizer.zero_grad(set_to_none=False)
    named = {id(p): p for p in module.parameters() if p.requires_grad}
    for parameter in named.values():
        parameter.grad = None  # each layer's clipped gradient is assigned below (zeros when a layer gets none)
    loss_sum, clipped, rows = 0.0, 0.0, 0
    for part_forward, part_targets in microbatches if microbatches is not None else [(forward, targets)]:
        if len(part_targets):
            part_loss, part_clipped = _accumulate_clipped(module, part_forward, part_targets, max_grad_norm, loss)
            loss_sum, clipped, rows = loss_sum + part_loss, clipped + part_clipped, rows + len(part_targets)
    for parameter in named.values():
        noise = torch.normal(0.0, noise_multiplier * max_grad_norm, parameter.shape, generator=generator)
        if parameter.grad is None:
            parameter.grad = noise.to(parameter.device)
        else:
            parameter.grad.add_(noise.to(parameter.grad.device))
        parameter.grad.div_(expected_batch_size)
    optimizer.step()
    return {"loss": loss_sum / max(rows, 1), "clipped_share": clipped / max(rows, 1)}
