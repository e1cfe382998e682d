"""Who the running governance server says a caller is: credentials checked over HTTP, never trusted locally.

:func:`authenticated_user` asks ``GET /api/2.0/mlflow/users/current``: :mod:`frugalml.governance.rbac` takes the
acting user from it, and provisioning (:mod:`frugalml.governance.server`) checks the admin's and users' passwords
with it. It imports nothing of the governance package, so both can use it without an import cycle.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

from frugalml.errors import AccessDenied, GovernanceError

#: Needs authentication and answers who the caller is (``mlflow.server.auth.routes.GET_CURRENT_USER``).
CURRENT_USER_PATH = "/api/2.0/mlflow/users/current"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def http_get(url: str, auth: tuple[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """``GET url`` (Basic auth when ``auth`` is given), never through a proxy: ``(HTTP status, body)``."""
    request = urllib.request.Request(url, method="GET")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def authenticated_user(uri: str, username: str | None, password: str | None) -> str:
    """Verify credentials against the server and return the user it authenticated.

    Asks ``GET /api/2.0/mlflow/users/current``, which every authenticated user may call.

    Args:
        uri: The server, e.g. ``http://127.0.0.1:5001``.
        username: The user (usually ``$MLFLOW_TRACKING_USERNAME``).
        password: The password (usually ``$MLFLOW_TRACKING_PASSWORD``); never logged nor put in an error.

    Returns:
        The user name the server authenticated.

    Raises:
        AccessDenied: No credentials, or the server refused them (HTTP 401).
        GovernanceError: The server cannot be reached or answered something else.
    """
    if not username or not password:
        who = f"user {username!r} has no password" if username else "no user name"
        raise AccessDenied(
            f"unauthenticated: {who} for the MLflow server {uri}; "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    try:
        status, body = http_get(uri.rstrip("/") + CURRENT_USER_PATH, auth=(username, password))
    except OSError as error:
        raise GovernanceError(f"cannot reach the MLflow server {uri}: {error}") from error
    if status == 401:
        raise AccessDenied(
            f"the MLflow server {uri} refused the credentials of user {username!r} (wrong user name or password)"
        )
    if status != 200:
        raise GovernanceError(f"the MLflow server {uri} answered HTTP {status} to {CURRENT_USER_PATH}")
    return str(json.loads(body)["user"]["username"])
