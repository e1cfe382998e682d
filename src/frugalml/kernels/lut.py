"""y = x · dequant(W)^T for k-means INT4 weights: a Triton kernel that reads the packed 4-bit indices and looks
each weight up in its group's 16-entry fp16 codebook on the fly, and its pure-torch reference.

Layout (as :mod:`frugalml.models.codecs` stores an ``int4-kmeans`` tensor): W is (N, K) (N output channels), its
indices flattened row-major and packed two per byte, low nibble first (entry ``n*K + k`` is nibble
``(n*K + k) % 2`` of byte ``(n*K + k) // 2``); output channel n uses codebook ``min(n // rows_per_group, G - 1)``.
x is (M, K), y is (M, N). Bytes read per call: N*K/2 (indices) + 32*G (codebooks) + M*K*2 or 4 (x): a quarter of
a bf16 weight's N*K*2, which is where the speed-up over a bf16 GEMV at small M comes from on a GPU.

The kernel runs on a CUDA device, or anywhere under ``TRITON_INTERPRET=1`` (set before this module is imported;
the tests run it so on the CPU). :func:`lut_matmul` falls back to :func:`lut_matmul_reference` when Triton or a
device is missing.
"""

from __future__ import annotations

import importlib.util
import os

import torch

__all__ = ["HAS_TRITON", "LutLinear", "kernel_available", "lut_matmul", "lut_matmul_reference"]

HAS_TRITON = importlib.util.find_spec("triton") is not None
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def _unpack(packed: torch.Tensor, count: int) -> torch.Tensor:
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=1).reshape(-1)[:count].long()


def dequantize(
    packed: torch.Tensor, codebook: torch.Tensor, rows_per_group: int, shape: tuple[int, int]
) -> torch.Tensor:
    """The (N, K) float32 weight the packed indices and codebooks stand for."""
    rows, width = shape
    codes = _unpack(packed.reshape(-1).cpu(), rows * width).reshape(rows, width).to(codebook.device)
    group = (torch.arange(rows, device=codebook.device) // rows_per_group).clamp(max=codebook.shape[0] - 1)
    return codebook.float()[group].gather(1, codes)


def lut_matmul_reference(
    x: torch.Tensor, packed: torch.Tensor, codebook: torch.Tensor, rows_per_group: int, shape: tuple[int, int]
) -> torch.Tensor:
    """``x @ dequantize(...).T`` in float32: what the kernel must compute."""
    return x.float() @ dequantize(packed, codebook, rows_per_group, shape).T


def kernel_available(device: torch.device | str) -> bool:
    """Whether the Triton kernel can run for tensors on ``device`` (CUDA, or the interpreter on any device)."""
    return HAS_TRITON and (INTERPRET or torch.device(device).type == "cuda")


if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _lut_matmul_kernel(  # noqa: PLR0913, PLR0917  # a kernel's arguments are its pointers, sizes and blocks
        x_ptr, idx_ptr, cb_ptr, y_ptr, M, N, K, rows_per_group, groups, stride_xm, stride_ym,  # noqa: ANN001, N803
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, USE_DOT: tl.constexpr,  # noqa: N803
    ):  # fmt: skip
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        group = tl.minimum(offs_n // rows_per_group, groups - 1)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            x_mask = (offs_m[:, None] < M) & (offs_k[None, :] < K)
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :], mask=x_mask, other=0.0).to(tl.float32)
            w_mask = (offs_n[:, None] < N) & (offs_k[None, :] < K)
            flat = offs_n[:, None].to(tl.int64) * K + offs_k[None, :]
            byte = tl.load(idx_ptr + flat // 2, mask=w_mask, other=0).to(tl.int32)
            code = (byte >> ((flat % 2) * 4).to(tl.int32)) & 15
            w = tl.load(cb_ptr + group[:, None] * 16 + code, mask=w_mask, other=0.0).to(tl.float32)  # (BN, BK)
            if USE_DOT:
                acc += tl.dot(x, tl.trans(w))
            else:
                acc += tl.sum(x[:, None, :] * w[None, :, :], axis=2)
        y_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], acc, mask=y_mask)


def lut_matmul(
    x: torch.Tensor, packed: torch.Tensor, codebook: torch.Tensor, rows_per_group: int, shape: tuple[int, int],
    *, block_n: int = 64, block_k: int = 64,
) -> torch.Tensor:  # fmt: skip
    """y = x · dequant(W)^T, through the Triton kernel where it can run, else the reference.

    Args:
        x: (M, K) activations.
        packed: (ceil(N*K/2),) uint8 packed indices.
        codebook: (G, 16) fp16 centroids.
        rows_per_group: Output channels per codebook.
        shape: (N, K).
        block_n: Output channels per program.
        block_k: Reduction step.

    Returns:
        (M, N) float32.

    Raises:
        ValueError: On shapes that do not fit together.
    """
    rows, width = shape
    if x.dim() != 2 or x.shape[1] != width:
        raise ValueError(f"x must be (M, {width}), got {tuple(x.shape)}")
    if packed.numel() != (rows * width + 1) // 2 or codebook.dim() != 2 or codebook.shape[1] != 16:
        raise ValueError("packed indices or codebook do not match the weight's shape")
    if not kernel_available(x.device):
        return lut_matmul_reference(x, packed, codebook, rows_per_group, shape)
    x = x.contiguous()
    y = torch.empty((x.shape[0], rows), dtype=torch.float32, device=x.device)
    small = x.shape[0] < 16
    block_m = 1 if x.shape[0] == 1 else (4 if small else 16)
    grid = (triton.cdiv(x.shape[0], block_m), triton.cdiv(rows, block_n))
    _lut_matmul_kernel[grid](
        x, packed.contiguous(), codebook.contiguous(), y, x.shape[0], rows, width, rows_per_group, codebook.shape[0],
        x.stride(0), y.stride(0), BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, USE_DOT=not small,
    )  # fmt: skip
    return y


class LutLinear(torch.nn.Module):
    """A Linear layer computing with k-means INT4 weights through :func:`lut_matmul` (4.1 bits per weight in
    memory; on a GPU the weights are never materialised in a wider type)."""

    def __init__(self, packed: torch.Tensor, codebook: torch.Tensor, rows_per_group: int, shape: tuple[int, int],
                 bias: torch.Tensor | None = None) -> None:  # fmt: skip
        """Hold the packed weight (buffers move with ``.to(device)``)."""
        super().__init__()
        self.shape, self.rows_per_group = (int(shape[0]), int(shape[1])), int(rows_per_group)
        self.register_buffer("packed", packed.contiguous())
        self.register_buffer("codebook", codebook.contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K) -> (..., N)."""
        lead = x.shape[:-1]
        packed, codebook, bias = self.packed, self.codebook, self.bias
        assert isinstance(packed, torch.Tensor) and isinstance(codebook, torch.Tensor)  # noqa: S101  # buffers
        y = lut_matmul(x.reshape(-1, self.shape[1]), packed, codebook, self.rows_per_group, self.shape)
        if isinstance(bias, torch.Tensor):
            y = y + bias
        return y.reshape(*lead, self.shape[0]).to(x.dtype)
