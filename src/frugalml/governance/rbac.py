"""Roles, identity and access checks, from ``conf/<env>/governance.yml``."""

from __future__ import annotations

import fnmatch
import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from frugalml.errors import AccessDenied, ParameterError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuditSettings(_Strict):
    """Where the audit trail lives and how long it is kept."""

    enabled: bool = True
    path: str = "data/audit/audit.jsonl"
    retention_days: int = Field(default=180, ge=180)
    hash_datasets: bool = True


class IdentitySettings(_Strict):
    """How unknown local users are treated."""

    local_user_roles: list[str] = Field(default_factory=list)


class RoleSpec(_Strict):
    """What a role may run."""

    pipelines: list[str] = Field(default_factory=list)
    operations: list[str] = Field(default_factory=list)


class PrivacyBudgets(_Strict):
    """Lifetime epsilon budgets per dataset (ledger keys: ``archive:<sha256>`` or ``table:<digest>``)."""

    default_budget_epsilon: float = Field(default=3.0, gt=0)
    budgets: dict[str, float] = Field(default_factory=dict)
    # True: a training with DP off is refused unless an approved ``disable_dp`` request for the dataset is used
    require_dp: bool = True


class GovernanceConfig(_Strict):
    """The whole ``governance.yml``."""

    audit: AuditSettings = Field(default_factory=AuditSettings)
    privacy: PrivacyBudgets = Field(default_factory=PrivacyBudgets)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    roles: dict[str, RoleSpec] = Field(default_factory=dict)
    users: dict[str, list[str]] = Field(default_factory=dict)
    two_person_operations: list[str] = Field(default_factory=list)

    def model_post_init(self, _context: Any) -> None:
        """Every role a user or the local default names must exist."""
        for user, roles in {**self.users, "<local users>": self.identity.local_user_roles}.items():
            unknown = [r for r in roles if r not in self.roles]
            if unknown:
                raise ValueError(f"user {user!r} has unknown role(s) {unknown}; roles are {sorted(self.roles)}")


def parse_governance(config: dict[str, Any]) -> GovernanceConfig:
    """Validate a governance config.

    Args:
        config: The parsed ``governance.yml``.

    Returns:
        The validated config.

    Raises:
        ParameterError: Naming the bad key (retention below 180 days included).
    """
    try:
        return GovernanceConfig.model_validate(config or {})
    except ValidationError as error:
        raise ParameterError(f"governance.yml: {error}") from None


def load_governance(conf_source: str | Path = "conf", env: str = "local") -> GovernanceConfig:
    """Read ``conf/base/governance.yml`` with ``conf/<env>/governance.yml`` merged over it (top-level keys).

    Args:
        conf_source: The ``conf`` folder.
        env: The environment layered over ``base``.

    Returns:
        The validated config.
    """
    merged: dict[str, Any] = {}
    for folder in ("base", env):
        path = Path(conf_source) / folder / "governance.yml"
        if path.is_file():
            merged.update(yaml.safe_load(path.read_text()) or {})
    return parse_governance(merged)


@dataclass(frozen=True)
class Identity:
    """Who acts, and how we know."""

    user: str
    source: str  # "mlflow-server" (authenticated by the server) or "os"


def current_identity(tracking_uri: str | None = None) -> Identity:
    """The acting user: the MLflow tracking user (verified by the server) or the OS user.

    Args:
        tracking_uri: The MLflow tracking URI in use (``None``: ``$MLFLOW_TRACKING_URI``).

    Returns:
        The identity.

    Raises:
        AccessDenied: Against a server, when credentials are missing or wrong.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(("http://", "https://")):
        from frugalml.governance.server import authenticated_user

        user = authenticated_user(
            uri, os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        )
        return Identity(user=user, source="mlflow-server")
    return Identity(user=getpass.getuser(), source="os")


def roles_of(config: GovernanceConfig, identity: Identity) -> list[str]:
    """The roles of a user.

    Args:
        config: Governance config.
        identity: The user.

    Returns:
        Role names.

    Raises:
        AccessDenied: For a user not listed (local OS users get ``identity.local_user_roles`` if any).
    """
    if identity.user in config.users:
        return config.users[identity.user]
    if identity.source == "os" and config.identity.local_user_roles:
        return config.identity.local_user_roles
    raise AccessDenied(
        f"unknown user {identity.user!r} ({identity.source}): not listed under `users` in governance.yml"
    )


def _allowed(patterns: list[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def check_pipelines(config: GovernanceConfig, identity: Identity, pipelines: list[str]) -> list[str]:
    """Refuse a run of pipelines the user's roles do not allow.

    Args:
        config: Governance config.
        identity: The user.
        pipelines: Pipeline names of the run.

    Returns:
        The user's roles.

    Raises:
        AccessDenied: Naming the user, roles and pipeline.
    """
    roles = roles_of(config, identity)
    allowed = [p for role in roles for p in config.roles[role].pipelines]
    for pipeline in pipelines:
        if not _allowed(allowed, pipeline):
            raise AccessDenied(
                f"user {identity.user!r} (roles {roles}) may not run pipeline {pipeline!r}; "
                f"allowed: {allowed or 'none'}"
            )
    return roles


def check_operation(config: GovernanceConfig, identity: Identity, operation: str) -> list[str]:
    """Refuse an operation (a CLI command) the user's roles do not allow.

    Args:
        config: Governance config.
        identity: The user.
        operation: E.g. ``approve``, ``audit.verify``.

    Returns:
        The user's roles.

    Raises:
        AccessDenied: Naming the user, roles and operation.
    """
    roles = roles_of(config, identity)
    allowed = [o for role in roles for o in config.roles[role].operations]
    if not _allowed(allowed, operation):
        raise AccessDenied(f"user {identity.user!r} (roles {roles}) may not {operation!r}")
    return roles
