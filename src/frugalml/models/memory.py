"""Activation memory: the bytes a training step holds for its backward pass, measured, not estimated.

CPU allocators keep no peak counter torch can read, and process RSS moves with the allocator's caching, so
frugalml counts the tensors autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``), each
storage once and parameters excluded: that is the activation memory a step holds when its forward pass ends,
the peak of activations in an ordinary step. With gradient checkpointing the forward keeps only each segment's
input (a non-reentrant checkpoint saves it as an autograd saved tensor, so the forward's count includes it); the
backward then recomputes one segment at a time, so the peak is the forward's saved tensors plus the largest
segment's own saved tensors (measured by running that segment alone). On CUDA,
``torch.cuda.max_memory_allocated`` gives the allocator's peak as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def saved_bytes(module: nn.Module, forward: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes of the non-parameter tensors autograd saves while ``forward()`` runs (each storage counted once; a
    non-reentrant checkpoint's input is one of them), and its result.

    Args:
        module: The model (its parameters are not activations).
        forward: Runs the forward pass with grad enabled.

    Returns:
        (bytes, the forward's output).
    """
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = forward()
    return sum(seen.values()), out


def peak_activation_bytes(
    module: nn.Module, forward: Callable[[], Any], segments: Sequence[Callable[[], Any]] = ()
) -> int:
    """Activation bytes at the peak of a step: what ``forward`` saves (the checkpoints' inputs included), plus the
    largest of ``segments`` (the checkpointed parts, each run alone as the backward pass recomputes it).

    Args:
        module: The model.
        forward: The step's forward pass.
        segments: Forward passes of each checkpointed segment alone (none without checkpointing).

    Returns:
        Bytes.
    """
    outer, _ = saved_bytes(module, forward)
    inner = max((saved_bytes(module, segment)[0] for segment in segments), default=0)
    return outer + inner


def transformer_activation_bytes(module: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """:func:`peak_activation_bytes` of a :class:`~frugalml.models.transformer.SmallTransformer` step on a batch
    (its blocks' sublayers, attention and feed-forward, are the segments when ``gradient_checkpointing`` is on)."""
    was_training = module.training
    module.train()
    try:
        segments: list[Callable[[], Any]] = []
        if getattr(module.config, "gradient_checkpointing", False):
            with torch.no_grad():
                pairs = _segment_inputs(module, input_ids, attention_mask)
            segments = [functools.partial(_run_segment, segment, x) for segment, x in pairs]
        # a non-reentrant checkpoint saves its input as an autograd saved tensor, so the outer forward's count has
        # it already (tested): adding ``states`` as held would count every segment input twice
        return peak_activation_bytes(module, lambda: module(input_ids, attention_mask), segments)
    finally:
        module.train(was_training)


def _run_segment(segment: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """One checkpointed segment on its (detached) input, as the backward pass recomputes it."""
    return segment(x.detach().requires_grad_(True))


def _segment_inputs(
    module: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> list[tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]]:
    """Each checkpoint segment (a block's sublayer) with its input states, to run it alone as the backward does."""
    key_mask = attention_mask.bool()
    x = module.embed_tokens(input_ids)
    pairs = []
    for block in module.blocks:
        for segment in block.sublayers(key_mask):
            pairs.append((segment, x))
            x = segment(x)
    return pairs
