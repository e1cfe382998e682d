"""The Flask side of the service: the process's :class:`GovernanceService` (from the environment), the
``/api/2.0/frugalml/`` routes and the guard of MLflow's REST routes, installed behind MLflow's ``basic-auth``."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from frugalml.governance.service.core import GovernanceService
from frugalml.governance.service.guard import GUARDED_ROUTES
from frugalml.governance.service.state import ServiceError

GOVERNANCE_DIR_ENV = "FRUGALML_GOVERNANCE_DIR"
GOVERNANCE_FILE_ENV = "FRUGALML_GOVERNANCE_FILE"
API = "/api/2.0/frugalml"


_SERVICE: GovernanceService | None = None


def service() -> GovernanceService:
    """The process's service, created from the environment on first use.

    Returns:
        The service.
    """
    global _SERVICE  # noqa: PLW0603 - one service per server process
    if _SERVICE is None:
        directory = os.environ.get(GOVERNANCE_DIR_ENV) or str(Path.cwd() / "governance")
        _SERVICE = GovernanceService(directory, os.environ.get(GOVERNANCE_FILE_ENV))
    return _SERVICE


def _install(app: Any) -> None:  # noqa: C901 - one place wires every route
    from flask import g, jsonify, request

    def user() -> str:
        name = getattr(g, "mlflow_authenticated_user", None) or (request.authorization.username
                                                                  if request.authorization else None)  # fmt: skip
        if not name:
            raise ServiceError(401, "authentication required")
        return str(name)

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}

    def answer(function: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return jsonify(function())
        except ServiceError as error:
            return jsonify({"error_code": "FRUGALML_GOVERNANCE", "message": error.message}), error.status
        except MlflowException as error:
            return jsonify({"error_code": "FRUGALML_GOVERNANCE", "message": error.message}), 404
        except (KeyError, TypeError, ValueError, OverflowError, sqlite3.Error) as error:
            return jsonify({"error_code": "FRUGALML_GOVERNANCE", "message": f"bad request: {error}"}), 400

    routes = {
        ("GET", "/witness"): lambda: service().witness_state(),
        ("POST", "/witness/anchor"): lambda: service().witness_anchor(user(), body().get("records")),
        ("POST", "/witness/purge"): lambda: service().witness_purge(user(), body().get("before")),
        ("GET", "/governance"): lambda: service().governance(),
        ("POST", "/governance/accept"): lambda: service().accept_governance(
            user(), str(body().get("request_id")), str(body().get("digest"))),
        ("POST", "/requests"): lambda: service().request(user(), str(body().get("operation")), body().get("details")),
        ("GET", "/requests"): lambda: {"requests": service().list()},
        ("POST", "/requests/get"): lambda: service().get(str(body().get("request_id"))),
        ("POST", "/requests/approve"): lambda: service().approve(
            user(), str(body().get("request_id")), str(body().get("digest"))),
        ("POST", "/requests/consume"): lambda: service().consume(
            user(), str(body().get("request_id")), str(body().get("operation")), body().get("expect") or {}),
        ("POST", "/registry/promote"): lambda: service().promote(
            user(), str(body().get("model")), str(body().get("version")), str(body().get("request_id"))),
        ("POST", "/runs/delete"): lambda: service().delete_runs(
            user(), [str(r) for r in body().get("run_ids") or []], str(body().get("request_id"))),
    }  # fmt: skip
    import mlflow.server.auth as auth_module

    basic_auth: Any = auth_module  # its route tuples are typed by their literals (tuple[str, str]): extended here

    # our handlers authorise by governance role themselves: tell basic-auth's fail-closed gate (pinned MLflow
    # 3.17.2; the tuple is its list of routes whose handler authorises internally), exact paths only
    ours = tuple(sorted({path.replace(API, "/frugalml", 1) for _, path in
                         ((m, API + p) for m, p in routes)}))  # fmt: skip
    basic_auth._HANDLER_INTERNAL_AUTHZ_SUFFIXES = (*basic_auth._HANDLER_INTERNAL_AUTHZ_SUFFIXES, *ours)
    # the witness's public key and head are public, so a client can check the pinned key before it sends a password
    basic_auth._PUBLIC_ROUTE_SUFFIXES = (*basic_auth._PUBLIC_ROUTE_SUFFIXES, "/frugalml/witness")
    for (method, path), function in routes.items():
        endpoint = "frugalml_" + method.lower() + path.replace("/", "_")
        app.add_url_rule(API + path, endpoint=endpoint, view_func=lambda f=function: answer(f), methods=[method])

    def sources() -> list[dict[str, Any]] | None:
        """The parameters as MLflow may read them: query string, and the body parsed whatever its Content-Type,
        a JSON string inside it decoded again (None: a body that cannot be parsed)."""
        out: list[dict[str, Any]] = [request.args.to_dict()]
        raw = request.get_data(cache=True)
        if raw.strip():
            try:
                data: Any = json.loads(raw)
                if isinstance(data, str):
                    data = json.loads(data)
            except (ValueError, RecursionError):
                return None
            if not isinstance(data, dict):
                return None
            out.append(data)
        return out

    def guard() -> Any:
        if request.path.startswith(API) or GUARDED_ROUTES.search(request.path) is None:
            return None
        message = service().guard(request.path, request.method, sources())
        if message is None:
            return None
        return jsonify({"error_code": "PERMISSION_DENIED", "message": message}), 403

    app.before_request(guard)


def create_app(app: Any = None) -> Any:
    """The ``frugalml`` MLflow app: basic-auth plus the governance routes and the registry guard.

    Args:
        app: MLflow's Flask app (default: ``mlflow.server.app``).

    Returns:
        What MLflow's ``basic-auth`` factory returns (a Flask or FastAPI app), with the routes installed.
    """
    from mlflow.server import app as mlflow_app
    from mlflow.server.auth import create_app as basic_auth

    flask_app = app if app is not None else mlflow_app
    service()  # create the key and the database before the first request
    wrapped = basic_auth(flask_app)
    _install(flask_app)  # after basic-auth: its before_request authenticates before the guard runs
    return wrapped
