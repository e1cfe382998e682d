"""Triton kernels for frugalml, importable as ``frugalml.kernels``.

Every kernel here ships with a pure-torch reference implementation and a test comparing the two
(on CPU through ``TRITON_INTERPRET=1``). Triton is optional (``pip install -e .[gpu]``); code that
calls a kernel falls back to its reference when Triton or a GPU is missing.

No kernel is built yet: the first one (a LUT dequantisation kernel for k-means INT4 weights)
arrives with the compression stage.
"""

__all__: list[str] = []
