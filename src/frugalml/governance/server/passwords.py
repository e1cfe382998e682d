"""Passwords of the governance server: the policy, where they come from, and the one file that holds one.

Passwords come from the environment (``FRUGALML_ADMIN_PASSWORD``, ``FRUGALML_PASSWORD_<USER>``), never from a
file in git, and are never logged nor put in an error. :func:`check_password` is the strength policy (zxcvbn);
the admin's password is stored only in MLflow's basic-auth ini file (:func:`write_auth_config`), for MLflow's
bootstrap, and removed from it as soon as the server answers (:func:`scrub_admin_password`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from frugalml.errors import GovernanceError

logger = logging.getLogger("frugalml.governance.server")  # one logger for the whole server package

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


def restrict_auth_files(directory: Path) -> None:
    """The auth folder 0700; its database (and SQLite's journal/WAL files), ini file and log 0600."""
    if not directory.is_dir():
        return
    directory.chmod(0o700)
    for name in ("basic_auth.db", "basic_auth.db-journal", "basic_auth.db-wal", "basic_auth.db-shm",
                 "basic_auth.ini", "server.log"):  # fmt: skip
        with contextlib.suppress(FileNotFoundError):
            (directory / name).chmod(0o600)
