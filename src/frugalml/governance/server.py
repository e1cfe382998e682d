"""A real MLflow tracking server with authentication for frugalml (MLflow's ``basic-auth`` app).

The server runs ``python -m mlflow server --app-name basic-auth`` on a loopback address only. Its users and
their experiment permissions are provisioned from ``conf/base/governance.yml``; passwords come from the
environment (``FRUGALML_ADMIN_PASSWORD``, ``FRUGALML_PASSWORD_<USER>``), never from a file in git, and
are never logged.

Command line (see ``docs/server.md``)::

    FRUGALML_ADMIN_PASSWORD=... FRUGALML_PASSWORD_ALICE=... python -m frugalml.governance.server start
    python -m frugalml.governance.server provision --uri http://127.0.0.1:5001
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import importlib.util
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from frugalml.errors import AccessDenied, GovernanceError

logger = logging.getLogger(__name__)

ADMIN_PASSWORD_ENV = "FRUGALML_ADMIN_PASSWORD"
USER_PASSWORD_ENV_PREFIX = "FRUGALML_PASSWORD_"
#: MLflow's own minimum (``mlflow.utils.validation._validate_password``); checked here to fail early.
MIN_PASSWORD_LENGTH = 12
#: Passwords that are somebody's default somewhere (MLflow shipped ``admin``/``password1234`` until 2025).
KNOWN_DEFAULT_PASSWORDS = frozenset(
    {
        "admin",
        "admin123",
        "admin1234",
        "administrator",
        "changeme",
        "change-me",
        "changeit",
        "default",
        "letmein",
        "mlflow",
        "mlflow123",
        "password",
        "password1",
        "password123",
        "password1234",
        "passw0rd",
        "qwerty",
        "qwertyuiop",
        "root",
        "secret",
        "test",
        "12345678",
        "123456789",
        "1234567890",
        "123456789012",
    }
)
#: ``default_permission`` values MLflow accepts (``mlflow.server.auth.permissions.ALL_PERMISSIONS``).
MLFLOW_PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS", "DENY")
#: governance.yml role -> MLflow permission on the frugalml experiment (``admin`` users are MLflow admins).
ROLE_EXPERIMENT_PERMISSIONS = {"data-scientist": "EDIT", "approver": "READ", "viewer": "READ"}
_PERMISSION_RANK = {"NO_PERMISSIONS": 0, "READ": 1, "USE": 2, "EDIT": 3, "MANAGE": 4}
#: Needs authentication and answers who the caller is (``mlflow.server.auth.routes.GET_CURRENT_USER``).
CURRENT_USER_PATH = "/api/2.0/mlflow/users/current"
#: Variables the server process must not inherit: client credentials, bootstrap overrides (they would win
#: over the ini file), and frugalml's own password variables (the server needs none of them).
_CHILD_ENV_DROPPED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_AUTH_ADMIN_USERNAME",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    ADMIN_PASSWORD_ENV,
)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


# --- passwords -------------------------------------------------------------------------------------------
#: The lowest zxcvbn score (0-4) a password may have: 3 is "safely unguessable" (~10^10 guesses) in zxcvbn's scale.
MIN_PASSWORD_SCORE = 3
#: zxcvbn refuses longer input; a longer password is judged by its first this many characters (conservative).
ZXCVBN_MAX_LENGTH = 72
#: Words a password of this server must not be built from, besides the user's own name.
_CONTEXT_WORDS = ("mlflow", "frugalml", "admin", "administrator", "server")


def check_password(username: str, password: str | None, *, source: str = "") -> str:
    """Refuse an empty, short, default, guessable or ini-unsafe password.

    Strength is judged by zxcvbn (the maintained Python port of Dropbox's estimator): its score must be at
    least :data:`MIN_PASSWORD_SCORE`, with the user name and this server's names as user inputs, so repeats
    (``aaaaaaaaaaaa``), common passwords (``password1234``), keyboard walks (``1qaz2wsx3edc``) and the user
    name plus digits (``alice1234567``) are refused. The error says why (zxcvbn's feedback) and never
    contains the password.

    Args:
        username: Whose password it is (named in the error; the password never is).
        password: The password.
        source: Where it came from (e.g. an environment variable), named in the error.

    Returns:
        The password, unchanged.

    Raises:
        GovernanceError: Empty, shorter than :data:`MIN_PASSWORD_LENGTH`, a known default, equal to the user
            name, with a line break or surrounding whitespace (the ini file could not keep it), or scored
            below :data:`MIN_PASSWORD_SCORE` by zxcvbn.
    """
    from zxcvbn import zxcvbn

    where = f" (from {source})" if source else ""
    if not password:
        raise GovernanceError(f"the password of MLflow user {username!r}{where} is empty; set a strong one")
    if password.lower() in KNOWN_DEFAULT_PASSWORDS or password.lower() == username.lower():
        raise GovernanceError(
            f"the password of MLflow user {username!r}{where} is a known default or the user name; "
            "frugalml never runs a server with a default password: choose your own"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise GovernanceError(
            f"the password of MLflow user {username!r}{where} is shorter than {MIN_PASSWORD_LENGTH} characters"
        )
    if password != password.strip() or "\n" in password or "\r" in password:
        raise GovernanceError(
            f"the password of MLflow user {username!r}{where} has a line break or leading/trailing whitespace"
        )
    strength = zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=[username, *_CONTEXT_WORDS])
    if strength["score"] < MIN_PASSWORD_SCORE:
        feedback = strength["feedback"]
        # zxcvbn's feedback is a fixed set of sentences ('Repeats like "aaa" are easy to guess.'): no part of
        # the password is ever in it.
        why = " ".join([feedback.get("warning") or "It is easy to guess.", *feedback.get("suggestions", [])])
        raise GovernanceError(
            f"the password of MLflow user {username!r}{where} is too weak: zxcvbn score "
            f"{strength['score']} of 4, at least {MIN_PASSWORD_SCORE} needed. {why.strip()} "
            "A passphrase of four or more random words, or a password manager's random password, passes."
        )
    return password


def admin_password_from_env() -> str:
    """The server's admin password, from ``$FRUGALML_ADMIN_PASSWORD``.

    Returns:
        The password (checked with :func:`check_password`).

    Raises:
        GovernanceError: Not set, empty, or not acceptable; the message says how to set it.
    """
    password = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if not password:
        raise GovernanceError(
            f"no MLflow admin password: set {ADMIN_PASSWORD_ENV} in the environment "
            f"(e.g. `export {ADMIN_PASSWORD_ENV}=...` from your password manager) or keep it in "
            "conf/local/credentials.yml (git-ignored) and export it from there; frugalml has no default"
        )
    return check_password("admin", password, source=ADMIN_PASSWORD_ENV)


def password_env_var(user: str) -> str:
    """The environment variable holding a user's password: ``FRUGALML_PASSWORD_<USER>``.

    Args:
        user: The user name (upper-cased, ``-`` becomes ``_``).

    Returns:
        The variable's name.
    """
    return USER_PASSWORD_ENV_PREFIX + user.upper().replace("-", "_")


def passwords_from_env(users: Iterable[str]) -> dict[str, str]:
    """Read users' passwords from ``FRUGALML_PASSWORD_<USER>``.

    Args:
        users: User names (a governance ``users`` mapping works too).

    Returns:
        User -> password, for the users whose variable is set and not empty.
    """
    found = {user: os.environ.get(password_env_var(user), "") for user in users}
    return {user: password for user, password in found.items() if password}


# --- the ini file ----------------------------------------------------------------------------------------
def write_auth_config(
    directory: Path,
    *,
    admin_password: str,
    admin_username: str = "admin",
    default_permission: str = "NO_PERMISSIONS",
    auth_cache_ttl_seconds: int = 60,
) -> Path:
    """Write MLflow's basic-auth ini file (read from ``$MLFLOW_AUTH_CONFIG_PATH``).

    Section ``[mlflow]``, keys as in ``mlflow/server/auth/basic_auth.ini``: ``default_permission``,
    ``database_uri`` (a SQLite file in ``directory``), ``admin_username``, ``admin_password`` (used only
    to create the admin the first time the auth database is empty; :func:`start_server` removes it again once
    the server answers), ``authorization_function`` and ``auth_cache_ttl_seconds``. The file is written with
    mode 0600 in a folder of mode 0700.

    Args:
        directory: Where the ini file and the auth database (``basic_auth.db``) live; created if missing.
        admin_password: The admin's password (refused when empty, short or a known default).
        admin_username: The admin's user name.
        default_permission: What a user may do on a resource nobody granted them anything on.
        auth_cache_ttl_seconds: How long the server caches a verified credential (HMAC of the password,
            in memory). 0 disables the cache; with one worker a password change applies at once anyway.

    Returns:
        Path of the ini file.

    Raises:
        GovernanceError: A refused password or an unknown permission.
    """
    check_password(admin_username, admin_password)
    if default_permission not in MLFLOW_PERMISSIONS:
        raise GovernanceError(f"default_permission {default_permission!r} is not one of {MLFLOW_PERMISSIONS}")
    directory = Path(directory).resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # also when it existed with looser permissions
    database = directory / "basic_auth.db"
    # MLflow reads the file with configparser's default interpolation: a literal '%' must be written '%%'.
    lines = [
        "# Written by frugalml.governance.server (mode 0600). admin_password is removed once the server has",
        "# created the admin in the auth database: MLflow reads it only to create the admin on the first start.",
        "[mlflow]",
        f"default_permission = {default_permission}",
        f"database_uri = sqlite:///{database.as_posix()}",
        f"admin_username = {admin_username}",
        f"admin_password = {admin_password.replace('%', '%%')}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
        f"auth_cache_ttl_seconds = {int(auth_cache_ttl_seconds)}",
    ]
    path = directory / "basic_auth.ini"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    path.chmod(0o600)  # also when the file existed with looser permissions
    logger.info("wrote MLflow auth config %s (auth database %s)", path, database)
    return path


def scrub_admin_password(path: Path) -> bool:
    """Remove ``admin_password`` from an auth ini file, keeping every other setting.

    MLflow reads ``admin_password`` only to create the admin when the auth database has none
    (``mlflow.server.auth.create_admin_user``); once the admin exists, a (re)starting worker needs only
    ``admin_username``. The file is replaced atomically (a 0600 temporary file, fsynced, then renamed).

    Args:
        path: The ini file (see :func:`write_auth_config`); a missing file is left alone.

    Returns:
        Whether a password line was removed.
    """
    path = Path(path)
    if not path.is_file():
        return False
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.split("=", 1)[0].strip().lower() != "admin_password"]
    if len(kept) == len(lines):
        return False
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(kept) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    path.chmod(0o600)
    logger.info("removed the admin bootstrap password from %s", path)
    return True


def _restrict_auth_files(directory: Path) -> None:
    """The auth folder 0700; its database (and SQLite's journal/WAL files), ini file and log 0600."""
    if not directory.is_dir():
        return
    directory.chmod(0o700)
    for name in ("basic_auth.db", "basic_auth.db-journal", "basic_auth.db-wal", "basic_auth.db-shm",
                 "basic_auth.ini", "server.log"):  # fmt: skip
        with contextlib.suppress(FileNotFoundError):
            (directory / name).chmod(0o600)


# --- the server process ----------------------------------------------------------------------------------
def check_loopback(host: str) -> str:
    """Refuse any host that is not a loopback address.

    Args:
        host: ``localhost``, an address in 127.0.0.0/8, or ``::1``.

    Returns:
        The host, unchanged.

    Raises:
        GovernanceError: Any other host (``0.0.0.0``, a LAN or public address, another name).
    """
    if host.lower().rstrip(".") == "localhost":
        return host
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise GovernanceError(
            f"refusing to bind the MLflow server to {host!r}: frugalml serves on loopback only "
            "(127.0.0.0/8, localhost or ::1); put a TLS reverse proxy in front to share it"
        )
    return host


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on a loopback address right now.

    Args:
        host: The loopback address to probe.

    Returns:
        The port number.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host.strip("[]"), 0))
        return int(probe.getsockname()[1])


def _url_host(host: str) -> str:
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


def _http_get(url: str, auth: tuple[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="GET")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


@dataclass
class ServerHandle:
    """A running MLflow server (a process group of its own): stop it with :meth:`stop` or ``with``."""

    process: subprocess.Popen[bytes]
    uri: str
    log_path: Path
    auth_config: Path
    _stopped: bool = field(default=False, repr=False)

    def is_running(self) -> bool:
        """Whether the server process is alive.

        Returns:
            True while it runs.
        """
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log.

        Args:
            lines: How many.

        Returns:
            The text ('' when there is no log yet).
        """
        if not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, wait_seconds: float) -> None:
        """Wait until ``/health`` answers 200.

        Args:
            wait_seconds: How long to wait at most.

        Raises:
            GovernanceError: The server exited, or did not answer in time (the log's tail is in the message).
        """
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise GovernanceError(
                    f"the MLflow server exited with code {code} before it answered; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                if _http_get(f"{self.uri}/health", timeout=2)[0] == 200:
                    logger.info("MLflow server ready at %s (pid %d)", self.uri, self.process.pid)
                    return
            time.sleep(0.2)
        raise GovernanceError(
            f"the MLflow server at {self.uri} did not answer /health within {wait_seconds:.0f} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server's process group, then kill it if it is still there after ``timeout``.

        Idempotent; also registered with :mod:`atexit` so an interpreter exit does not leave it running.
        Afterwards the ini file holds no admin password and the auth files are private (0700/0600), also
        when the start failed before the server answered.

        Args:
            timeout: Seconds to wait after SIGTERM (and after SIGKILL).
        """
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        try:
            self._signal(signal.SIGTERM)
            if not self._wait_gone(timeout):
                logger.warning("MLflow server pid %d ignored SIGTERM; killing it", self.process.pid)
                self._signal(signal.SIGKILL)
                self._wait_gone(timeout)
            logger.info("MLflow server at %s stopped", self.uri)
        finally:
            # normally already done once the server answered; here for a start that failed half-way
            scrub_admin_password(self.auth_config)
            _restrict_auth_files(self.auth_config.parent)

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None and not self._group_alive():
                return True
            time.sleep(0.1)
        return False

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)  # the group started with the server (start_new_session)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def start_server(
    *,
    host: str = "127.0.0.1",
    port: int,
    backend_store_uri: str,
    artifacts_destination: str,
    auth_dir: Path,
    admin_password: str,
    admin_username: str = "admin",
    wait_seconds: float = 60,
    governance_file: Path | None = None,
) -> ServerHandle:
    """Start ``mlflow server --app-name basic-auth`` on a loopback address and wait until it answers.

    The auth ini and database and the server log (``server.log``) go to ``auth_dir``, a folder of mode 0700
    whose files are 0600 (the server runs with umask 077). The admin password is written to the ini file for
    MLflow's bootstrap only and removed from it as soon as the server answers (see
    :func:`scrub_admin_password`). The process runs in a session of its own, so :meth:`ServerHandle.stop`
    ends the uvicorn worker too. MLflow's background job runner is off unless
    ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` says otherwise.

    Args:
        host: Loopback address to bind.
        port: TCP port (see :func:`free_port`).
        backend_store_uri: Tracking store, e.g. ``sqlite:////abs/path/mlflow.db``.
        artifacts_destination: Where the server stores artifacts it proxies (a folder or URI).
        auth_dir: Folder of the auth ini, auth database and log.
        admin_password: The admin's password (used to create the admin on the first start).
        admin_username: The admin's user name.
        wait_seconds: How long to wait for ``/health``.
        governance_file: The governance.yml the server enforces (roles, two-person operations, retention) and
            keeps as the governance of record; its state (witness key, approvals) lives in ``auth_dir``.

    Returns:
        A handle with ``.uri``, ``.stop()``, ``.log_path``; a context manager.

    Raises:
        GovernanceError: Not a loopback host, a refused password, Flask-WTF missing, a port in use, or a
            server that did not come up (it is stopped before raising).
    """
    check_loopback(host)
    if importlib.util.find_spec("flask_wtf") is None:
        raise GovernanceError(
            "MLflow's basic-auth app needs Flask-WTF, which is not installed: pip install 'mlflow[auth]'"
        )
    bare = host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((bare, port))
        except OSError as error:
            raise GovernanceError(f"port {port} on {host} is not free: {error}") from error
    auth_dir = Path(auth_dir).resolve()
    config = write_auth_config(auth_dir, admin_password=admin_password, admin_username=admin_username)
    # SQLite keeps the mode of an existing database file (and gives its journal the same): create it 0600
    # before MLflow opens it, and tighten one left behind by an older start.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(auth_dir / "basic_auth.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    log_path = auth_dir / "server.log"
    os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    _restrict_auth_files(auth_dir)
    env = {key: value for key, value in os.environ.items() if key not in _CHILD_ENV_DROPPED}
    env = {key: value for key, value in env.items() if not key.startswith(USER_PASSWORD_ENV_PREFIX)}
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_urlsafe(32))  # CSRF key of the UI forms
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    from frugalml.governance.service import GOVERNANCE_DIR_ENV, GOVERNANCE_FILE_ENV

    env[GOVERNANCE_DIR_ENV] = str(auth_dir / "governance")
    env.pop(GOVERNANCE_FILE_ENV, None)
    if governance_file is not None:
        env[GOVERNANCE_FILE_ENV] = str(Path(governance_file).resolve())
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "frugalml",  # basic-auth + the governance service (frugalml.governance.service)
        "--host",
        bare,
        "--port",
        str(port),
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--workers",
        "1",
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=auth_dir,
            start_new_session=True,
            umask=0o077,  # whatever the server creates (databases, journals, artifacts) is private to its user
        )
    handle = ServerHandle(
        process=process, uri=f"http://{_url_host(host)}:{port}", log_path=log_path, auth_config=config
    )
    atexit.register(handle.stop)
    logger.info("starting MLflow server (basic-auth) at %s, pid %d, log %s", handle.uri, process.pid, log_path)
    try:
        handle.wait_ready(wait_seconds)
    except BaseException:
        handle.stop()  # also removes the admin password from the ini file
        raise
    # `mlflow server` creates the admin (bootstrap_admin_user) before it starts serving, so once /health
    # answers the password is no longer needed on disk: a restarting worker finds the admin in the database.
    scrub_admin_password(config)
    _restrict_auth_files(auth_dir)
    return handle


# --- identities ------------------------------------------------------------------------------------------
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
        status, body = _http_get(uri.rstrip("/") + CURRENT_USER_PATH, auth=(username, password))
    except OSError as error:
        raise GovernanceError(f"cannot reach the MLflow server {uri}: {error}") from error
    if status == 401:
        raise AccessDenied(
            f"the MLflow server {uri} refused the credentials of user {username!r} (wrong user name or password)"
        )
    if status != 200:
        raise GovernanceError(f"the MLflow server {uri} answered HTTP {status} to {CURRENT_USER_PATH}")
    return str(json.loads(body)["user"]["username"])


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


def _experiment_permission(roles: Iterable[str]) -> str | None:
    granted = [ROLE_EXPERIMENT_PERMISSIONS[role] for role in roles if role in ROLE_EXPERIMENT_PERMISSIONS]
    return max(granted, key=_PERMISSION_RANK.__getitem__) if granted else None


def provision(
    uri: str,
    governance: Mapping[str, Any],
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
    of their roles (:data:`ROLE_EXPERIMENT_PERMISSIONS`). The admin itself is created by MLflow at start.
    A user without a password who already exists keeps their password but still gets their permissions.

    Args:
        uri: The server.
        governance: Parsed governance.yml (``users``: user -> roles).
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
    """
    from mlflow.exceptions import RestException
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    users: Mapping[str, list[str]] = governance.get("users") or {}
    summary: dict[str, Any] = {"created": [], "updated": [], "unchanged": [], "skipped": [], "permissions": {}}
    try:
        authenticated_user(uri, admin_username, admin_password)
    except AccessDenied as error:
        raise AccessDenied(
            f"{error}; the admin password is the one the server's auth database was first created with"
        ) from error
    with _tracking_credentials(admin_username, admin_password):
        auth = get_app_client("basic-auth", tracking_uri=uri)
        members: dict[str, list[str]] = {}
        for name, roles in users.items():
            if name == admin_username:
                continue
            roles = list(roles or [])
            password = passwords.get(name)
            if password:
                check_password(name, password, source=password_env_var(name))
            try:
                user = auth.get_user(name)
            except RestException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise GovernanceError(f"cannot look up MLflow user {name!r}: {error.message}") from error
                user = None
            changed = False
            if user is None:
                if not password:
                    logger.warning("MLflow user %r not created: set %s", name, password_env_var(name))
                    summary["skipped"].append(name)
                    continue
                auth.create_user(name, password)
                summary["created"].append(name)
                is_admin = False
            else:
                is_admin = bool(user.is_admin)
                if password and not _credentials_work(uri, name, password):
                    auth.update_user_password(name, password)
                    changed = True
            if is_admin != ("admin" in roles):
                auth.update_user_admin(name, "admin" in roles)
                changed = True
            members[name] = roles
            if changed and name not in summary["created"]:
                summary["updated"].append(name)

        tracking = MlflowClient(tracking_uri=uri)
        experiment = tracking.get_experiment_by_name(experiment_name)
        if experiment is None:
            experiment_id = tracking.create_experiment(experiment_name)
            logger.info("created experiment %r (id %s)", experiment_name, experiment_id)
        else:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                tracking.restore_experiment(experiment_id)
        summary["experiment_id"] = experiment_id

        for name, roles in members.items():
            wanted = _experiment_permission(roles)
            if "admin" in roles or wanted is None:
                continue  # admins may do anything; users without a mapped role get the default permission
            changed = False
            # the same permission on the experiment and on each registered model (granted before it exists)
            for resource_type, resource_id in [("experiment", experiment_id)] + [
                ("registered_model", model) for model in registered_models
            ]:
                current = auth.get_user_permission(name, resource_type, resource_id).permission
                if current == wanted:
                    continue
                changed = True
                try:
                    auth.grant_user_permission(name, resource_type, resource_id, wanted)
                except RestException as error:
                    if error.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    auth.revoke_user_permission(name, resource_type, resource_id)
                    auth.grant_user_permission(name, resource_type, resource_id, wanted)
            if changed and name not in summary["created"] and name not in summary["updated"]:
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


def _credentials_work(uri: str, username: str, password: str) -> bool:
    try:
        return authenticated_user(uri, username, password) == username
    except AccessDenied:
        return False


# --- command line ----------------------------------------------------------------------------------------
def _governance(project: Path) -> dict[str, Any]:
    import yaml

    path = project / "conf" / "base" / "governance.yml"
    if not path.is_file():
        raise GovernanceError(f"no governance config at {path}")
    return yaml.safe_load(path.read_text()) or {}


def _provision_from_env(uri: str, project: Path) -> dict[str, Any]:
    governance = _governance(project)
    return provision(
        uri,
        governance,
        admin_password=admin_password_from_env(),
        passwords=passwords_from_env(governance.get("users") or {}),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m frugalml.governance.server start|provision``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0; 1 when the server died by itself; 2 after a governance error.
    """
    parser = argparse.ArgumentParser(
        prog="python -m frugalml.governance.server", description="frugalml's authenticated MLflow server"
    )
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="project root (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start the server, provision it, serve until Ctrl-C")
    start.add_argument("--port", type=int, default=5001)
    start.add_argument("--host", default="127.0.0.1", help="a loopback address")
    commands.add_parser("provision", help="create users and grants on a running server").add_argument(
        "--uri", required=True
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    project = args.project.resolve()
    try:
        if args.command == "provision":
            _provision_from_env(args.uri, project)
            return 0
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` acts like Ctrl-C
        try:
            return _serve(args.host, args.port, project)
        finally:
            signal.signal(signal.SIGTERM, previous)
    except GovernanceError as error:
        logger.error("%s", error)
        return 2


def _serve(host: str, port: int, project: Path) -> int:
    mlruns = project / "mlruns"
    handle = start_server(
        host=host,
        port=port,
        backend_store_uri=f"sqlite:///{(mlruns / 'mlflow.db').as_posix()}",
        artifacts_destination=str(mlruns / "artifacts"),
        auth_dir=mlruns / "auth",
        admin_password=admin_password_from_env(),
        governance_file=project / "conf" / "base" / "governance.yml",
    )
    with handle:
        _provision_from_env(handle.uri, project)
        fingerprint = (mlruns / "auth" / "governance" / "witness.fingerprint").read_text().strip()
        logger.info("MLflow server at %s (log %s); Ctrl-C stops it", handle.uri, handle.log_path)
        logger.info(
            "witness key %s: pin it in conf/base/governance.yml as identity: {server: %s, server_fingerprint: %s}",
            fingerprint,
            handle.uri,
            fingerprint,
        )
        try:
            code = handle.process.wait()
        except KeyboardInterrupt:
            return 0
    logger.error("the MLflow server exited by itself (code %s); log %s", code, handle.log_path)
    return 1


if __name__ == "__main__":
    sys.exit(main())
