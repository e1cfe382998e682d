"""Weak labelling: labelling functions (LFs) vote on unlabelled rows, a label model combines the votes.

Notation: N pool rows, m LFs, C classes. An LF maps one row to a class index in ``0..C-1`` (the position of
the label in ``params:data.labels``) or :data:`ABSTAIN` (-1). The label matrix ``L`` is (N, m).

The LF library (:mod:`frugalml.nodes.lf_library`) holds e-mail heuristics; users add their own with
:func:`register_lf` and choose the set in ``params:weak_label.lfs``. Three appliers compute ``L``:

- ``pandas``: Snorkel's :class:`~snorkel.labeling.PandasLFApplier`, one pandas row at a time (the reference);
- ``vectorized``: each LF that has a frame form runs once on the whole frame (numpy/pandas string kernels),
  the others through the pandas applier; the result is identical (tested);
- ``dask``: Snorkel's :class:`~snorkel.labeling.apply.dask.PandasParallelLFApplier` over ``n_parallel``
  processes, for large pools.

An LF that raises on a row abstains on that row; the failures are counted per LF, warned about by name and
reported; an LF failing on more than ``max_lf_failure_share`` of the rows stops the run (it is broken, not
unlucky). An LF returning anything but an abstain or a class index stops the run, naming the LF and value.

What stops the run is a broken configuration (an unknown LF, a broken LF, LFs that abstain on every row of
the pool *and* of the gold dev set). What the data only makes impossible does not: when no library LF fits
the data's labels or columns, or the gold dev set is too small to check the LFs (a small table), the pool
rows go to ``weak_abstained`` with that reason, a warning says what to do, and the run goes on with the
hand labels.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from frugalml.errors import EmptyDatasetError, LabelingFunctionError, ParameterError, SchemaError

logger = logging.getLogger(__name__)

ABSTAIN = -1
_FAILED = 1_000_003  # what a guarded LF returns when it raised: kept apart from abstains, then counted
_NOT_INT = 1_000_005  # what a guarded LF returns when the LF returned something that is not an integer


@dataclass(frozen=True)
class LFSpec:
    """One labelling function as registered.

    Attributes:
        name: Unique name (what ``params:weak_label.lfs`` lists).
        function: Row -> class index or :data:`ABSTAIN`. For library rules that vote a label *name*,
            the index is resolved when the LF set is built (:func:`create_lfs`).
        family: Group name (``header``, ``content``, ``keyword``, ``subject``, ``custom``); ``lfs`` may list
            a family as ``family:<name>``.
        columns: Input columns the LF reads (checked before applying; derived ``lf_*`` columns excluded).
        rationale: Why it should work (the function's docstring).
        vectorized: Optional frame -> (N,) array form of ``function`` (same values), used by the
            ``vectorized`` applier.
        vote: For library rules, the label *name* voted (resolved through ``params:data.label_names``).
    """

    name: str
    function: Callable[[Any], int]
    family: str = "custom"
    columns: tuple[str, ...] = ()
    rationale: str = ""
    vectorized: Callable[[pd.DataFrame], np.ndarray] | None = None
    vote: str | None = None


_REGISTRY: dict[str, LFSpec] = {}


def register_lf(
    name: str | None = None,
    *,
    family: str = "custom",
    columns: Iterable[str] = (),
    vectorized: Callable[[pd.DataFrame], np.ndarray] | None = None,
    replace: bool = False,
) -> Callable[[Callable[[Any], int]], Callable[[Any], int]]:
    """Register a labelling function (decorator).

    The function receives one row (a pandas Series: the row's columns plus the derived ``lf_*`` columns
    of :func:`lf_view`) and returns a class index (position in ``params:data.labels``) or ``-1`` to abstain.
    Its docstring is its rationale and is shown in the LF report. Import the module that registers it
    before the run (e.g. from ``settings.py``), then list its name in ``params:weak_label.lfs``.

    Args:
        name: LF name (default: the function's name).
        family: Family name, selectable as ``family:<name>``.
        columns: Columns the function reads (a missing one is a clear error before applying).
        vectorized: Optional frame form returning the same values for every row.
        replace: Allow replacing an LF of the same name.

    Returns:
        The decorator (returns the function unchanged).

    Raises:
        ParameterError: When the name is taken and ``replace`` is false.
    """

    def decorator(function: Callable[[Any], int]) -> Callable[[Any], int]:
        key = name or function.__name__
        if key in _REGISTRY and not replace:
            raise ParameterError(f"a labelling function named '{key}' is already registered")
        _REGISTRY[key] = LFSpec(
            name=key,
            function=function,
            family=family,
            columns=tuple(columns),
            rationale=" ".join((function.__doc__ or "").split()),
            vectorized=vectorized,
        )
        return function

    return decorator


def register_spec(spec: LFSpec, *, replace: bool = False) -> None:
    """Register a prepared :class:`LFSpec` (the library's rules use this).

    Args:
        spec: The LF.
        replace: Allow replacing an LF of the same name.

    Raises:
        ParameterError: When the name is taken and ``replace`` is false.
    """
    if spec.name in _REGISTRY and not replace:
        raise ParameterError(f"a labelling function named '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec


def unregister_lf(name: str) -> None:
    """Remove an LF from the registry (tests, notebooks).

    Args:
        name: LF name.
    """
    _REGISTRY.pop(name, None)


def registered_lfs() -> dict[str, LFSpec]:
    """All registered LFs (the library's and the user's).

    Returns:
        Name -> spec.
    """
    from frugalml.nodes import lf_library  # noqa: F401  (registers the library on first use)

    return dict(_REGISTRY)


def create_lfs(selection: list[str], label_names: list[str], columns: Iterable[str] | None = None) -> list[LFSpec]:
    """Resolve ``params:weak_label.lfs`` into LF specs with class indices.

    Names are strict: a named LF must exist and vote a label the data has. ``all`` and ``family:<name>``
    select the LFs that *fit* the data: those voting one of ``label_names`` and (when ``columns`` is given)
    reading only columns the data has; the others are skipped with a log line.

    Args:
        selection: LF names, ``family:<name>`` entries, or ``all``.
        label_names: ``params:data.label_names`` (library rules vote by name).
        columns: The data's columns, to skip LFs of ``all``/families that cannot run on it.

    Returns:
        The LFs, in selection order, without duplicates (may be empty when nothing fits).

    Raises:
        ParameterError: On an unknown name or family, or a named library rule voting a label the data lacks.
    """
    registry = registered_lfs()
    available = set(columns) if columns is not None else None
    chosen: list[LFSpec] = []
    skipped: list[str] = []
    for entry in selection:
        if entry == "all" or entry.startswith("family:"):
            family = None if entry == "all" else entry.split(":", 1)[1]
            matches = [spec for spec in registry.values() if family is None or spec.family == family]
            if family is not None and not matches:
                families = sorted({spec.family for spec in registry.values()})
                raise ParameterError(f"weak_label.lfs: no LF family '{family}' (families: {families})")
            fits = [
                spec for spec in matches
                if (spec.vote is None or spec.vote in label_names)
                and (available is None or set(spec.columns) <= available)
            ]  # fmt: skip
            skipped += [spec.name for spec in matches if spec not in fits]
            matches = fits
        elif entry in registry:
            matches = [registry[entry]]
        else:
            raise ParameterError(
                f"weak_label.lfs: unknown labelling function '{entry}' (registered: {sorted(registry)}); "
                "register your own with frugalml.nodes.weak_labels.register_lf"
            )
        chosen.extend(spec for spec in matches if spec.name not in {c.name for c in chosen})
    if skipped:
        logger.info("weak_label.lfs: skipped %d LFs that do not fit this data: %s", len(skipped), sorted(set(skipped)))
    resolved = []
    for spec in chosen:
        if spec.vote is not None:
            if spec.vote not in label_names:
                raise ParameterError(
                    f"labelling function '{spec.name}' votes '{spec.vote}', which is not in data.label_names "
                    f"{label_names}: choose LFs that fit your labels"
                )
            resolved.append(_bind_vote(spec, label_names.index(spec.vote)))
        else:
            resolved.append(spec)
    return resolved


def _bind_vote(spec: LFSpec, index: int) -> LFSpec:
    condition, frame_condition = spec.function, spec.vectorized

    def row_lf(row: Any) -> int:
        return index if condition(row) else ABSTAIN

    def frame_lf(frame: pd.DataFrame) -> np.ndarray:
        assert frame_condition is not None
        return np.where(np.asarray(frame_condition(frame), dtype=bool), index, ABSTAIN)

    return LFSpec(
        name=spec.name,
        function=row_lf,
        family=spec.family,
        columns=spec.columns,
        rationale=spec.rationale,
        vectorized=frame_lf if frame_condition is not None else None,
        vote=spec.vote,
    )


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
            return _FAILED
        if value is None:
            return ABSTAIN
        return int(value) if isinstance(value, (bool, int, np.integer)) else _NOT_INT


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
    failed = matrix == _FAILED
    failures = {spec.name: int(failed[:, j].sum()) for j, spec in enumerate(lfs)}
    matrix[failed] = ABSTAIN
    bad = (matrix < ABSTAIN) | (matrix >= cardinality)
    if bad.any():
        row, column = (int(axis[0]) for axis in np.nonzero(bad))
        where = f"row id {ids.iloc[row]!r}" if ids is not None else f"row {row}"
        value = "a value that is not an integer" if matrix[row, column] == _NOT_INT else int(matrix[row, column])
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


def majority_vote(matrix: np.ndarray, cardinality: int) -> np.ndarray:
    """Share of votes per class (ties stay ties; rows without votes get a uniform distribution).

    Args:
        matrix: ``L`` (N, m).
        cardinality: C.

    Returns:
        (N, C) vote shares.
    """
    counts = np.stack([(matrix == k).sum(axis=1) for k in range(cardinality)], axis=1).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1), 1.0 / cardinality)


def argmax_random_ties(probabilities: np.ndarray, seed: int) -> np.ndarray:
    """Argmax with ties broken at random (seeded), as Snorkel's ``tie_break_policy="random"``.

    Args:
        probabilities: (N, C).
        seed: Seed of the tie breaks.

    Returns:
        (N,) class indices.
    """
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(0, 1e-9, size=probabilities.shape)
    top = probabilities.max(axis=1, keepdims=True)
    return np.argmax(np.where(np.isclose(probabilities, top, atol=1e-12, rtol=0), 1.0 + jitter, 0.0), axis=1)


def require_two_classes(y_dev: np.ndarray, label_names: list[str], cardinality: int) -> None:
    """The dev set must hold every class to check LFs and estimate the class balance.

    Args:
        y_dev: Dev class indices.
        label_names: Names, for the message.
        cardinality: C.

    Raises:
        EmptyDatasetError: When a class is absent.
    """
    present = set(np.unique(y_dev).tolist())
    missing = [label_names[k] if k < len(label_names) else str(k) for k in range(cardinality) if k not in present]
    if missing:
        raise EmptyDatasetError(
            f"the gold dev set ({len(y_dev)} rows) has no rows of class(es) {missing}: LF accuracies and the "
            "class balance cannot be checked; label more rows of that class or raise split.gold_dev_size (it is "
            "capped at 10% of the training rows)"
        )


def fit_label_model(
    matrix: np.ndarray, cardinality: int, class_balance: list[float] | None, config: Any, seed: int
) -> Any:
    """Fit Snorkel's :class:`~snorkel.labeling.model.LabelModel` on ``L``.

    Args:
        matrix: ``L`` (N, m).
        cardinality: C.
        class_balance: Class prior, or None to estimate it from ``L``.
        config: :class:`frugalml.params.WeakLabelParams`.
        seed: Seed of the fit.

    Returns:
        The fitted label model.
    """
    import torch
    from snorkel.labeling.model import LabelModel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny (mC x mC) problem: threads only add overhead (14 s -> 1 s here)
    try:
        model = LabelModel(cardinality=cardinality, verbose=False, device="cpu")
        model.fit(matrix, class_balance=class_balance, n_epochs=config.label_model_epochs,
                  lr=config.label_model_lr, l2=config.label_model_l2, seed=seed, progress_bar=False)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return model


def _combine(matrix: np.ndarray, model: Any, cardinality: int, prior: np.ndarray) -> np.ndarray:
    if model is None:
        shares = majority_vote(matrix, cardinality)
        return np.where((matrix >= 0).any(axis=1, keepdims=True), shares, prior)
    return np.asarray(model.predict_proba(matrix), dtype=np.float64)


def _accuracy(probabilities: np.ndarray, y: np.ndarray, seed: int) -> float:
    return float((argmax_random_ties(probabilities, seed) == y).mean()) if len(y) else float("nan")


def lf_summary_table(
    lfs: list[LFSpec],
    pool_matrix: np.ndarray,
    dev_matrix: np.ndarray,
    y_dev: np.ndarray,
    *,
    failures: dict[str, int],
    label_names: list[str],
) -> pd.DataFrame:
    """Snorkel's ``LFAnalysis`` on the pool (coverage, overlaps, conflicts) plus dev accuracy per LF.

    Args:
        lfs: The LFs.
        pool_matrix: ``L`` of the pool.
        dev_matrix: ``L`` of the gold dev set.
        y_dev: Dev class indices.
        failures: Rows each LF raised on (pool and dev).
        label_names: Class names, for the polarity column.

    Returns:
        One row per LF.
    """
    from snorkel.labeling import LFAnalysis

    names = [spec.name for spec in lfs]
    table = pd.DataFrame({"lf": names, "family": [spec.family for spec in lfs]})
    if len(pool_matrix):
        analysis = LFAnalysis(pool_matrix)
        table["coverage"] = analysis.lf_coverages()
        table["overlaps"] = analysis.lf_overlaps()
        table["conflicts"] = analysis.lf_conflicts()
        table["polarity"] = [", ".join(label_names[k] for k in p) for p in analysis.lf_polarities()]
    else:
        table[["coverage", "overlaps", "conflicts"]] = np.nan
        table["polarity"] = ""
    votes = dev_matrix >= 0
    table["dev_coverage"] = votes.mean(axis=0) if len(dev_matrix) else np.nan
    table["dev_votes"] = votes.sum(axis=0)
    correct = (dev_matrix == y_dev[:, None]) & votes
    with np.errstate(invalid="ignore", divide="ignore"):
        table["dev_accuracy"] = np.where(votes.sum(axis=0) > 0, correct.sum(axis=0) / votes.sum(axis=0), np.nan)
    table["failures"] = [failures.get(name, 0) for name in names]
    table["rationale"] = [spec.rationale for spec in lfs]
    return table


def leave_one_out(
    pool_matrix: np.ndarray,
    dev_matrix: np.ndarray,
    y_dev: np.ndarray,
    *,
    cardinality: int,
    class_balance: list[float] | None,
    prior: np.ndarray,
    config: Any,
    seed: int,
    baseline: float,
    progress: bool = False,
) -> np.ndarray:
    """Effect of each LF on the label model: dev accuracy with all LFs minus dev accuracy without it.

    Positive: the LF helps; negative: removing it would raise dev accuracy.

    Args:
        pool_matrix: ``L`` of the pool (the label model is refitted without one column at a time).
        dev_matrix: ``L`` of the gold dev set.
        y_dev: Dev class indices.
        cardinality: C.
        class_balance: Prior passed to every fit.
        prior: Distribution of rows without votes under majority vote (as for the baseline).
        config: :class:`frugalml.params.WeakLabelParams`.
        seed: Seed.
        baseline: Dev accuracy with every LF.
        progress: Show a progress bar.

    Returns:
        (m,) accuracy deltas.
    """
    from tqdm.auto import tqdm

    m = pool_matrix.shape[1]
    deltas = np.zeros(m)
    for j in tqdm(range(m), desc="leave-one-out", disable=not progress):
        keep = [k for k in range(m) if k != j]
        model = (fit_label_model(pool_matrix[:, keep], cardinality, class_balance, config, seed)
                 if config.label_model == "snorkel" else None)  # fmt: skip
        deltas[j] = baseline - _accuracy(_combine(dev_matrix[:, keep], model, cardinality, prior), y_dev, seed)
    return deltas


def plot_lf_summary(summary: pd.DataFrame) -> Any:
    """Bars per LF: pool coverage, dev accuracy and leave-one-out effect.

    Args:
        summary: Output of :func:`lf_summary_table` (with ``loo_delta``).

    Returns:
        A matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(summary)
    figure, axes = plt.subplots(1, 3, figsize=(13, 0.28 * rows + 1.5), sharey=True)
    positions = np.arange(rows)
    panels = (("coverage", "pool coverage", "tab:blue"), ("dev_accuracy", "dev accuracy", "tab:green"),
              ("loo_delta", "leave-one-out effect (dev acc.)", "tab:purple"))  # fmt: skip
    for axis, (column, title, colour) in zip(axes, panels):
        values = summary[column].fillna(0).to_numpy() if column in summary else np.zeros(rows)
        colours = [colour if v >= 0 else "tab:red" for v in values]
        axis.barh(positions, values, color=colours)
        axis.set_title(title)
        axis.axvline(0, color="black", linewidth=0.5)
    axes[0].set_yticks(positions, summary["lf"])
    axes[0].invert_yaxis()
    figure.tight_layout()
    return figure


def _empty_outputs(pool: pd.DataFrame, schema: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Any, dict]:
    from frugalml.labels import CONFIDENCE_COLUMN, SOURCE_COLUMN, prob_columns

    extra = [SOURCE_COLUMN, CONFIDENCE_COLUMN, *prob_columns(schema.labels), "lf_votes"]
    empty = pool.iloc[0:0].assign(**{column: pd.Series(dtype=object) for column in extra})
    summary = pd.DataFrame(columns=["lf", "family", "coverage", "dev_accuracy", "loo_delta", "verdict"])
    metrics = {"n_lfs": {"value": 0.0, "step": 0}, "pool_rows": {"value": float(len(pool)), "step": 0}}
    return empty, pool.iloc[0:0].assign(reason=pd.Series(dtype=object)), summary, plot_lf_summary(summary), metrics


def _unlabelled_outputs(
    pool: pd.DataFrame, schema: Any, reason: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Any, dict]:
    """Nothing labelled: every pool row goes to ``weak_abstained`` with ``reason``."""
    weak, _, summary, figure, metrics = _empty_outputs(pool, schema)
    abstained = pool.reset_index(drop=True).assign(reason=reason)
    abstained[schema.label_column] = pd.array([pd.NA] * len(abstained), dtype="Int64")
    logger.warning("weak_label: %d pool row(s) not labelled: %s", len(pool), reason)
    metrics.update(weak_labelled={"value": 0.0, "step": 0}, abstained={"value": float(len(pool)), "step": 0})
    return weak, abstained, summary, figure, metrics


def weak_label(
    pool: pd.DataFrame, dev_gold: pd.DataFrame, params: dict[str, Any], data: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Any, dict[str, Any]]:
    """Label the unlabelled pool with LFs and a label model.

    Args:
        pool: Unlabelled rows (``unlabelled_pool``; a label column, if any, is ignored).
        dev_gold: The small hand-labelled dev set (LF accuracies, class balance, leave-one-out).
        params: ``params:weak_label`` (see :class:`frugalml.params.WeakLabelParams`).
        data: ``params:data``.
        seed: ``params:seed``.

    Returns:
        ``weak_labels`` (pool rows with the hard label, ``label_source``, ``label_confidence`` and
        ``label_prob_<value>`` columns), ``weak_abstained`` (rows not labelled, with ``reason``), the LF
        summary table, its plot, and metrics.

    Raises:
        EmptyDatasetError: When every LF abstains on every pool row and every gold dev row (the LFs do not
            fit the data at all).
        LabelingFunctionError: When an LF returns an invalid value or fails on too many rows.
        ParameterError, SchemaError: On an unknown LF or applier, or columns the LFs need.
    """
    import time

    from frugalml.labels import CONFIDENCE_COLUMN, SOURCE_COLUMN, WEAK, prob_columns
    from frugalml.nodes.lf_library import lf_view
    from frugalml.nodes.split import id_column_of
    from frugalml.nodes.train import encode_labels
    from frugalml.params import DataSchema, WeakLabelParams, parse_params

    config = parse_params(WeakLabelParams, params, name="weak_label")
    schema = parse_params(DataSchema, data, name="data")
    cardinality = len(schema.labels)
    label_names = schema.label_names or [str(v) for v in schema.labels]
    lfs = create_lfs(config.lfs, label_names, columns=pool.columns if len(pool) else dev_gold.columns)
    if not lfs:
        if len(pool):
            return _unlabelled_outputs(pool, schema, (
                f"no_fitting_lf: weak_label.lfs {config.lfs} selects no labelling function that fits this data "
                f"(labels {label_names}, columns {sorted(pool.columns)[:12]}): register LFs for it "
                "(docs/weak_labels.md), or label these rows"
            ))  # fmt: skip
        logger.warning("weak_label: no labelling function fits this data and the pool is empty; nothing to label")
        return _empty_outputs(pool, schema)
    unchecked = (
        "the gold dev set is empty, so the labelling functions cannot be checked; label more rows or raise "
        "split.gold_dev_size (it is capped at 10% of the training rows)"
    )
    if not dev_gold.empty:
        y_dev = encode_labels(dev_gold[schema.label_column], schema)
        try:
            require_two_classes(y_dev, label_names, cardinality)
            unchecked = ""
        except EmptyDatasetError as error:
            unchecked = str(error)
    if unchecked:
        if pool.empty:
            logger.warning("weak_label: nothing to label, and %s", unchecked)
            return _empty_outputs(pool, schema)
        return _unlabelled_outputs(pool, schema, f"gold_dev_too_small: {unchecked}")
    dev_balance = [float(p) for p in np.bincount(y_dev, minlength=cardinality) / len(y_dev)]
    class_balance: list[float] | None
    if config.class_balance == "dev":
        class_balance = dev_balance
    elif config.class_balance == "estimate":
        class_balance = None
    else:
        class_balance = list(config.class_balance)
        if len(class_balance) != cardinality:
            raise ParameterError(
                f"weak_label.class_balance has {len(class_balance)} entries, data.labels has {cardinality}"
            )
    ids = id_column_of(schema)
    apply = {"cardinality": cardinality, "applier": config.applier, "n_parallel": config.n_parallel,
             "max_failure_share": config.max_lf_failure_share, "progress": config.progress}  # fmt: skip
    context = pd.concat([pool, dev_gold.drop(columns=[schema.label_column])], ignore_index=True)
    dev_matrix, dev_failures = apply_lfs(lf_view(dev_gold, schema.text_columns, context), lfs,
                                         ids=dev_gold.get(ids), **apply)  # fmt: skip
    started = time.perf_counter()
    pool_view = lf_view(pool, schema.text_columns, context)
    pool_matrix, pool_failures = apply_lfs(pool_view, lfs, ids=pool.get(ids), **apply)
    apply_seconds = time.perf_counter() - started
    failures = {name: dev_failures[name] + pool_failures[name] for name in dev_failures}
    covered = (pool_matrix >= 0).any(axis=1)
    if len(pool) and not covered.any() and not (dev_matrix >= 0).any():
        raise EmptyDatasetError(
            f"every labelling function abstained on all {len(pool)} pool rows and all {len(dev_gold)} gold dev "
            f"rows: the LFs {config.lfs} do not fit this data (check the text columns, or register LFs for it)"
        )
    prior = np.asarray(class_balance if class_balance is not None else dev_balance)
    model = None
    if config.label_model == "snorkel" and covered.any():
        model = fit_label_model(pool_matrix, cardinality, class_balance, config, seed)
        if class_balance is None:  # the balance the label model estimated
            prior = np.asarray(getattr(model, "p", prior), dtype=np.float64)
    dev_probabilities = _combine(dev_matrix, model, cardinality, prior)
    dev_accuracy = _accuracy(dev_probabilities, y_dev, seed)
    dev_majority = _accuracy(_combine(dev_matrix, None, cardinality, prior), y_dev, seed)

    summary = lf_summary_table(lfs, pool_matrix, dev_matrix, y_dev, failures=failures, label_names=label_names)
    if config.leave_one_out and covered.any() and len(lfs) > 1:
        summary["loo_delta"] = leave_one_out(
            pool_matrix,
            dev_matrix,
            y_dev,
            cardinality=cardinality,
            class_balance=class_balance,
            prior=prior,
            config=config,
            seed=seed,
            baseline=dev_accuracy,
            progress=config.progress,
        )
    else:
        summary["loo_delta"] = np.nan
    summary["verdict"] = np.select([summary["loo_delta"] > 0, summary["loo_delta"] < 0], ["helps", "hurts"], "neutral")

    probabilities = _combine(pool_matrix, model, cardinality, prior) if len(pool) else np.zeros((0, cardinality))
    hard = argmax_random_ties(probabilities, seed) if len(pool) else np.zeros(0, dtype=np.int64)
    labelled = pool.reset_index(drop=True).copy()
    labelled[schema.label_column] = pd.array(np.asarray(schema.labels)[hard], dtype="Int64")
    labelled[SOURCE_COLUMN] = WEAK
    labelled[CONFIDENCE_COLUMN] = probabilities.max(axis=1) if len(pool) else np.zeros(0)
    for k, column in enumerate(prob_columns(schema.labels)):
        labelled[column] = probabilities[:, k] if len(pool) else np.zeros(0)
    labelled["lf_votes"] = (pool_matrix >= 0).sum(axis=1)
    reasons = pd.Series("", index=labelled.index, dtype=object)
    if config.abstain_policy == "drop":
        reasons[~covered] = "all labelling functions abstained"
    else:  # prior: keep them, labelled with the class balance (a weak, honest soft label)
        labelled.loc[~covered, prob_columns(schema.labels)] = np.tile(prior, (int((~covered).sum()), 1))
        labelled.loc[~covered, CONFIDENCE_COLUMN] = float(prior.max())
        labelled.loc[~covered, schema.label_column] = schema.labels[int(prior.argmax())]
    low = (labelled[CONFIDENCE_COLUMN] < config.min_confidence) & (reasons == "")
    reasons[low] = f"label confidence below weak_label.min_confidence {config.min_confidence}"
    rejected = reasons != ""
    abstained = labelled[rejected].assign(reason=reasons[rejected].to_numpy())
    abstained[schema.label_column] = pd.array([pd.NA] * len(abstained), dtype="Int64")
    weak = labelled[~rejected].reset_index(drop=True)

    rate = len(pool) / apply_seconds if apply_seconds > 0 and len(pool) else 0.0
    metrics = {
        "n_lfs": len(lfs),
        "pool_rows": len(pool),
        "coverage": float(covered.mean()) if len(pool) else 0.0,
        "overlap": float(((pool_matrix >= 0).sum(axis=1) > 1).mean()) if len(pool) else 0.0,
        "weak_labelled": len(weak),
        "abstained": int((~covered).sum()),
        "low_confidence": int(low.sum()),
        "dev_label_model_accuracy": dev_accuracy,
        "dev_majority_vote_accuracy": dev_majority,
        "apply_rows_per_s": rate,
        "lf_failures": int(sum(failures.values())),
    }
    logger.info("weak labels: %d of %d pool rows labelled (coverage %.3f), dev accuracy %.3f (majority %.3f)",
                len(weak), len(pool), metrics["coverage"], dev_accuracy, dev_majority)  # fmt: skip
    figure = plot_lf_summary(summary)
    return (
        weak,
        abstained.reset_index(drop=True),
        summary,
        figure,
        {k: {"value": float(v), "step": 0} for k, v in metrics.items()},
    )
