"""A real MLflow tracking server with authentication for frugalml (MLflow's ``basic-auth`` app).

The server runs ``python -m mlflow server --app-name frugalml`` (basic-auth plus the governance service) on a
loopback address only. Its users and their experiment permissions are provisioned from
``conf/base/governance.yml``; passwords come from the environment (``FRUGALML_ADMIN_PASSWORD``,
``FRUGALML_PASSWORD_<USER>``), never from a file in git, and are never logged.

One concern per module; every name is importable from here too (:func:`authenticated_user`, who the running
server says a caller is, lives in :mod:`frugalml.governance.authentication`, below :mod:`~frugalml.governance.rbac`):

- :mod:`.passwords`: the password policy, passwords from the environment, the auth ini file that holds the
  admin's password until the server answers;
- :mod:`.process`: starting and stopping the server process (:func:`start_server`, :class:`ServerHandle`);
- :mod:`.provisioning`: users and permissions from governance.yml (:func:`provision`);
- :mod:`.cli`: ``python -m frugalml.governance.server start|provision`` (see ``docs/server.md``).
"""

from __future__ import annotations

from frugalml.governance.authentication import CURRENT_USER_PATH, authenticated_user, http_get
from frugalml.governance.server.cli import GOVERNANCE_FILE, governance_of_record, main
from frugalml.governance.server.passwords import (
    ADMIN_PASSWORD_ENV,
    KNOWN_DEFAULT_PASSWORDS,
    MIN_PASSWORD_LENGTH,
    MIN_PASSWORD_SCORE,
    MLFLOW_PERMISSIONS,
    USER_PASSWORD_ENV_PREFIX,
    ZXCVBN_MAX_LENGTH,
    admin_password_from_env,
    check_password,
    password_env_var,
    passwords_from_env,
    restrict_auth_files,
    scrub_admin_password,
    write_auth_config,
)
from frugalml.governance.server.process import ServerHandle, check_loopback, free_port, start_server
from frugalml.governance.server.provisioning import ROLE_EXPERIMENT_PERMISSIONS, experiment_permission, provision

__all__ = [
    "ADMIN_PASSWORD_ENV",
    "CURRENT_USER_PATH",
    "GOVERNANCE_FILE",
    "KNOWN_DEFAULT_PASSWORDS",
    "MIN_PASSWORD_LENGTH",
    "MIN_PASSWORD_SCORE",
    "MLFLOW_PERMISSIONS",
    "ROLE_EXPERIMENT_PERMISSIONS",
    "USER_PASSWORD_ENV_PREFIX",
    "ZXCVBN_MAX_LENGTH",
    "ServerHandle",
    "admin_password_from_env",
    "authenticated_user",
    "check_loopback",
    "check_password",
    "experiment_permission",
    "free_port",
    "governance_of_record",
    "http_get",
    "main",
    "password_env_var",
    "passwords_from_env",
    "provision",
    "restrict_auth_files",
    "scrub_admin_password",
    "start_server",
    "write_auth_config",
]
