"""Calibrated int4 k-means (``frugalml.models.codebook_fit``): GPTQ assignment over the k-means codebooks and the
least-squares centroid refit, against references, on held-out inputs, and their bad inputs."""

from __future__ import annotations

import pytest
import torch

from frugalml.errors import CompressionError
from frugalml.models.codebook_fit import gptq_assign, gptq_indices, output_error, refit_centroids
from frugalml.models.codecs import decode, encode, unpack


def _correlated(rows: int, width: int, seed: int) -> torch.Tensor:
    """Inputs like a transformer layer's: a few shared directions, a few loud features, noise."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(8, width, generator=torch.Generator().manual_seed(99))  # the same directions every draw
    x = torch.randn(rows, 8, generator=generator) @ mixing + 0.3 * torch.randn(rows, width, generator=generator)
    x[:, :3] *= 10
    return x


def _relative(code, weight, x) -> float:
    exact = x @ weight.T
    return float((x @ decode(code).T - exact).norm() / exact.norm())


@pytest.fixture(scope="module")
def layer():
    weight = 0.05 * torch.randn(48, 256, generator=torch.Generator().manual_seed(3))
    calibration, held_out = _correlated(1024, 256, seed=1), _correlated(1024, 256, seed=2)
    importance = calibration.pow(2).mean(0)[None, :]
    return weight, calibration, held_out, encode(weight, "int4-kmeans", group_weights=1024, importance=importance)


def test_the_output_error_from_h_is_the_direct_one(layer):
    weight, calibration, _, code = layer
    direct = _relative(code, weight, calibration)
    assert output_error(decode(code), weight, calibration.T @ calibration) == pytest.approx(direct, rel=1e-3)


def test_gptq_lowers_the_output_error_on_inputs_it_never_saw(layer):
    weight, calibration, held_out, code = layer
    assigned, before, after = gptq_assign(code, weight, calibration)
    assert after < 0.8 * before  # in-sample
    assert _relative(assigned, weight, held_out) < 0.85 * _relative(code, weight, held_out)
    # only the indices change: the codebooks, the layout and the size are the k-means code's
    assert torch.equal(assigned.parts["codebook"], code.parts["codebook"]) and assigned.meta == code.meta
    assert assigned.nbytes() == code.nbytes()
    changed = unpack(assigned.parts["idx"], weight.numel()) != unpack(code.parts["idx"], weight.numel())
    assert 0.05 < changed.float().mean() < 0.9


def test_gptq_with_independent_equal_inputs_is_nearest_rounding(layer):
    """With H = c I no error can be compensated through other columns: GPTQ's own index choice (before any
    acceptance check) rounds each weight to its nearest centroid, which is what k-means stored (the reference)."""
    weight, *_ = layer
    plain = encode(weight, "int4-kmeans", group_weights=1024)
    books = plain.parts["codebook"].float()[(torch.arange(48) // plain.meta["rows_per_group"])]
    orthogonal = torch.linalg.qr(torch.randn(512, 256, generator=torch.Generator().manual_seed(5)))[0] * 3.0
    chosen = gptq_indices(weight, orthogonal.T @ orthogonal, books, block=32)
    assert torch.equal(chosen.reshape(-1), unpack(plain.parts["idx"], weight.numel()))


def _reference_gptq(weight: torch.Tensor, hessian: torch.Tensor, books: torch.Tensor, damp: float) -> torch.Tensor:
    """GPTQ as the paper writes it, in float64, one column at a time with the full inverse (no blocks, no
    Cholesky factor): after rounding column q, W[:, q+1:] -= err_q / Hinv[q, q] * Hinv[q, q+1:], then column q is
    removed from Hinv (the Gaussian-elimination step of Optimal Brain Surgeon); act-order, dead inputs as GPTQ's."""
    order = torch.argsort(torch.diagonal(hessian), descending=True, stable=True)
    w, h = weight.double()[:, order].clone(), hessian.double()[order][:, order].clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    h += damp * torch.diagonal(h).mean() * torch.eye(len(h), dtype=torch.float64)
    inverse = torch.linalg.inv(h)
    books = books.double()
    chosen = torch.empty(w.shape, dtype=torch.long)
    for q in range(w.shape[1]):
        chosen[:, q] = (w[:, q, None] - books).abs().argmin(dim=1)
        error = w[:, q] - books.gather(1, chosen[:, q, None]).squeeze(1)
        w[:, q + 1 :] -= (error / inverse[q, q])[:, None] * inverse[q, q + 1 :][None, :]
        inverse = inverse - torch.outer(inverse[:, q], inverse[q, :]) / inverse[q, q]
    return chosen[:, torch.argsort(order)]


def test_gptq_chooses_the_indices_of_the_papers_algorithm(layer):
    weight, calibration, _, code = layer
    calibration = calibration.clone()
    calibration[:, 17] = 0  # an input no calibration row reaches
    hessian = calibration.T @ calibration
    books = code.parts["codebook"].float()[
        (torch.arange(48) // code.meta["rows_per_group"]).clamp(max=code.meta["groups"] - 1)
    ]
    chosen = gptq_indices(weight, hessian, books, block=32)  # blocks and the Cholesky factor, in float32
    reference = _reference_gptq(weight, hessian, books, damp=0.01)
    assert (chosen == reference).float().mean() > 0.995


def test_the_refit_is_the_least_squares_solution():
    """Reference: each group's centroids by ``torch.linalg.lstsq`` on the stacked outputs of its rows."""
    generator = torch.Generator().manual_seed(7)
    weight = torch.randn(8, 24, generator=generator)
    x = _correlated(300, 24, seed=8)
    code = encode(weight, "int4-kmeans", group_weights=96)  # 4 rows per codebook, 2 codebooks
    assert code.meta["groups"] == 2
    refitted, before, after = refit_centroids(code, weight, x, damp=1e-9)
    assert after < before
    codes = unpack(code.parts["idx"], weight.numel()).reshape(8, 24)
    for group in range(2):
        rows = range(4 * group, 4 * group + 4)
        design = torch.cat([x.double() @ torch.nn.functional.one_hot(codes[o], 16).double() for o in rows])
        target = torch.cat([x.double() @ weight[o].double() for o in rows])
        reference = torch.linalg.lstsq(design, target[:, None], driver="gelsd").solution.squeeze(1)
        torch.testing.assert_close(refitted.parts["codebook"][group].double(), reference, rtol=2e-3, atol=2e-3)
    assert torch.equal(refitted.parts["idx"], code.parts["idx"])


def test_refit_after_gptq_lowers_the_error_again_and_keeps_the_indices(layer):
    weight, calibration, held_out, code = layer
    assigned, _, assigned_error = gptq_assign(code, weight, calibration)
    refitted, before, after = refit_centroids(assigned, weight, calibration)
    assert before == pytest.approx(assigned_error) and after < before
    assert torch.equal(refitted.parts["idx"], assigned.parts["idx"])
    assert _relative(refitted, weight, held_out) < _relative(code, weight, held_out)


def test_a_centroid_no_input_reaches_stays_where_k_means_put_it():
    weight = torch.randn(4, 64, generator=torch.Generator().manual_seed(11))
    code = encode(weight, "int4-kmeans", group_weights=256)
    x = torch.zeros(100, 64)
    x[:, :8] = torch.randn(100, 8, generator=torch.Generator().manual_seed(12))  # only 8 inputs are ever active
    refitted, _, _ = refit_centroids(code, weight, x)
    assert torch.isfinite(refitted.parts["codebook"].float()).all()
    codes = unpack(code.parts["idx"], weight.numel()).reshape(4, 64)
    unseen = sorted(set(range(16)) - set(codes[:, :8].reshape(-1).tolist()))
    assert unseen, "the test needs a centroid the active inputs never use"
    torch.testing.assert_close(refitted.parts["codebook"][0, unseen].float(), code.parts["codebook"][0, unseen].float(),
                               rtol=1e-3, atol=1e-3)  # fmt: skip
    assigned, before, after = gptq_assign(code, weight, x)  # dead inputs keep their weights' nearest centroid
    assert after < before  # the assignment was accepted: the comparison below is of GPTQ's indices
    assert torch.equal(unpack(assigned.parts["idx"], 256).reshape(4, 64)[:, 8:], codes[:, 8:])


@pytest.mark.parametrize("fit", [gptq_assign, refit_centroids])
@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("int8", "needs an int4-kmeans tensor, got 'int8'"),
        ("narrow", r"inputs of shape \(10, 32\) do not fit a weight of shape \(4, 64\)"),
        ("empty", r"inputs of shape \(0, 64\) do not fit"),
        ("nan", "calibration inputs are not all finite"),
        ("huge", r"too large: X\^T X overflows float32"),
    ],
)
def test_bad_inputs_are_named(fit, case, match):
    weight = torch.randn(4, 64, generator=torch.Generator().manual_seed(13))
    code = encode(weight, "int8" if case == "int8" else "int4-kmeans", group_weights=256)
    x = {"narrow": torch.randn(10, 32), "empty": torch.zeros(0, 64)}.get(case, torch.randn(10, 64))
    if case == "nan":
        x[3, 5] = float("nan")
    if case == "huge":
        x[:, 0] = 1e25
    with pytest.raises(CompressionError, match=match):
        fit(code, weight, x)
