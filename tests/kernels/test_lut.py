"""The k-means INT4 LUT kernel against its pure-torch reference: on the CPU through Triton's interpreter
(``TRITON_INTERPRET=1``, in a subprocess because Triton reads it at import), and on a GPU when one is present."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from frugalml.kernels.lut import HAS_TRITON, dequantize, lut_matmul, lut_matmul_reference
from frugalml.models.codecs import decode, encode

CHECK = r"""
import json, torch
from frugalml.kernels.lut import kernel_available, lut_matmul, lut_matmul_reference, LutLinear
from frugalml.models.codecs import encode
assert kernel_available("cpu")
torch.manual_seed(0)
out = []
for m, n, k, group in [(1, 48, 64, 512), (3, 37, 50, 256), (16, 64, 96, 1024), (33, 20, 129, 64)]:
    weight = torch.randn(n, k)
    code = encode(weight, "int4-kmeans", group_weights=group)
    x = torch.randn(m, k)
    args = (code.parts["idx"], code.parts["codebook"], code.meta["rows_per_group"], (n, k))
    got, want = lut_matmul(x, *args, block_n=16, block_k=32), lut_matmul_reference(x, *args)
    out.append({"shape": [m, n, k], "groups": code.meta["groups"], "max_error": float((got - want).abs().max()),
                "scale": float(want.abs().max())})
layer = LutLinear(code.parts["idx"], code.parts["codebook"], code.meta["rows_per_group"], (n, k), torch.randn(n))
y = layer(torch.randn(2, 5, k))
out.append({"layer_shape": list(y.shape)})
print(json.dumps(out))
"""


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (make install installs it)")
def test_the_kernel_matches_the_reference_under_the_interpreter():
    env = os.environ | {"TRITON_INTERPRET": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for result in results[:-1]:
        assert result["max_error"] <= 1e-4 * max(result["scale"], 1.0), result
    assert {r["groups"] for r in results[:-1]} != {1}  # several codebooks were exercised
    assert results[-1]["layer_shape"] == [2, 5, 20]


def test_the_reference_is_the_codec_s_decoded_weight():
    torch.manual_seed(1)
    weight = torch.randn(30, 70)
    code = encode(weight, "int4-kmeans", group_weights=700)
    args = (code.parts["idx"], code.parts["codebook"], code.meta["rows_per_group"], (30, 70))
    assert torch.equal(dequantize(*args), decode(code))
    x = torch.randn(4, 70)
    assert torch.allclose(lut_matmul_reference(x, *args), x @ decode(code).T, atol=1e-5)


def test_without_a_device_the_kernel_falls_back_to_the_reference_and_checks_shapes():
    code = encode(torch.randn(8, 16), "int4-kmeans")
    args = (code.parts["idx"], code.parts["codebook"], code.meta["rows_per_group"], (8, 16))
    x = torch.randn(2, 16)
    assert torch.allclose(lut_matmul(x, *args), lut_matmul_reference(x, *args))
    with pytest.raises(ValueError, match=r"x must be \(M, 16\)"):
        lut_matmul(torch.randn(2, 15), *args)
    with pytest.raises(ValueError, match="do not match"):
        lut_matmul(x, code.parts["idx"][:-1], *args[1:])


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs triton and a CUDA GPU")
def test_the_kernel_matches_the_reference_on_the_gpu():
    torch.manual_seed(2)
    for m in (1, 16, 64):
        weight = torch.randn(1024, 512)
        code = encode(weight, "int4-kmeans")
        x = torch.randn(m, 512, device="cuda")
        args = (code.parts["idx"].cuda(), code.parts["codebook"].cuda(), code.meta["rows_per_group"], (1024, 512))
        got, want = lut_matmul(x, *args), lut_matmul_reference(x, *args)
        assert (got - want).abs().max() <= 1e-3 * want.abs().max()
