"""The k-means INT4 LUT kernel against cuBLAS bf16 (``python -m benchmarks.kernels``; GPU figures, null without one).

Shapes: K = N = 8192, and N = 28672, K = 8192 (an FFN up-projection), at m in {1, 16, 64}. ``lut_us``/``bf16_us``:
median microseconds of y = x · W^T (CUDA events, 50 runs after 10 warm-ups); ``speedup_m1_8192`` = bf16 / LUT at
m = 1, 8192²; ``effective_TBps_m1_8192``: the LUT kernel's bytes read (packed indices, codebooks, x) per second.
Reference on an H100: bf16 m=1 8192² = 79.8 µs; ceiling ~3.0 TB/s. Every shape is also checked against the
pure-torch reference. Without a CUDA GPU the timings are null; the correctness check runs on small shapes
through Triton's interpreter.

    python -m benchmarks.kernels [--smoke]

``--smoke``: small shapes only (also on a GPU), no timings on the CPU.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch

from benchmarks._common import finish

SHAPES = {"8192": (8192, 8192), "28672x8192": (28672, 8192)}
SMOKE_SHAPES = {"96x64": (96, 64), "40x33": (40, 33)}
MS = (1, 16, 64)


def _codes(rows: int, width: int, device: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Random packed indices and codebooks of the codec's layout (k-means on 8192² would take minutes)."""
    per_group = max(1, 4096 // width)
    groups = -(-rows // per_group)
    packed = torch.randint(0, 256, ((rows * width + 1) // 2,), dtype=torch.uint8, device=device)
    codebook = torch.randn(groups, 16, device=device).sort(dim=1).values.half()
    return packed, codebook, per_group


def _time_us(function: Any, repeats: int = 50) -> float:
    for _ in range(10):
        function()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    gpu = torch.cuda.is_available()
    if not gpu:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernel module is imported
    from frugalml.kernels.lut import HAS_TRITON, kernel_available, lut_matmul, lut_matmul_reference

    device = "cuda" if gpu else "cpu"
    shapes = SMOKE_SHAPES if args.smoke or not gpu else SHAPES
    checks: dict[str, float] = {}
    lut_us: dict[str, dict[str, float]] = {}
    bf16_us: dict[str, dict[str, float]] = {}
    for label, (rows, width) in shapes.items():
        packed, codebook, per_group = _codes(rows, width, device)
        for m in MS:
            x = torch.randn(m, width, device=device)
            want = lut_matmul_reference(x, packed, codebook, per_group, (rows, width))
            got = lut_matmul(x, packed, codebook, per_group, (rows, width))
            checks[f"{label}_m{m}"] = float((got - want).abs().max() / want.abs().max().clamp(min=1e-12))
            if gpu:
                weight = torch.randn(rows, width, device=device, dtype=torch.bfloat16)
                xb = x.bfloat16()
                lut_us.setdefault(label, {})[str(m)] = round(
                    _time_us(lambda x=x, p=packed, c=codebook, g=per_group, s=(rows, width): lut_matmul(x, p, c, g, s)),
                    2,
                )
                bf16_us.setdefault(label, {})[str(m)] = round(_time_us(lambda xb=xb, w=weight: xb @ w.T), 2)
    figures: dict[str, Any] = {
        "lut_us": lut_us or None,
        "bf16_us": bf16_us or None,
        "speedup_m1_8192": None,
        "effective_TBps_m1_8192": None,
        "max_relative_error": max(checks.values()) if checks else None,
        "checks": checks,
        "kernel": "triton" if HAS_TRITON and kernel_available(device) else "reference",
    }
    if gpu and "8192" in lut_us:
        lut, bf16 = lut_us["8192"]["1"], bf16_us["8192"]["1"]
        figures["speedup_m1_8192"] = round(bf16 / lut, 3)
        read = 8192 * 8192 / 2 + 32 * -(-8192 // max(1, 4096 // 8192)) + 8192 * 4
        figures["effective_TBps_m1_8192"] = round(read / (lut * 1e-6) / 1e12, 3)
    return finish("kernels", figures, args, started)


if __name__ == "__main__":
    main()
