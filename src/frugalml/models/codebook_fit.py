"""Calibrated int4 k-means: fitting a Linear weight's 16-centroid codebooks to the layer's outputs on calibration
inputs (the dev split; never test rows), not only to the weights.

k-means (:mod:`frugalml.models.codecs`) rounds each weight to its group's nearest centroid, weighted by its
column's mean squared input. That ignores how the rounding errors of one row add up through correlated inputs.
With X the layer's (n, K) recorded inputs and H = X^T X, two steps lower the output error
``||X (Wq - W)^T|| / ||X W^T||``, each with no label and no gradient of any loss:

- :func:`gptq_assign` - error-compensated assignment (GPTQ, Frantar et al. 2022, with the k-means codebooks as
  the grid): the columns are rounded one at a time, most active input first, and each column's rounding error is
  pushed onto the columns not yet rounded through H^-1, so the later indices correct the earlier errors;
- :func:`refit_centroids` - centroid fine-tuning: every index kept, each group's 16 centroids solved by least
  squares on the output.

Both are checked on the calibration inputs (the result is kept only where it lowers the error there); the compress
stage's dev-accuracy gate checks the whole model afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from frugalml.errors import CompressionError
from frugalml.models.codecs import CENTROIDS, Encoded, decode, pack, unpack

_DAMP = 0.01  # ridge of H (GPTQ's percdamp), relative to its mean diagonal


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the block, restored after. ``torch.set_num_threads`` is process-wide: other
    threads running torch meanwhile get one thread too, and the block is not reentrant from several threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _checked(code: Encoded, weight: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (R, K) float32 weight and H = X^T X, after refusing a code or inputs that do not fit.

    Raises:
        CompressionError: A code that is not int4-kmeans, or inputs that are empty, of another width or not finite.
    """
    if code.codec != "int4-kmeans":
        raise CompressionError(f"codebook calibration needs an int4-kmeans tensor, got {code.codec!r}")
    matrix = weight.detach().to("cpu", torch.float32).reshape(weight.shape[0], -1)
    if inputs.dim() != 2 or inputs.shape[0] == 0 or inputs.shape[1] != matrix.shape[1]:
        raise CompressionError(
            f"calibration inputs of shape {tuple(inputs.shape)} do not fit a weight of shape {tuple(matrix.shape)} "
            "(need (rows > 0, in_features))"
        )
    x = inputs.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise CompressionError("the calibration inputs are not all finite")
    hessian = x.T @ x
    if not torch.isfinite(hessian).all():
        raise CompressionError("the calibration inputs are too large: X^T X overflows float32")
    return matrix, hessian


def _groups_of_rows(code: Encoded, rows: int) -> tuple[torch.Tensor, int]:
    per_group, n_groups = int(code.meta["rows_per_group"]), int(code.meta["groups"])
    return (torch.arange(rows) // per_group).clamp(max=n_groups - 1), n_groups


def output_error(approx: torch.Tensor, exact: torch.Tensor, hessian: torch.Tensor) -> float:
    """``||X (A - W)^T|| / ||X W^T||`` from H = X^T X (tr(D H D^T) = ||X D^T||^2)."""
    difference = approx - exact
    numerator = (difference @ hessian * difference).sum().clamp(min=0)
    denominator = (exact @ hessian * exact).sum().clamp(min=1e-24)
    return float((numerator / denominator).sqrt())


def gptq_assign(
    code: Encoded, weight: torch.Tensor, inputs: torch.Tensor, *, damp: float = _DAMP, block: int = 128
) -> tuple[Encoded, float, float]:
    """Re-choose the indices of an int4-kmeans weight by GPTQ over its (fixed) codebooks.

    Columns are visited in order of decreasing H_jj (act-order); a column's rounding error, divided by the Cholesky
    factor's diagonal, updates the columns after it (the optimal update of a least-squares problem, computed in
    blocks of ``block`` columns). A column no calibration input reaches (H_jj = 0) is rounded to its nearest
    centroid and keeps its weights (it may be active on other text).

    Args:
        code: The tensor as :func:`~frugalml.models.codecs.encode` stored it.
        weight: The fp32 (R, K) weight it encodes.
        inputs: (n, K) inputs of the layer (:func:`frugalml.models.calibration.record_inputs`).
        damp: Ridge of H, relative to its mean diagonal.
        block: Columns per lazy update.

    Returns:
        The re-assigned code (the original where it does not lower the error on ``inputs``), the relative output
        error before and after.

    Raises:
        CompressionError: See :func:`_checked`.
    """
    matrix, hessian = _checked(code, weight, inputs)
    rows, _ = matrix.shape
    group_of_row, _ = _groups_of_rows(code, rows)
    books = code.parts["codebook"].to(torch.float32)[group_of_row]  # (R, 16): each row's codebook
    indices = gptq_indices(matrix, hessian, books, damp=damp, block=block)
    packed = pack(indices.reshape(-1).to(torch.uint8))
    assigned = Encoded(code.codec, list(code.shape), {"idx": packed, "codebook": code.parts["codebook"]},
                       dict(code.meta))  # fmt: skip
    return _better(code, assigned, matrix, hessian)


def gptq_indices(
    matrix: torch.Tensor, hessian: torch.Tensor, books: torch.Tensor, *, damp: float = _DAMP, block: int = 128
) -> torch.Tensor:
    """GPTQ's (R, K) index choice for the weight ``matrix`` (R, K), H = X^T X (K, K) and each row's 16 centroids
    ``books`` (R, 16) (:func:`gptq_assign` without its checks).

    Raises:
        CompressionError: When H, damped, is not positive definite.
    """
    rows, width = matrix.shape
    order = torch.argsort(torch.diagonal(hessian), descending=True, stable=True)
    work = matrix[:, order].clone()
    h = hessian[order][:, order].clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    h += damp * torch.diagonal(h).mean() * torch.eye(width)
    try:
        upper = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    except torch.linalg.LinAlgError as failure:
        raise CompressionError(
            f"GPTQ needs X^T X positive definite after damping, and the calibration inputs give none ({failure})"
        ) from failure
    indices = torch.empty(rows, width, dtype=torch.long)
    for start in range(0, width, block):
        stop = min(start + block, width)
        part, factor = work[:, start:stop].clone(), upper[start:stop, start:stop]
        errors = torch.empty(rows, stop - start)
        with _one_thread():  # many small sequential steps: a second thread only adds its wake-up cost
            for j in range(stop - start):
                column = part[:, j]
                chosen = (column[:, None] - books).abs().argmin(dim=1)
                indices[:, start + j] = chosen
                error = (column - books.gather(1, chosen[:, None]).squeeze(1)) / factor[j, j]
                part[:, j:] -= error[:, None] * factor[j, j:][None, :]
                errors[:, j] = error
        work[:, stop:] -= errors @ upper[start:stop, stop:]
    return indices[:, torch.argsort(order)]


def refit_centroids(
    code: Encoded, weight: torch.Tensor, inputs: torch.Tensor, *, damp: float = _DAMP, chunk: int = 256
) -> tuple[Encoded, float, float]:
    """Centroid fine-tuning of an int4-kmeans weight: every index kept, each group's 16 centroids c solved by

        min_c  sum over the group's rows o of ||X (W_o - c[idx_o])||^2,

    i.e. (sum_o M_o^T H M_o + lam I) c = sum_o M_o^T H w_o + lam c_old, with M_o the (K, 16) one-hot of row o's
    indices and lam = ``damp`` x the group's mean diagonal: a ridge towards the current centroids, which also keeps
    a centroid that no input reaches.

    Args:
        code: The tensor (int4-kmeans).
        weight: The fp32 (R, K) weight it encodes.
        inputs: (n, K) inputs of the layer.
        damp: Ridge strength, relative to the normal matrix's mean diagonal.
        chunk: Rows processed at once (memory: chunk x K x 16 floats, twice).

    Returns:
        The refitted code (fp16 centroids; the original where the refit does not lower the error on ``inputs``),
        the relative output error before and after.

    Raises:
        CompressionError: See :func:`_checked`.
    """
    matrix, hessian = _checked(code, weight, inputs)
    rows, width = matrix.shape
    indices = unpack(code.parts["idx"], rows * width).reshape(rows, width)
    group_of_row, n_groups = _groups_of_rows(code, rows)
    normal = torch.zeros(n_groups, CENTROIDS, CENTROIDS, dtype=torch.float64)
    target = torch.zeros(n_groups, CENTROIDS, dtype=torch.float64)
    weighted = matrix @ hessian  # (R, K): H w_o per row (H is symmetric)
    for start in range(0, rows, chunk):
        part = slice(start, min(start + chunk, rows))
        onehot = torch.nn.functional.one_hot(indices[part], CENTROIDS).to(torch.float32)  # (r, K, 16)
        spread = torch.einsum("ij,rjl->ril", hessian, onehot)  # H M_o
        normal.index_add_(0, group_of_row[part], torch.einsum("rik,ril->rkl", onehot, spread).double())
        target.index_add_(0, group_of_row[part], torch.einsum("rik,ri->rk", onehot, weighted[part]).double())
    old = code.parts["codebook"].to(torch.float64)  # (G, 16)
    lam = damp * normal.diagonal(dim1=1, dim2=2).mean(dim=1).clamp(min=1e-12)  # (G,)
    system = normal + lam[:, None, None] * torch.eye(CENTROIDS, dtype=torch.float64)
    books = torch.linalg.solve(system, target + lam[:, None] * old).to(torch.float16)
    if not torch.isfinite(books).all():
        books = code.parts["codebook"]
    refitted = Encoded(code.codec, list(code.shape), {"idx": code.parts["idx"], "codebook": books}, dict(code.meta))
    return _better(code, refitted, matrix, hessian)


def _better(old: Encoded, new: Encoded, matrix: torch.Tensor, hessian: torch.Tensor) -> tuple[Encoded, float, float]:
    """``new`` with both errors where it lowers the output error, else ``old`` (and its error twice)."""
    rows, width = matrix.shape
    before, after = (output_error(decode(c).reshape(rows, width), matrix, hessian) for c in (old, new))
    return (new, before, after) if after < before else (old, before, before)
