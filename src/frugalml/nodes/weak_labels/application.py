"""Applying LFs: the label matrix ``L`` (N, m), by Snorkel's pandas applier, the vectorised one or Dask.

- ``pandas``: Snorkel's :class:`~snorkel.labeling.PandasLFApplier`, one pandas row at a time (the reference);
- ``vectorized``: each LF that has a frame form runs once on the whole frame (numpy/pandas string kernels),
  the others through the pandas applier; the result is identical (tested);
- ``dask``: Snorkel's :class:`~snorkel.labeling.apply.dask.PandasParallelLFApplier` over ``n_parallel``
  processes, for large pools.

An LF that raises on a row abstains on that row; the failures are counted per LF, warned about by name and
reported; an LF failing on more than ``max_lf_failure_share`` of the rows stops the run (it is broken, not
unlucky). An LF returning anything but an abstain or a class index stops the run, naming the LF and value.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from frugalml.errors import LabelingFunctionError, ParameterError, SchemaError
from frugalml.nodes.weak_labels.spec import ABSTAIN, FAILED_VOTE, NOT_INT_VOTE, LFSpec

logger = logging.getLogger(__name__)


def check_columns(frame: pd.DataFrame, lfs: list[LFSpec]) -> None:
    """Every LF's input columns must exist.

    Args:
        frame: The frame the LFs will see.
        lfs: The LFs.

    Raises:
        SchemaError: Naming each LF and the columns it lacks.
    """
    problems = [
        f"'{spec.name}' needs {missing}"
        for spec in lfs
        if (missing := [c for c in spec.columns if c not in frame.columns])
    ]
    if problems:
        raise SchemaError(
            "labelling functions need columns the data lacks: " + "; ".join(problems) +
            " (drop those LFs from weak_label.lfs or add the columns)"
        )  # fmt: skip


class _Guarded:
    """An LF that abstains-and-counts instead of raising (picklable, for the dask applier)."""

    def __init__(self, function: Callable[[Any], int]) -> None:
        self.function = function

    def __call__(self, row: Any) -> int:
        try:
            value = self.function(row)
        except Exception:  # an LF bug on one odd row must not stop labelling: counted and reported
            return FAILED_VOTE
        if value is None:
            return ABSTAIN
        return int(value) if isinstance(value, (bool, int, np.integer)) else NOT_INT_VOTE


def _snorkel_lfs(lfs: list[LFSpec]) -> list[Any]:
    from snorkel.labeling import LabelingFunction

    return [LabelingFunction(name=spec.name, f=_Guarded(spec.function)) for spec in lfs]


def _apply_rows(frame: pd.DataFrame, lfs: list[LFSpec], progress: bool) -> np.ndarray:
    from snorkel.labeling import PandasLFApplier

    if not lfs:
        return np.zeros((len(frame), 0), dtype=np.int64)
    return np.asarray(PandasLFApplier(_snorkel_lfs(lfs)).apply(frame, progress_bar=progress), dtype=np.int64)


def _apply_dask(frame: pd.DataFrame, lfs: list[LFSpec], n_parallel: int) -> np.ndarray:
    from snorkel.labeling.apply.dask import PandasParallelLFApplier

    applier = PandasParallelLFApplier(_snorkel_lfs(lfs))
    return np.asarray(applier.apply(frame, n_parallel=n_parallel, scheduler="processes"), dtype=np.int64)


def _apply_vectorized(frame: pd.DataFrame, lfs: list[LFSpec], progress: bool) -> np.ndarray:
    matrix = np.full((len(frame), len(lfs)), ABSTAIN, dtype=np.int64)
    row_wise = [j for j, spec in enumerate(lfs) if spec.vectorized is None]
    for j, spec in enumerate(lfs):
        if spec.vectorized is None:
            continue
        try:
            values = np.asarray(spec.vectorized(frame))
        except Exception as error:  # fall back to rows: per-row failures are then counted like any LF's
            logger.warning("LF '%s': frame form failed (%s); applying it row by row", spec.name, error)
            row_wise.append(j)
            continue
        if values.shape != (len(frame),):
            raise LabelingFunctionError(
                f"labelling function '{spec.name}': frame form returned shape {values.shape}, expected ({len(frame)},)"
            )
        matrix[:, j] = values
    if row_wise:
        matrix[:, row_wise] = _apply_rows(frame, [lfs[j] for j in row_wise], progress)
    return matrix


def apply_lfs(
    frame: pd.DataFrame,
    lfs: list[LFSpec],
    *,
    cardinality: int,
    applier: str = "vectorized",
    n_parallel: int = 2,
    max_failure_share: float = 0.5,
    progress: bool = False,
    ids: pd.Series | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Apply LFs to a frame (the output of :func:`lf_view`).

    Args:
        frame: Rows to label.
        lfs: Resolved LFs (:func:`create_lfs`).
        cardinality: C, the number of classes.
        applier: ``pandas`` | ``vectorized`` | ``dask``.
        n_parallel: Processes of the ``dask`` applier.
        max_failure_share: An LF that raises on a larger share of rows stops the run.
        progress: Show a progress bar (row-wise appliers).
        ids: Row ids, to name an offending row.

    Returns:
        ``L`` (N, m) with values in ``-1..C-1``, and the number of rows each LF raised on.

    Raises:
        LabelingFunctionError: On an out-of-range value, or an LF failing on too many rows.
        ParameterError: On an unknown applier.
    """
    check_columns(frame, lfs)
    frame = frame.reset_index(drop=True)
    if frame.empty:
        return np.zeros((0, len(lfs)), dtype=np.int64), {spec.name: 0 for spec in lfs}
    if applier == "pandas":
        matrix = _apply_rows(frame, lfs, progress)
    elif applier == "vectorized":
        matrix = _apply_vectorized(frame, lfs, progress)
    elif applier == "dask":
        matrix = _apply_dask(frame, lfs, n_parallel)
    else:
        raise ParameterError(f"weak_label.applier: unknown applier '{applier}' (pandas | vectorized | dask)")
    failed = matrix == FAILED_VOTE
    failures = {spec.name: int(failed[:, j].sum()) for j, spec in enumerate(lfs)}
    matrix[failed] = ABSTAIN
    bad = (matrix < ABSTAIN) | (matrix >= cardinality)
    if bad.any():
        row, column = (int(axis[0]) for axis in np.nonzero(bad))
        where = f"row id {ids.iloc[row]!r}" if ids is not None else f"row {row}"
        value = "a value that is not an integer" if matrix[row, column] == NOT_INT_VOTE else int(matrix[row, column])
        raise LabelingFunctionError(
            f"labelling function '{lfs[column].name}' returned {value} on {where}; an LF must "
            f"return -1 (abstain) or a class index in 0..{cardinality - 1} (the position in data.labels)"
        )
    for name, count in failures.items():
        if not count:
            continue
        share = count / len(frame)
        if share > max_failure_share:
            raise LabelingFunctionError(
                f"labelling function '{name}' raised on {count} of {len(frame)} rows ({share:.0%} > "
                f"max_lf_failure_share {max_failure_share}): fix it or drop it from weak_label.lfs"
            )
        message = f"labelling function '{name}' raised on {count} of {len(frame)} rows; it abstains there"
        logger.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return matrix, failures
