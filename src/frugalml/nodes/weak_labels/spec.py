"""What a labelling function is, and the registry that names them (Snorkel's ``labeling.lf`` in frugalml's shape).

An LF maps one row to a class index in ``0..C-1`` (the position of the label in ``params:data.labels``) or
:data:`ABSTAIN` (-1). Users register their own with :func:`register_lf` and list them in
``params:weak_label.lfs``; the library's rules (:mod:`.library`) register themselves with :func:`register_spec`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from frugalml.registry import Registry

ABSTAIN = -1
FAILED_VOTE = 1_000_003  # what a guarded LF returns when it raised: kept apart from abstains, then counted
NOT_INT_VOTE = 1_000_005  # what a guarded LF returns when the LF returned something that is not an integer


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


LABELLING_FUNCTIONS: Registry[LFSpec] = Registry("labelling function", key="weak_label.lfs")


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
        spec = LFSpec(
            name=key,
            function=function,
            family=family,
            columns=tuple(columns),
            rationale=" ".join((function.__doc__ or "").split()),
            vectorized=vectorized,
        )
        LABELLING_FUNCTIONS.add(key, spec, replace=replace)
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
    LABELLING_FUNCTIONS.add(spec.name, spec, replace=replace)


def unregister_lf(name: str) -> None:
    """Remove an LF from the registry (tests, notebooks).

    Args:
        name: LF name.
    """
    LABELLING_FUNCTIONS.remove(name)
