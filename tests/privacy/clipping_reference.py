"""A reference for the DP step's per-sample clipping: each sample's gradient computed alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from frugalml.privacy.step import _accumulate_clipped


def assert_clipped_sum_matches_per_sample_gradients(
    module: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, y: Any, *, checked: int = 3,
    loss: Callable[[torch.Tensor, Any], torch.Tensor] | None = None, last: bool = False,
) -> None:  # fmt: skip
    """The clipped gradient sum of one book-keeping step equals sum_i C g_i / ||g_i|| with every sample clipped
    (C half the smallest per-sample norm), for the first (``last``: the last) ``checked`` trainable parameters;
    ``loss``: per-sample losses ``(logits, targets) -> (N,)`` (default cross-entropy)."""
    params = [p for p in module.parameters() if p.requires_grad]
    rows = range(len(y))
    per_sample = loss or (lambda logits, target: torch.nn.functional.cross_entropy(logits, target, reduction="none"))

    def grads(i: int, wanted: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        value = per_sample(module(ids[i : i + 1], mask[i : i + 1]), y[i : i + 1]).sum()
        return torch.autograd.grad(value, wanted)

    norms = [torch.sqrt(sum(g.pow(2).sum() for g in grads(i, params))) for i in rows]
    clip = 0.5 * float(min(norms))
    for p in params:
        p.grad = None
    _accumulate_clipped(module, lambda: module(ids, mask), y, clip, loss)
    for p in params[-checked:] if last else params[:checked]:
        want = sum(clip / float(norms[i]) * grads(i, [p])[0] for i in rows)
        torch.testing.assert_close(p.grad, want, rtol=2e-3, atol=1e-6)
