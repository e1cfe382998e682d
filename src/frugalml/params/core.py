"""The parameter machinery: strict models, the registry of top-level blocks, merging, validation.

Every top-level key of ``parameters*.yml`` is a *block* with its own schema, registered with
:func:`register_params` (``@register_params("train") class TrainParams(Strict)``) in its stage's module of
this package. :func:`validate_parameters` checks the merged parameters against every registered block, so a
new stage adds its block in its own file and imports it in ``params/__init__.py``: nothing else changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from frugalml.errors import ParameterError
from frugalml.registry import Registry


class Strict(BaseModel):
    """Base model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


#: top-level key -> the schema of its block
PARAMETER_BLOCKS: Registry[type[BaseModel]] = Registry("parameters block")

B = TypeVar("B", bound=type[BaseModel])


def register_params(key: str, *, replace: bool = False) -> Callable[[B], B]:
    """Register the schema of the top-level parameters block ``key`` (a class decorator).

    Args:
        key: The block's key in ``parameters*.yml`` (``params:<key>`` in pipelines).
        replace: Allow replacing the schema of a registered block.

    Returns:
        The decorator (returns the class unchanged).

    Raises:
        ParameterError: When ``key`` is registered already and ``replace`` is false.
    """

    def decorator(model: B) -> B:
        PARAMETER_BLOCKS.add(key, model, replace=replace)
        _ROOTS.clear()
        return model

    return decorator


class SharedParams(Strict):
    """The keys every project has besides the stage blocks: ``seed``, ``data``, ``tracking``, ``profile``."""

    seed: int = 0
    profile: bool = False


_ROOTS: dict[tuple[tuple[str, type[BaseModel]], ...], type[Strict]] = {}


def root_model() -> type[Strict]:
    """The schema of a project's whole parameters: the shared keys plus every registered block."""
    blocks = tuple(sorted(PARAMETER_BLOCKS.items().items()))
    if blocks not in _ROOTS:
        fields: dict[str, Any] = {key: (model, Field(default_factory=model)) for key, model in blocks}
        _ROOTS[blocks] = create_model("FrugalParams", __base__=SharedParams, **fields)  # type: ignore[call-overload]
    return _ROOTS[blocks]


def _format_error(error: ValidationError, prefix: str) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown parameter '{where}' (check its spelling)")
        else:
            lines.append(f"parameter '{where}': {item['msg']} (got {item.get('input')!r})")
    return "; ".join(lines)


M = TypeVar("M", bound=BaseModel)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``, nested dicts key by key (Kedro's soft merge).

    Args:
        base: The full block.
        override: A partial block.

    Returns:
        A new dict; ``base`` and ``override`` are not modified.
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_params(model: type[M], params: Any, *, name: str = "") -> M:
    """Validate one parameters block against its schema.

    Args:
        model: The pydantic schema class.
        params: A dict (as Kedro passes ``params:<name>``) or an instance of ``model``.
        name: The block's key, used in error messages.

    Returns:
        The validated parameters object.

    Raises:
        ParameterError: Naming each bad or unknown key.
    """
    if isinstance(params, model):
        return params
    try:
        return model.model_validate(params if params is not None else {})
    except ValidationError as error:
        raise ParameterError(_format_error(error, name)) from None


def load_project_parameters(conf_source: str | Path, env: str | None = None) -> dict[str, Any]:
    """The merged parameters of a project's ``conf`` folder, as ``kedro run --env ENV`` would see them.

    Args:
        conf_source: The ``conf`` folder.
        env: An environment folder layered over ``base`` (``None``: base only).

    Returns:
        The merged parameters dict (not yet validated).
    """
    from frugalml.config import load_config  # the project's one config reader

    return dict(load_config("parameters", conf_source, env, default={}) or {})


def validate_parameters(params: dict[str, Any]) -> Any:
    """Validate the merged parameters of a run.

    Args:
        params: ``context.params`` (all parameters files plus runtime ``--params``).

    Returns:
        The validated parameters.

    Raises:
        ParameterError: Naming each bad or unknown key, before any node runs.
    """
    return parse_params(root_model(), params)
