"""Roles, identity and access checks, from ``conf/<env>/governance.yml``.

Identity comes from authentication only: the MLflow server's (``identity.server`` in governance.yml, or an
``http(s)`` tracking URI), checked with ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``. Without a server the acting
OS user is *unauthenticated*: environment variables such as ``LOGNAME`` or ``USER`` can name anyone, so that
name never selects roles from ``users``. Unauthenticated users get ``identity.local_user_roles`` for pipelines
and read-only operations, and every two-person or role-gated operation is refused with how to set up the server.
"""

from __future__ import annotations

import fnmatch
import getpass
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from frugalml.config import load_config
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
    """Where identities are authenticated, and what unauthenticated local users may do."""

    # the governance server (``make server``): when set, every identity is authenticated by it, whatever the
    # tracking URI or environment says
    server: str | None = None
    # the witness key's fingerprint (`frugalml audit verify` prints it): a server presenting another key is refused
    server_fingerprint: str | None = None
    local_user_roles: list[str] = Field(default_factory=list)


class RegistrySettings(_Strict):
    """Registry aliases that only ``frugalml promote`` may move."""

    protected_aliases: list[str] = Field(default_factory=lambda: ["production"])


class RoleSpec(_Strict):
    """What a role may run."""

    pipelines: list[str] = Field(default_factory=list)
    operations: list[str] = Field(default_factory=list)


class PrivacyBudgets(_Strict):
    """Lifetime epsilon budgets per dataset (ledger keys: ``archive:<sha256>`` or ``table:<digest>``)."""

    default_budget_epsilon: float = Field(default=3.0, gt=0, allow_inf_nan=False)
    budgets: dict[str, float] = Field(default_factory=dict)
    # the largest lifetime budget a raise_privacy_budget request may ask for
    max_budget_epsilon: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # True: a training with DP off is refused unless an approved ``disable_dp`` request for the dataset is used
    require_dp: bool = True

    @field_validator("budgets")
    @classmethod
    def _finite(cls, budgets: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in budgets.items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"budgets must be finite and positive: {bad}")
        return budgets


#: The MLflow permissions (``mlflow.server.auth.permissions``) a governance role may be given, weakest first.
MlflowPermission = Literal["NO_PERMISSIONS", "READ", "EDIT", "MANAGE"]
PERMISSION_RANK = {"NO_PERMISSIONS": 0, "READ": 1, "EDIT": 2, "MANAGE": 3}
#: governance role -> MLflow permission on the frugalml experiment and registry models, when governance.yml has
#: no ``mlflow_permissions`` (``admin`` users are MLflow admins and need none).
DEFAULT_MLFLOW_PERMISSIONS: dict[str, MlflowPermission] = {
    "data-scientist": "EDIT",
    "approver": "READ",
    "viewer": "READ",
}


class GovernanceConfig(_Strict):
    """The whole ``governance.yml``."""

    audit: AuditSettings = Field(default_factory=AuditSettings)
    privacy: PrivacyBudgets = Field(default_factory=PrivacyBudgets)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    roles: dict[str, RoleSpec] = Field(default_factory=dict)
    users: dict[str, list[str]] = Field(default_factory=dict)
    two_person_operations: list[str] = Field(default_factory=list)
    # what the governance server grants each role on the experiment and the registry models (provisioning)
    mlflow_permissions: dict[str, MlflowPermission] = Field(default_factory=lambda: dict(DEFAULT_MLFLOW_PERMISSIONS))

    @field_validator("mlflow_permissions")
    @classmethod
    def _no_admin_permission(cls, permissions: dict[str, MlflowPermission]) -> dict[str, MlflowPermission]:
        if "admin" in permissions:
            raise ValueError("the admin role is not mapped: users with it are MLflow admins, who may do anything")
        return permissions

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


def load_governance(conf_source: str | Path = "conf", env: str | None = "local") -> GovernanceConfig:
    """The project's governance: ``governance*`` through :func:`frugalml.config.load_config`.

    The one loader of governance.yml: the Kedro hooks, the ``frugalml`` CLI and the benchmarks read it here, with
    the project's ``OmegaConfigLoader`` settings (``conf/base`` with ``conf/<env>`` over it, top-level keys of the
    env replacing base's). The server enforces one file instead, its copy of record (:func:`load_governance_file`).

    Args:
        conf_source: The ``conf`` folder.
        env: The environment layered over ``base`` (``None``: ``base`` alone, the committed files).

    Returns:
        The validated config (the defaults when there is no governance file).

    Raises:
        ParameterError: A governance file is not valid YAML, or the merged config is not a valid governance
            config (naming the file or the bad key).
    """
    try:
        with warnings.catch_warnings():  # OmegaConf deprecates the API Kedro registers resolvers with: not ours
            warnings.filterwarnings("ignore", message=".*register_new_resolver.*")
            raw = load_config("governance", conf_source, env, default={})  # no file: MissingConfigException -> {}
    except yaml.YAMLError as error:  # Kedro's message names the file, line and column
        raise ParameterError(f"governance.yml in {conf_source}: {error}") from None
    return _parse_raw(raw, f"governance in {conf_source}")


def load_governance_file(path: str | Path | None) -> GovernanceConfig:
    """Read one governance.yml (the server's copy of record).

    Args:
        path: The file, or None for the defaults.

    Returns:
        The validated config.

    Raises:
        ParameterError: A missing file, one that is not valid YAML, or an invalid config.
    """
    if path is None:
        return parse_governance({})
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"no governance file at {path}")
    return parse_governance_text(path.read_text(), str(path))


def parse_governance_text(text: str, source: str) -> GovernanceConfig:
    """Validate the text of one governance.yml.

    Args:
        text: The YAML.
        source: Where it came from (named in the error).

    Returns:
        The validated config (the defaults for an empty text).

    Raises:
        ParameterError: Not valid YAML, not a mapping, or not a valid governance config.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ParameterError(f"{source}: not valid YAML: {error}") from None
    return _parse_raw(raw, source)


def _parse_raw(raw: Any, source: str) -> GovernanceConfig:
    if raw is not None and not isinstance(raw, Mapping):
        raise ParameterError(f"{source}: governance.yml must be a mapping of settings, not {type(raw).__name__}")
    return parse_governance(dict(raw or {}))


#: Operations an unauthenticated local user may still do (they only read).
READ_ONLY_OPERATIONS = frozenset({"audit.verify", "audit.report", "audit.prove", "check", "privacy.status",
                                  "approvals"})  # fmt: skip
SETUP_HINT = (
    "start the governance server (`make server`, docs/server.md), set `identity.server` in "
    "conf/base/governance.yml, and log in with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
)


@dataclass(frozen=True)
class Identity:
    """Who acts, and how we know."""

    user: str
    source: str  # "mlflow-server" (authenticated by the server) or "os" (unauthenticated)
    authenticated: bool = False
    server: str | None = None


def server_uri(config: GovernanceConfig | None, tracking_uri: str | None = None) -> str | None:
    """The governance server that authenticates identities: ``identity.server``, else None.

    An ``http(s)`` tracking URI alone is *not* an authority: anyone can start a server that says "you are
    admin". Only the server named in the governance of record is trusted (and its witness key is pinned by
    ``identity.server_fingerprint`` when set).

    Args:
        config: Governance config.
        tracking_uri: Unused (kept so callers can pass the URI in use); tracking may go anywhere.

    Returns:
        The server's URI, or None (local, unauthenticated mode).
    """
    del tracking_uri
    if config is not None and config.identity.server:
        return config.identity.server.rstrip("/")
    return None


def current_identity(config: GovernanceConfig | None = None, tracking_uri: str | None = None) -> Identity:
    """The acting user, authenticated by the governance server when there is one.

    Args:
        config: Governance config (``identity.server`` wins over the tracking URI and the environment).
        tracking_uri: The MLflow tracking URI in use (``None``: ``$MLFLOW_TRACKING_URI``).

    Returns:
        The identity; without a server, the OS user, marked unauthenticated.

    Raises:
        AccessDenied: Against a server, when credentials are missing or wrong.
    """
    uri = server_uri(config, tracking_uri)
    if uri is not None:
        from frugalml.governance.authentication import authenticated_user

        user = authenticated_user(
            uri, os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        )
        return Identity(user=user, source="mlflow-server", authenticated=True, server=uri)
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Identity(user=name, source="os", authenticated=False)


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
    if not identity.authenticated:  # a name from the environment proves nothing: never look it up in `users`
        if config.identity.local_user_roles:
            return config.identity.local_user_roles
        raise AccessDenied(f"unauthenticated local user {identity.user!r}: this project gives local users no "
                           f"role (identity.local_user_roles is empty); {SETUP_HINT}")  # fmt: skip
    if identity.user in config.users:
        return config.users[identity.user]
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
    if config.identity.server and not identity.authenticated:
        raise AccessDenied(f"this project authenticates users with the governance server {config.identity.server}"
                           f": {SETUP_HINT}")  # fmt: skip
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
    if not identity.authenticated and operation not in READ_ONLY_OPERATIONS:
        raise AccessDenied(f"{operation!r} needs an authenticated identity, and {identity.user!r} is only the "
                           f"local OS user (which any environment variable can claim): {SETUP_HINT}")  # fmt: skip
    roles = roles_of(config, identity)
    allowed = [o for role in roles for o in config.roles[role].operations]
    if not _allowed(allowed, operation):
        raise AccessDenied(f"user {identity.user!r} (roles {roles}) may not {operation!r}")
    return roles
