"""Activation memory: the bytes a training step holds for its backward pass, measured, not estimated.

CPU allocators keep no peak counter torch can read, and process RSS moves with the allocator's caching, so
frugalml counts the tensors autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``), each
storage once and parameters excluded: that is the activation memory a step holds when its forward pass ends,
the peak of activations in an ordinary step. With gradient checkpointing the forward keeps only each segment's
input; the backward then recomputes one segment at a time, so the peak is the saved inputs plus the largest
segment's own saved tensors (measured by running that segment alone). On CUDA,
``torch.cuda.max_memory_allocated`` gives the allocator's peak as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn


def saved_bytes(module: nn.Module, forward: Callable[[], Any], held: Sequence[torch.Tensor] = ()) -> tuple[int, Any]:
    """Bytes of the non-parameter tensors autograd saves while ``forward()`` runs (plus the tensors ``held``
    otherwise, e.g. checkpoint inputs kept by the checkpoint itself; each storage counted once), and its result.

    Args:
        module: The model (its parameters are not activations).
        forward: Runs the forward pass with grad enabled.
        held: Tensors the step keeps outside autograd's saved tensors.

    Returns:
        (bytes, the forward's output).
    """
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in held}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = forward()
    return sum(seen.values()), out


def peak_activation_bytes(
    module: nn.Module, forward: Callable[[], Any], segments: Sequence[Callable[[], Any]] = (),
    held: Sequence[torch.Tensor] = (),
) -> int:  # fmt: skip
    """Activation bytes at the peak of a step: what ``forward`` saves and the tensors ``held`` (the checkpoints'
    inputs), plus the largest of ``segments`` (the checkpointed parts, each run alone as the backward pass
    recomputes it).

    Args:
        module: The model.
        forward: The step's forward pass.
        segments: Forward passes of each checkpointed segment alone (none without checkpointing).
        held: Tensors kept by the checkpoints themselves (their inputs), not among autograd's saved tensors.

    Returns:
        Bytes.
    """
    outer, _ = saved_bytes(module, forward, held)
    inner = max((saved_bytes(module, segment)[0] for segment in segments), default=0)
    return outer + inner


def transformer_activation_bytes(module: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """:func:`peak_activation_bytes` of a :class:`~frugalml.models.transformer.SmallTransformer` step on a batch
    (its blocks are the segments when ``gradient_checkpointing`` is on)."""
    was_training = module.training
    module.train()
    try:
        segments: list[Callable[[], Any]] = []
        states: list[torch.Tensor] = []
        if getattr(module.config, "gradient_checkpointing", False):
            with torch.no_grad():
                states = _block_inputs(module, input_ids, attention_mask)
            segments = [functools.partial(_run_block, block, x, attention_mask.bool())
                        for block, x in zip(cast(nn.ModuleList, module.blocks), states, strict=True)]  # fmt: skip
        # each block's input is kept by its checkpoint (outside autograd's saved tensors): counted as held
        return peak_activation_bytes(module, lambda: module(input_ids, attention_mask), segments, held=states)
    finally:
        module.train(was_training)


def _run_block(block: nn.Module, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """One block on its (detached) input, as the backward pass recomputes it."""
    return block(x.detach().requires_grad_(True), key_mask)  # type: ignore[no-any-return]


def _block_inputs(module: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Each block's input states (the checkpoints' saved tensors)."""
    key_mask = attention_mask.bool()
    x = module.embed_tokens(input_ids)
    states = []
    for block in module.blocks:
        states.append(x)
        x = block(x, key_mask)
    return states
