"""The governance service's state: its folder (mode 0700), witness key, SQLite database and governance config,
and the role check every operation starts with."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, ts TEXT NOT NULL,
                                    received TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS anchors (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY, operation TEXT NOT NULL, details TEXT NOT NULL, digest TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at TEXT NOT NULL,
    approved_by TEXT, approved_at TEXT, used_by TEXT, used_at TEXT, used_for TEXT);
CREATE TABLE IF NOT EXISTS accepted_governance (digest TEXT PRIMARY KEY, request_id TEXT NOT NULL, ts TEXT);
"""


class ServiceError(Exception):
    """A refusal with an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ServiceState:
    """The state every part of the service shares (no Flask here, so it can be reasoned about and tested directly)."""

    def __init__(self, directory: str | Path, governance_file: str | Path | None) -> None:
        from frugalml.governance.rbac import load_governance_file
        from frugalml.governance.signing import SigningKey

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        self.key = SigningKey.load_or_create(self.directory / "witness.key", "witness")
        (self.directory / "witness.fingerprint").write_text(self.key.fingerprint + "\n")  # public: to pin
        self.config = load_governance_file(governance_file)
        self.database = self.directory / "governance.db"
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self.database.chmod(0o600)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    def _check(self, user: str, operation: str) -> None:
        from frugalml.errors import AccessDenied
        from frugalml.governance.rbac import Identity, check_operation

        try:
            check_operation(self.config, Identity(user, "mlflow-server", authenticated=True), operation)
        except AccessDenied as error:
            raise ServiceError(403, str(error)) from None
