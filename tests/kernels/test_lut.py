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


# --- the compressed encoder computing through the kernel -------------------------------------------------------

ENCODER_CHECK = r"""
import json, sys, torch
from frugalml.kernels.lut import LutLinear
from frugalml.models.encoder import EncoderSpec, TextEncoder, _compressed_model
spec = EncoderSpec(sha256=sys.argv[2], path=sys.argv[1], max_tokens=16, batch_size=4)
encoder = TextEncoder(spec)
layers = [name for name, m in encoder.model.named_modules() if isinstance(m, LutLinear)]
texts = ["Free money, click now!", "Meeting moved to 3pm tomorrow, see the agenda"]
got = encoder.embed(texts)
decoded = _compressed_model(encoder.directory, spec.sha256, int8_layers=False, lut_layers=False)
encoder.model = decoded.to(encoder.device)
want = encoder.embed(texts)
print(json.dumps({"layers": layers, "device": str(encoder.device), "max_diff": float(abs(got - want).max())}))
"""


@pytest.fixture(scope="module")
def int4_encoder():
    """MiniLM compressed to int4-kmeans (no calibration), in a temporary encoder folder."""
    from frugalml.models.compression import CompressedEncoder, CompressionSpec
    from frugalml.models.encoder import EncoderSpec

    return CompressedEncoder(EncoderSpec(max_tokens=16), CompressionSpec(precision="int4-kmeans",
                                                                          activation_aware=False), None)  # fmt: skip


def _run_encoder_check(holder, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", ENCODER_CHECK, str(holder.directory), holder.sha256],
        env=os.environ | {"PYTHONWARNINGS": "ignore"} | env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (make install installs it)")
def test_a_compressed_int4_encoder_embeds_through_the_kernel_under_the_interpreter(int4_encoder):
    result = _run_encoder_check(int4_encoder, {"TRITON_INTERPRET": "1", "FRUGALML_ENCODER_DEVICE": "cpu"})
    # every int4 Linear of the 6 layers (q, k, v, attention output, FFN in and out) and the pooler
    assert len(result["layers"]) == 37 and "encoder.layer.5.output.dense" in result["layers"], result
    assert result["max_diff"] < 1e-5, result  # the same embeddings as the decoded-fp32 layers


def test_without_the_kernel_a_compressed_int4_encoder_decodes_its_layers(int4_encoder):
    result = _run_encoder_check(int4_encoder, {"TRITON_INTERPRET": "0", "FRUGALML_ENCODER_DEVICE": "cpu"})
    assert result["layers"] == [] and result["max_diff"] == 0.0, result


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs triton and a CUDA GPU")
def test_a_compressed_int4_encoder_embeds_through_the_kernel_on_the_gpu(int4_encoder):
    result = _run_encoder_check(int4_encoder, {"FRUGALML_ENCODER_DEVICE": "cuda"})
    assert result["device"].startswith("cuda") and len(result["layers"]) == 37, result
    assert result["max_diff"] < 1e-3, result


@pytest.mark.parametrize(("value", "match"), [("tpu", "must be auto, cpu or cuda, not 'tpu'"),
                                               ("cuda", "no CUDA device is available")])  # fmt: skip
def test_a_bad_encoder_device_is_named(monkeypatch, value, match):
    from frugalml.errors import PretrainedModelError
    from frugalml.models.encoder import EncoderSpec, TextEncoder, encoder_device

    if value == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    monkeypatch.setenv("FRUGALML_ENCODER_DEVICE", value)
    with pytest.raises(PretrainedModelError, match=match):
        encoder_device()
    with pytest.raises(PretrainedModelError, match=match):  # named as is, before the encoder loads
        TextEncoder(EncoderSpec())
