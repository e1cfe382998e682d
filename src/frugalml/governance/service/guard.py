"""The registry guard: protected aliases and stage transitions move, and runs are deleted, only through the
service's approved operations; MLflow's REST API refuses them for everyone, admins included, and an ``audit.head``
run tag may only hold a head this witness signed."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from frugalml.governance.service.lifecycle import RequestLifecycle
from frugalml.governance.service.state import ServiceError

#: REST routes the guard inspects (both ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow``, preview prefix too).
GUARDED_ROUTES = re.compile(
    r"/(?:api|ajax-api)/\d\.0/(?:preview/)?mlflow/"
    r"(registered-models/alias|model-versions/transition-stage|model-versions/delete|registered-models/delete|"
    r"registered-models/rename|runs/delete|experiments/delete|runs/set-tag|runs/delete-tag|runs/log-batch|"
    r"runs/create)$"
)
ANCHOR_TAG = "audit.head"


#: Governed routes refused outright: deleting goes through the CLI's two-person flow.
_DELETE_REFUSALS = {
    "runs/delete": "runs are deleted only through `frugalml runs delete` (an approved delete_runs request)",
    "experiments/delete": "deleting an experiment deletes its runs: refused on a governed server (use `frugalml runs "
    "delete`)",
}


def _values(sources: Sequence[dict[str, Any]], key: str) -> list[Any]:
    """Every value of ``key`` in every place MLflow may read it from."""
    return [source[key] for source in sources if key in source]


def _move_refusal(route: str, sources: list[dict[str, Any]], protected: set[str]) -> str | None:
    """Why setting a protected alias, or a stage transition to Production/Staging, is refused (None: it is not).

    A request that names no alias (or no stage) is refused too: fail closed.
    """
    if route == "registered-models/alias":
        aliases = _values(sources, "alias")
        if not aliases or any(str(v).strip().lower() in protected for v in aliases):
            return ("the protected aliases (" + ", ".join(sorted(protected)) + ") move only through `frugalml "
                    "promote` (an approved promote_production request and a passing checklist)")  # fmt: skip
        return None
    stages = _values(sources, "stage")
    if not stages or any(str(v).strip().lower() in ("production", "staging") for v in stages):
        return "stage transitions to Production/Staging are refused: use `frugalml promote` (aliases)"
    return None


class RegistryGuard(RequestLifecycle):
    """Promotion and run deletion under an approved request, and the guard of MLflow's REST routes."""

    def promote(self, user: str, model: str, version: str, request_id: str) -> dict[str, Any]:
        """Set the production alias under an approved ``promote_production`` request (the only way).

        Args:
            user: The requester of the approval (needs ``promote``).
            model: Registered model.
            version: Its version.
            request_id: The approved request.

        Returns:
            The receipt.

        Raises:
            ServiceError: Refusals of :meth:`consume`, 404 for an unknown model version.
        """
        from mlflow.exceptions import MlflowException
        from mlflow.server.handlers import _get_model_registry_store

        self._check(user, "promote")
        store = _get_model_registry_store()
        try:
            store.get_model_version(model, str(version))
        except MlflowException as error:
            raise ServiceError(404, f"no model version {model} v{version}: {error.message}") from None
        receipt = self.consume(user, request_id, "promote_production", {"model": model, "version": str(version)})
        store.set_registered_model_alias(name=model, alias="production", version=str(version))
        return receipt

    def delete_runs(self, user: str, run_ids: list[str], request_id: str) -> dict[str, Any]:
        """Delete runs under an approved ``delete_runs`` request naming exactly these runs.

        Args:
            user: The requester (needs ``delete_runs``).
            run_ids: The runs.
            request_id: The approved request.

        Returns:
            The receipt.
        """
        from mlflow.server.handlers import _get_tracking_store

        self._check(user, "delete_runs")
        store = _get_tracking_store()
        for run_id in run_ids:
            store.get_run(run_id)  # exists (raises otherwise)
        receipt = self.consume(user, request_id, "delete_runs", {"run_ids": ",".join(run_ids)})
        for run_id in run_ids:
            store.delete_run(run_id)
        return receipt

    def guard(self, path: str, method: str, sources: list[dict[str, Any]] | None) -> str | None:
        """Why a REST call that would move a protected alias, a stage, delete runs or touch an audit anchor is
        refused, or None.

        Args:
            path: The request path.
            method: HTTP method.
            sources: Every place MLflow may read the parameters from (query string, the JSON body however it was
                sent); None when a body was sent that cannot be parsed (refused: fail closed).

        Returns:
            A refusal message, or None to let the call through.
        """
        match = GUARDED_ROUTES.search(path)
        if match is None or method not in ("POST", "DELETE", "PATCH", "PUT"):
            return None
        route = match.group(1)
        if sources is None:
            return f"{route}: a request body that cannot be parsed as JSON is refused on a governed route"
        protected = {a.lower() for a in self.config.registry.protected_aliases}
        if route in ("registered-models/alias", "model-versions/transition-stage"):
            return _move_refusal(route, sources, protected)
        if route in _DELETE_REFUSALS:
            return _DELETE_REFUSALS[route]
        if route in ("runs/set-tag", "runs/delete-tag", "runs/log-batch", "runs/create"):
            return self._anchor_tag_problem(route, sources)
        return self._model_refusal(route, sources, protected)

    def _model_refusal(self, route: str, sources: Sequence[dict[str, Any]], protected: set[str]) -> str | None:
        """Why deleting or renaming a model, or deleting a version, is refused: it holds a protected alias."""
        names = {str(v) for v in _values(sources, "name")}
        if len(names) != 1:
            return f"{route}: exactly one model name is required on a governed route"
        held = self._protected_versions(names.pop(), protected)
        if held is None:
            return None  # no such model: MLflow answers itself
        if route == "model-versions/delete":
            try:
                versions = {int(str(v).strip()) for v in _values(sources, "version")}
            except ValueError:
                return "model-versions/delete: the version must be a whole number"
            hit = sorted(alias for alias, version in held.items() if version in versions)
            return f"that version holds the protected alias(es) {hit}: it cannot be deleted" if hit else None
        if held:
            return f"the model holds the protected alias(es) {sorted(held)}: it cannot be deleted or renamed"
        return None

    @staticmethod
    def _protected_versions(name: str, protected: set[str]) -> dict[str, int] | None:
        from mlflow.exceptions import MlflowException
        from mlflow.server.handlers import _get_model_registry_store

        try:
            model = _get_model_registry_store().get_registered_model(name)
        except MlflowException:
            return None
        return {alias: int(v) for alias, v in (model.aliases or {}).items() if alias.lower() in protected}

    def _anchor_tag_problem(self, route: str, sources: list[dict[str, Any]]) -> str | None:
        """An ``audit.head`` run tag may only be set to a head this witness signed; never deleted."""
        from frugalml.governance.signing import TrustedKeys

        tags: list[tuple[Any, Any]] = []
        for source in sources:
            if route == "runs/delete-tag" and str(source.get("key")) == ANCHOR_TAG:
                return f"the {ANCHOR_TAG} tag is an audit anchor: it cannot be deleted"
            if route == "runs/set-tag":
                tags.append((source.get("key"), source.get("value")))
            for tag in source.get("tags") or [] if route in ("runs/log-batch", "runs/create") else []:
                if isinstance(tag, dict):
                    tags.append((tag.get("key"), tag.get("value")))
        trusted = TrustedKeys()
        trusted.add("witness", self.key.public_text)
        for key, value in tags:
            if str(key) != ANCHOR_TAG:
                continue
            try:
                head = json.loads(str(value))
            except (ValueError, RecursionError):
                head = None
            if trusted.check(head, roles={"witness"}) is not None:
                return f"the {ANCHOR_TAG} tag may only hold a tree head signed by this governance server"
        return None
