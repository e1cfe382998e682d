"""Dynamic sliding-window attention (DSWA) for long inputs, and the dense reference it is tested against.

Notation: N texts, H heads, T tokens, d the head width, B the query block (``block``), nb = T / B blocks.

Each query block b gets its own half-window w_b (query i sees key j when |i - j| <= w_b, and j is not padding),
chosen from a cheap relevance score and clamped to [w_min, w_max]:

1. block summaries: the mean query and mean key of each block over its real tokens, (N, H, nb, d);
2. block-level attention p_b = softmax_j(q_b . k_j / sqrt(d)) over the non-empty key blocks, averaged over heads;
3. the spread s_b = 1 - (the mass of p_b within w_min of block b): how much of the block's attention a window of
   w_min would miss; w_b = w_min + s_b (w_max - w_min), rounded up to a whole block and clamped.

Blocks whose attention is local keep a narrow window; blocks that look far get a wide one. The windows are
computed without gradient, from each text's own tokens only, so rows stay independent (DP's per-sample
clipping holds). Cost: O(N H nb^2 d) for the score, against O(N H T^2 d) for dense attention.

Two paths compute the same function: ``flex`` (FlexAttention with a block mask, compiled on CUDA, eager on CPU)
and ``banded`` (scaled_dot_product_attention on each query block against its band of at most B + 2 w_max keys:
O(N H T (B + 2 w_max) d), a real saving on CPU). :func:`dense_window_attention` materialises the (T, T) mask: the
reference of the tests.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import nn

from frugalml.errors import ModelError

Backend = Literal["auto", "banded", "flex", "dense"]
FLEX_TILE = 128  # FlexAttention's default block mask tile (its CUDA kernels need tiles they divide)


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """(N, H, T, d) -> (N, H, nb, B, d), T padded with zeros to a multiple of ``block``."""
    steps = x.shape[2]
    pad = (-steps) % block
    if pad:
        x = nn.functional.pad(x, (0, 0, 0, pad))
    return x.reshape(x.shape[0], x.shape[1], -1, block, x.shape[3])


@torch.no_grad()
def relevance_windows(
    q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor, *, block: int, w_min: int, w_max: int
) -> torch.Tensor:
    """Each query block's half-window, from the block-level attention spread (see the module docstring).

    Args:
        q: (N, H, T, d) queries.
        k: (N, H, T, d) keys.
        key_mask: (N, T) bool, True for real tokens.
        block: B, the query block.
        w_min: The narrowest half-window (tokens).
        w_max: The widest half-window (tokens).

    Returns:
        (N, nb) int64 half-windows, multiples of ``block`` (or ``w_min``/``w_max`` themselves) in [w_min, w_max].
    """
    weights = _blocks(key_mask[:, None, :, None].to(q.dtype), block)  # (N, 1, nb, B, 1)
    counts = weights.sum(3)  # (N, 1, nb, 1)
    q_mean = (_blocks(q, block) * weights).sum(3) / counts.clamp(min=1)
    k_mean = (_blocks(k, block) * weights).sum(3) / counts.clamp(min=1)
    scores = q_mean @ k_mean.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (N, H, nb, nb)
    empty = (counts[..., 0] == 0)[:, :, None, :]  # key blocks without a real token
    probs = torch.softmax(scores.float().masked_fill(empty, float("-inf")), dim=-1).nan_to_num(0.0).mean(1)
    nb = probs.shape[-1]
    index = torch.arange(nb, device=q.device)
    near = ((index[:, None] - index[None, :]).abs() * block <= w_min).to(probs.dtype)  # (nb, nb)
    spread = (1.0 - (probs * near).sum(-1)).clamp(0.0, 1.0)  # (N, nb)
    windows = torch.ceil((w_min + spread * (w_max - w_min)) / block) * block
    return windows.clamp(min=w_min, max=w_max).long()


def _allowed(windows: torch.Tensor, key_mask: torch.Tensor, q_idx: torch.Tensor, k_idx: torch.Tensor, *,
             rows: torch.Tensor, block: int) -> torch.Tensor:  # fmt: skip
    """Whether query q_idx of row ``rows`` may see key k_idx: within its block's window and a real key (a query
    always sees itself, so a padded query's softmax is defined; its output is never pooled)."""
    inside = (q_idx - k_idx).abs() <= windows[rows, q_idx // block]
    return (inside & key_mask[rows, k_idx]) | (q_idx == k_idx)


def window_mask(windows: torch.Tensor, key_mask: torch.Tensor, block: int) -> torch.Tensor:
    """The dense (N, 1, T, T) bool mask of ``windows`` (True: attend)."""
    n, steps = key_mask.shape
    idx = torch.arange(steps, device=key_mask.device)
    rows = torch.arange(n, device=key_mask.device)[:, None, None]
    return _allowed(windows, key_mask, idx[None, :, None], idx[None, None, :], rows=rows, block=block)[:, None]


def dense_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, *, windows: torch.Tensor, block: int
) -> torch.Tensor:
    """Reference: SDPA with the materialised (T, T) window mask; O(T^2) memory."""
    return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=window_mask(windows, key_mask, block))


def banded_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, *, windows: torch.Tensor, block: int,
    w_max: int,
) -> torch.Tensor:  # fmt: skip
    """SDPA of each query block against its band of keys [start - w_max, end + w_max): the same result as
    :func:`dense_window_attention` in O(N H T (B + 2 w_max) d)."""
    n, heads, steps, dim = q.shape
    reach = int(math.ceil(w_max / block) * block)
    q_blocks = _blocks(q, block)  # (N, H, nb, B, d)
    nb = q_blocks.shape[2]
    total = nb * block
    width = block + 2 * reach

    def band(x: torch.Tensor) -> torch.Tensor:  # (N, H, T, d) -> (N, H, nb, width, d)
        padded = nn.functional.pad(x, (0, 0, reach, reach + total - steps))
        return padded.unfold(2, width, block).transpose(-1, -2)

    padded_keys = nn.functional.pad(key_mask, (reach, reach + total - steps), value=False)
    band_keys = padded_keys.unfold(1, width, block)  # (N, nb, width)
    q_idx = torch.arange(total, device=q.device).reshape(nb, block)  # absolute query positions
    k_idx = (torch.arange(nb, device=q.device) * block - reach)[:, None] + torch.arange(width, device=q.device)
    win = windows[:, :, None, None]  # (N, nb, 1, 1)
    inside = (q_idx[None, :, :, None] - k_idx[None, :, None, :]).abs() <= win
    mask = (inside & band_keys[:, :, None, :]) | (q_idx[None, :, :, None] == k_idx[None, :, None, :])
    out = nn.functional.scaled_dot_product_attention(q_blocks, band(k), band(v), attn_mask=mask[:, None])
    return out.reshape(n, heads, total, dim)[:, :, :steps]


def flex_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, *, windows: torch.Tensor, block: int
) -> torch.Tensor:
    """FlexAttention with a block mask of ``windows`` (compiled on CUDA; the eager reference on CPU). The mask's
    tiles are FlexAttention's own (128 tokens, which its kernels need; the windows stay exact per token inside
    them); the length is padded to whole tiles (padding masked out), so batches trimmed to different lengths reuse
    a few compiled shapes. On CUDA the block mask itself is built compiled, never as a dense T x T mask."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    n, _, steps, _ = q.shape
    pad = (-steps) % FLEX_TILE
    if pad:
        q, k, v = (nn.functional.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        key_mask = nn.functional.pad(key_mask, (0, pad), value=False)
    total = steps + pad
    short = -(-total // block) - windows.shape[1]
    if short > 0:  # padded queries (masked out) still index a window
        windows = torch.cat([windows, windows[:, -1:].expand(-1, short)], dim=1)
    rows_all = torch.arange(n, device=q.device)

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return _allowed(windows, key_mask, q_idx, kv_idx, rows=rows_all[b], block=block)

    block_mask = create_block_mask(mask_mod, n, None, total, total, device=q.device, BLOCK_SIZE=FLEX_TILE,
                                   _compile=q.is_cuda)  # fmt: skip
    if q.is_cuda:
        out = _compiled_flex()(q, k, v, block_mask=block_mask)  # type: ignore[operator]
    else:
        with warnings.catch_warnings():  # the eager CPU path is the unfused reference, and says so on every call
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            out = flex_attention(q, k, v, block_mask=block_mask)
    return out[:, :, :steps]  # type: ignore[index]


_FLEX: object = None


def _compiled_flex() -> object:
    global _FLEX  # noqa: PLW0603  # compiled once per process
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX = torch.compile(flex_attention)
    return _FLEX


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, *, block: int, w_min: int,
    w_max: int, backend: Backend = "auto",
) -> torch.Tensor:  # fmt: skip
    """DSWA: windows from :func:`relevance_windows`, attention by ``backend`` (auto: flex on CUDA, banded else).

    Raises:
        ModelError: On an unknown backend or windows outside 1 <= w_min <= w_max.
    """
    if not 1 <= w_min <= w_max:
        raise ModelError(f"attention windows need 1 <= w_min <= w_max, got w_min {w_min}, w_max {w_max}")
    windows = relevance_windows(q, k, key_mask, block=block, w_min=w_min, w_max=w_max)
    chosen = ("flex" if q.is_cuda else "banded") if backend == "auto" else backend
    if chosen == "banded":
        return banded_window_attention(q, k, v, key_mask, windows=windows, block=block, w_max=w_max)
    if chosen == "flex":
        return flex_window_attention(q, k, v, key_mask, windows=windows, block=block)
    if chosen == "dense":
        return dense_window_attention(q, k, v, key_mask, windows=windows, block=block)
    raise ModelError(f"unknown attention backend {backend!r}; choose auto, banded, flex or dense")


def full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Dense bidirectional attention over the real keys (the baseline DSWA is measured against); without padding in
    the batch, unmasked SDPA (its fused kernels)."""
    if bool(key_mask.all()):
        return nn.functional.scaled_dot_product_attention(q, k, v)
    eye = torch.eye(key_mask.shape[1], dtype=torch.bool, device=key_mask.device)
    return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :] | eye)
