"""Triton kernels for frugalml, importable as ``frugalml.kernels``.

Every kernel here ships with a pure-torch reference implementation and a test comparing the two (on the CPU
through ``TRITON_INTERPRET=1``, on a GPU when one is present). Code that calls a kernel falls back to its
reference when Triton or a GPU is missing.

- :mod:`frugalml.kernels.lut`: y = x · dequant(W)^T for k-means INT4 weights (packed 4-bit indices, 16-entry fp16
  codebooks per channel group), the layout of the compress stage's ``int4-kmeans`` codec.
"""

__all__: list[str] = ["lut"]
