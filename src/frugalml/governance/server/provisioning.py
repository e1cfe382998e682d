"""Provisioning: the governance users on the MLflow server, and their permissions by role.

:func:`provision` makes the server's users match ``users`` in governance.yml (created, password reset when it
no longer works, MLflow admin exactly when the user has the ``admin`` role), creates the experiment, and grants
each user the permission ``mlflow_permissions`` maps their roles to, on the experiment and the registry models.
It is idempotent: a second run changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from frugalml.errors import AccessDenied, GovernanceError
from frugalml.governance.authentication import authenticated_user
from frugalml.governance.rbac import (
    DEFAULT_MLFLOW_PERMISSIONS,
    PERMISSION_RANK,
    GovernanceConfig,
    parse_governance,
)
from frugalml.governance.server.passwords import check_password, password_env_var

logger = logging.getLogger("frugalml.governance.server")  # one logger for the whole server package

#: The default governance role -> MLflow permission map (``mlflow_permissions`` in governance.yml overrides it;
#: ``admin`` users are MLflow admins). Kept under its old name for code that imported it from here.
ROLE_EXPERIMENT_PERMISSIONS = dict(DEFAULT_MLFLOW_PERMISSIONS)
#: ``(resource type, id)``: the experiment, then each registry model, where a user gets their roles' permission.
_Resource = tuple[str, str]


def provision(
    uri: str,
    governance: GovernanceConfig | Mapping[str, Any],
    *,
    admin_password: str,
    passwords: Mapping[str, str],
    experiment_name: str = "frugalml",
    registered_models: Iterable[str] = ("frugalml-text-classifier",),
    admin_username: str = "admin",
) -> dict[str, Any]:
    """Create the governance users on the server and grant experiment permissions by role. Idempotent.

    Every user under ``governance["users"]`` with a password in ``passwords`` is created (or its password
    reset when it no longer works); users with the ``admin`` role become MLflow admins (and others stop
    being admins); the experiment is created if missing; each user gets the highest experiment permission
    of their roles (``mlflow_permissions`` in governance.yml;
    :data:`ROLE_EXPERIMENT_PERMISSIONS` when it has none). The admin itself is created by MLflow at start.
    A user without a password who already exists keeps their password but still gets their permissions.

    Args:
        uri: The server.
        governance: The governance config, or a parsed governance.yml (``users``: user -> roles;
            ``mlflow_permissions``: role -> MLflow permission, validated, the defaults when absent).
        admin_password: The admin's password (the one the auth database was created with).
        passwords: User -> password (see :func:`passwords_from_env`); never logged.
        experiment_name: The experiment to create and grant on.
        registered_models: Registry models each user gets the same permission on.
        admin_username: The admin's user name.

    Returns:
        ``created``, ``updated``, ``unchanged`` and ``skipped`` (no password) user lists, the
        ``experiment_id`` and ``permissions`` (user -> permission granted on it).

    Raises:
        AccessDenied: The server refused the admin's credentials.
        GovernanceError: A refused password or a server error.
        ParameterError: ``mlflow_permissions`` names a permission MLflow does not have.
    """
    from mlflow.server import get_app_client

    users, permissions = _users_and_permissions(governance)
    summary: dict[str, Any] = {"created": [], "updated": [], "unchanged": [], "skipped": [], "permissions": {}}
    _check_admin(uri, admin_username, admin_password)
    with _tracking_credentials(admin_username, admin_password):
        auth = get_app_client("basic-auth", tracking_uri=uri)
        members: dict[str, list[str]] = {}
        for name, listed in users.items():
            if name == admin_username:
                continue
            roles = list(listed or [])
            outcome = _sync_user(auth, uri, name, roles, passwords.get(name))
            if outcome != "skipped":
                members[name] = roles
            if outcome != "unchanged":
                summary[outcome].append(name)
        summary["experiment_id"] = _ensure_experiment(uri, experiment_name)
        resources = [("experiment", summary["experiment_id"])]
        resources += [("registered_model", model) for model in registered_models]
        for name, roles in members.items():
            wanted = experiment_permission(roles, permissions)
            if "admin" in roles or wanted is None:
                continue  # admins may do anything; users without a mapped role get the default permission
            if _grant(auth, name, resources, wanted) and name not in summary["created"] + summary["updated"]:
                summary["updated"].append(name)
            summary["permissions"][name] = wanted
        summary["unchanged"] = [n for n in members if n not in summary["created"] and n not in summary["updated"]]
    logger.info(
        "provisioned %s: created %s, updated %s, unchanged %s, skipped (no password) %s",
        uri,
        summary["created"],
        summary["updated"],
        summary["unchanged"],
        summary["skipped"],
    )
    return summary


def _users_and_permissions(
    governance: GovernanceConfig | Mapping[str, Any],
) -> tuple[Mapping[str, list[str]], dict[str, str]]:
    """``users`` and the validated ``mlflow_permissions`` of a config or of a parsed governance.yml.

    A raw mapping is not validated as a whole (a partial one, e.g. only ``users``, provisions those users);
    its ``mlflow_permissions``, when present, is validated like governance.yml's.
    """
    if isinstance(governance, GovernanceConfig):
        return governance.users, dict(governance.mlflow_permissions)
    users: Mapping[str, list[str]] = governance.get("users") or {}
    if governance.get("mlflow_permissions") is None:
        return users, dict(DEFAULT_MLFLOW_PERMISSIONS)
    return users, dict(parse_governance({"mlflow_permissions": governance["mlflow_permissions"]}).mlflow_permissions)


def experiment_permission(roles: Iterable[str], permissions: Mapping[str, str]) -> str | None:
    """The highest MLflow permission ``permissions`` maps any of ``roles`` to.

    Args:
        roles: A user's governance roles.
        permissions: Role -> MLflow permission (``mlflow_permissions`` in governance.yml).

    Returns:
        The permission, or None when no role is mapped (the user gets the server's default permission).
    """
    granted = [permissions[role] for role in roles if role in permissions]
    return max(granted, key=PERMISSION_RANK.__getitem__) if granted else None


def _check_admin(uri: str, admin_username: str, admin_password: str) -> None:
    """Refuse to provision with admin credentials the server does not accept."""
    try:
        authenticated_user(uri, admin_username, admin_password)
    except AccessDenied as error:
        raise AccessDenied(
            f"{error}; the admin password is the one the server's auth database was first created with"
        ) from error


def _existing_user(auth: Any, name: str) -> Any:
    """The server's user ``name``, or None when it has none."""
    from mlflow.exceptions import RestException

    try:
        return auth.get_user(name)
    except RestException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise GovernanceError(f"cannot look up MLflow user {name!r}: {error.message}") from error
        return None


def _sync_user(auth: Any, uri: str, name: str, roles: list[str], password: str | None) -> str:
    """Create or update one user (password, admin flag): ``created``, ``updated``, ``unchanged`` or ``skipped``.

    A password is checked (:func:`check_password`) before anything about the user changes; a user who does not
    exist yet and has no password is skipped (a warning names the variable to set).
    """
    if password:
        check_password(name, password, source=password_env_var(name))
    user = _existing_user(auth, name)
    if user is None:
        if not password:
            logger.warning("MLflow user %r not created: set %s", name, password_env_var(name))
            return "skipped"
        auth.create_user(name, password)
        outcome, is_admin = "created", False
    else:
        outcome, is_admin = "unchanged", bool(user.is_admin)
        if password and not _credentials_work(uri, name, password):
            auth.update_user_password(name, password)
            outcome = "updated"
    if is_admin != ("admin" in roles):
        auth.update_user_admin(name, "admin" in roles)
        outcome = "updated" if outcome == "unchanged" else outcome
    return outcome


def _ensure_experiment(uri: str, experiment_name: str) -> str:
    """The id of the experiment, created (or restored from deletion) when needed."""
    from mlflow.tracking import MlflowClient

    tracking = MlflowClient(tracking_uri=uri)
    experiment = tracking.get_experiment_by_name(experiment_name)
    if experiment is None:
        experiment_id = tracking.create_experiment(experiment_name)
        logger.info("created experiment %r (id %s)", experiment_name, experiment_id)
        return experiment_id
    if experiment.lifecycle_stage == "deleted":
        tracking.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _grant(auth: Any, name: str, resources: list[_Resource], wanted: str) -> bool:
    """Give ``name`` the permission ``wanted`` on each resource (a registry model before it exists too).

    Returns:
        Whether any permission changed.
    """
    from mlflow.exceptions import RestException

    changed = False
    for resource_type, resource_id in resources:
        if auth.get_user_permission(name, resource_type, resource_id).permission == wanted:
            continue
        changed = True
        try:
            auth.grant_user_permission(name, resource_type, resource_id, wanted)
        except RestException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            auth.revoke_user_permission(name, resource_type, resource_id)
            auth.grant_user_permission(name, resource_type, resource_id, wanted)
    return changed


def _credentials_work(uri: str, username: str, password: str) -> bool:
    try:
        return authenticated_user(uri, username, password) == username
    except AccessDenied:
        return False


@contextlib.contextmanager
def _tracking_credentials(username: str, password: str) -> Iterator[None]:
    """Set ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` for the block, then put back what was there."""
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update(dict(zip(keys, (username, password))))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
