"""The governance server's process: ``mlflow server --app-name frugalml`` on a loopback address, started and stopped.

:func:`start_server` writes MLflow's basic-auth ini file (the admin password only until the server answers),
starts the server in a session of its own with a scrubbed environment and umask 077, and waits for ``/health``;
the :class:`ServerHandle` it returns stops the whole process group. Users and permissions are provisioned
afterwards (:mod:`frugalml.governance.server.provisioning`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import ipaddress
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from frugalml.errors import GovernanceError
from frugalml.governance.authentication import http_get
from frugalml.governance.server.passwords import (
    ADMIN_PASSWORD_ENV,
    USER_PASSWORD_ENV_PREFIX,
    restrict_auth_files,
    scrub_admin_password,
    write_auth_config,
)

logger = logging.getLogger("frugalml.governance.server")  # one logger for the whole server package

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
                if http_get(f"{self.uri}/health", timeout=2)[0] == 200:
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
            restrict_auth_files(self.auth_config.parent)

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
    _check_startable(host, port)
    auth_dir = Path(auth_dir).resolve()
    config, log_path = _prepare_auth_dir(auth_dir, admin_password, admin_username)
    env = _server_env(config, auth_dir, governance_file)
    command = _server_command(host, port, backend_store_uri, artifacts_destination)
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
    restrict_auth_files(auth_dir)
    return handle


def _check_startable(host: str, port: int) -> None:
    """Refuse a non-loopback host, a missing Flask-WTF or a port in use, before anything is written."""
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


def _prepare_auth_dir(auth_dir: Path, admin_password: str, admin_username: str) -> tuple[Path, Path]:
    """Write the auth ini file and create the auth database and log, all private: ``(ini file, log)``."""
    config = write_auth_config(auth_dir, admin_password=admin_password, admin_username=admin_username)
    # SQLite keeps the mode of an existing database file (and gives its journal the same): create it 0600
    # before MLflow opens it, and tighten one left behind by an older start.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(auth_dir / "basic_auth.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    log_path = auth_dir / "server.log"
    os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    restrict_auth_files(auth_dir)
    return config, log_path


def _server_env(config: Path, auth_dir: Path, governance_file: Path | None) -> dict[str, str]:
    """The server's environment: this one without credentials or password variables, plus its own settings."""
    from frugalml.governance.service import GOVERNANCE_DIR_ENV, GOVERNANCE_FILE_ENV

    env = {key: value for key, value in os.environ.items() if key not in _CHILD_ENV_DROPPED}
    env = {key: value for key, value in env.items() if not key.startswith(USER_PASSWORD_ENV_PREFIX)}
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_urlsafe(32))  # CSRF key of the UI forms
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    env[GOVERNANCE_DIR_ENV] = str(auth_dir / "governance")
    env.pop(GOVERNANCE_FILE_ENV, None)
    if governance_file is not None:
        env[GOVERNANCE_FILE_ENV] = str(Path(governance_file).resolve())
    return env


def _server_command(host: str, port: int, backend_store_uri: str, artifacts_destination: str) -> list[str]:
    """``python -m mlflow server --app-name frugalml`` with one worker on ``host:port``."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "frugalml",  # basic-auth + the governance service (frugalml.governance.service)
        "--host",
        host.strip("[]"),
        "--port",
        str(port),
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--workers",
        "1",
    ]
