"""The governance service inside frugalml's MLflow server (``mlflow server --app-name frugalml``).

MLflow's ``basic-auth`` app authenticates every request; on top of it this app adds, under
``/api/2.0/frugalml/``, what must not live in files the acting user can write:

- **witness**: it signs tree heads of the project's audit chain (ed25519 key in the server's own folder) only
  for records that extend the head it signed before, keeps that head, and signs a purge's genesis only for
  records older than the retention period. ``audit verify`` compares the local chain with it.
- **approvals**: two-person requests, approvals and their one-time use, stored in the server's SQLite file;
  consuming is one transaction (``BEGIN IMMEDIATE``), so two processes can never use one approval.
  Requests carry validated details; an approval names the digest of the details the approver was shown.
- **registry guard**: the protected aliases (``production``) and stage transitions to Production move only
  through ``POST /api/2.0/frugalml/registry/promote`` with an approved ``promote_production`` request;
  the REST API refuses them for everyone, admins included. Deleting runs goes through the same rule.
- **governance of record**: the server's copy of ``conf/base/governance.yml`` (read at start) is the baseline
  against which a project's effective governance is checked; approved ``change_governance`` digests are kept.

Configuration comes from the environment the server is started with (``frugalml.governance.server``):
``FRUGALML_GOVERNANCE_DIR`` (state folder, mode 0700) and ``FRUGALML_GOVERNANCE_FILE`` (governance.yml).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

GOVERNANCE_DIR_ENV = "FRUGALML_GOVERNANCE_DIR"
GOVERNANCE_FILE_ENV = "FRUGALML_GOVERNANCE_FILE"
API = "/api/2.0/frugalml"
#: REST routes the guard inspects (both ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow``, preview prefix too).
_GUARDED = re.compile(
    r"/(?:api|ajax-api)/\d\.0/(?:preview/)?mlflow/"
    r"(registered-models/alias|model-versions/transition-stage|model-versions/delete|registered-models/delete|"
    r"registered-models/rename|runs/delete|experiments/delete|runs/set-tag|runs/delete-tag|runs/log-batch|"
    r"runs/create)$"
)
ANCHOR_TAG = "audit.head"
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


#: Governed routes refused outright: deleting goes through the CLI's two-person flow.
_DELETE_REFUSALS = {
    "runs/delete": "runs are deleted only through `frugalml runs delete` (an approved delete_runs request)",
    "experiments/delete": "deleting an experiment deletes its runs: refused on a governed server (use `frugalml runs "
    "delete`)",
}


def _values(sources: Sequence[dict[str, Any]], key: str) -> list[Any]:
    """Every value of ``key`` in every place MLflow may read it from."""
    return [source[key] for source in sources if key in source]


def _move_refusal(route: str, sources: list[dict[str, Any]], protected: set[str]) -> str | None:
    """Why setting a protected alias, or a stage transition to Production/Staging, is refused (None: it is not).

    A request that names no alias (or no stage) is refused too: fail closed.
    """
    if route == "registered-models/alias":
        aliases = _values(sources, "alias")
        if not aliases or any(str(v).strip().lower() in protected for v in aliases):
            return ("the protected aliases (" + ", ".join(sorted(protected)) + ") move only through `frugalml "
                    "promote` (an approved promote_production request and a passing checklist)")  # fmt: skip
        return None
    stages = _values(sources, "stage")
    if not stages or any(str(v).strip().lower() in ("production", "staging") for v in stages):
        return "stage transitions to Production/Staging are refused: use `frugalml promote` (aliases)"
    return None


class ServiceError(Exception):
    """A refusal with an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class GovernanceService:
    """The server-side state and rules (no Flask here, so it can be reasoned about and tested directly)."""

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

    # --- identity and roles ----------------------------------------------------------------------------
    def _check_writer(self, user: str) -> None:
        """Only users who may run pipelines (or ``audit.anchor``) extend the witnessed chain."""
        from frugalml.errors import AccessDenied
        from frugalml.governance.rbac import Identity, roles_of

        try:
            roles = roles_of(self.config, Identity(user, "mlflow-server", authenticated=True))
        except AccessDenied as error:
            raise ServiceError(403, str(error)) from None
        import fnmatch

        if not any(self.config.roles[r].pipelines or any(fnmatch.fnmatchcase("audit.anchor", o)
                                                         for o in self.config.roles[r].operations)
                   for r in roles):  # fmt: skip
            raise ServiceError(403, f"user {user!r} (roles {roles}) may not write to the audit trail")

    def _check(self, user: str, operation: str) -> None:
        from frugalml.errors import AccessDenied
        from frugalml.governance.rbac import Identity, check_operation

        try:
            check_operation(self.config, Identity(user, "mlflow-server", authenticated=True), operation)
        except AccessDenied as error:
            raise ServiceError(403, str(error)) from None

    # --- witness ---------------------------------------------------------------------------------------
    def _state(self, db: sqlite3.Connection, key: str) -> Any:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else None

    def witness_state(self) -> dict[str, Any]:
        """The public key, the latest signed head and the genesis.

        Returns:
            ``{"public_key", "head", "genesis"}``.
        """
        with self._connect() as db:
            return {"public_key": self.key.public_text, "head": self._state(db, "head"),
                    "genesis": self._state(db, "genesis")}  # fmt: skip

    def witness_anchor(self, user: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Sign a head for records that extend the witnessed chain.

        Args:
            user: The authenticated caller (any user who may run pipelines or operations).
            records: The records after the witnessed head, in order (all of them the first time).

        Returns:
            The signed head.

        Raises:
            ServiceError: 409 when the records do not extend the witnessed head (a rewritten chain).
        """
        from frugalml.governance.audit import GENESIS, verify_chain_records
        from frugalml.governance.merkle import merkle_root

        self._check_writer(user)
        if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("ts"), str)
                                                    and type(r.get("seq")) is int and 0 < r["seq"] < 2**62
                                                    for r in records):  # fmt: skip
            raise ServiceError(400, "records must be a list of audit records (seq, ts, hash, prev)")
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            head = self._state(db, "head")
            genesis = self._state(db, "genesis")
            seq, prev = (
                (int(head["seq"]), head["hash"])
                if head
                else ((int(genesis["seq"]), genesis["hash"]) if genesis else (0, GENESIS))
            )
            problem = verify_chain_records(records, prev, seq + 1)
            if problem is not None:
                db.execute("ROLLBACK")
                raise ServiceError(409, f"the audit chain does not extend the head the witness signed at seq {seq}: "
                                   f"{problem}")  # fmt: skip
            if not records and head:
                db.execute("ROLLBACK")
                return head
            received = datetime.now(UTC).isoformat()  # the witness's own clock: what a purge goes by
            db.executemany("INSERT INTO records (seq, hash, ts, received) VALUES (?, ?, ?, ?)",
                           [(r["seq"], r["hash"], str(r["ts"]), received) for r in records])  # fmt: skip
            first = int(genesis["seq"]) + 1 if genesis else 1
            hashes = [row["hash"] for row in db.execute("SELECT hash FROM records WHERE seq >= ? ORDER BY seq",
                                                       (first,))]  # fmt: skip
            last = records[-1] if records else {"seq": seq, "hash": prev}
            signed = self.key.sign({"kind": "head", "first_seq": first, "seq": int(last["seq"]),
                                    "hash": last["hash"], "root": merkle_root(hashes),
                                    "ts": datetime.now(UTC).isoformat(), "witnessed_for": user})  # fmt: skip
            db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('head', ?)", (json.dumps(signed),))
            db.execute("INSERT OR REPLACE INTO anchors (seq, body) VALUES (?, ?)", (signed["seq"], json.dumps(signed)))
            db.execute("COMMIT")
        return signed

    def witness_purge(self, user: str, before: str) -> dict[str, Any]:
        """Sign a genesis that drops the witnessed records older than ``before`` (never within retention).

        Args:
            user: The caller (needs the ``audit.purge`` operation).
            before: ISO time.

        Returns:
            The signed genesis.

        Raises:
            ServiceError: 403 for a user who may not purge or a date within retention, 409 when nothing is older.
        """
        self._check(user, "audit.purge")
        try:
            cut = datetime.fromisoformat(before)
        except (TypeError, ValueError):
            raise ServiceError(400, f"before must be an ISO date, got {before!r}") from None
        cut = cut if cut.tzinfo else cut.replace(tzinfo=UTC)
        retention = max(180, self.config.audit.retention_days)
        if cut > datetime.now(UTC) - timedelta(days=retention):
            raise ServiceError(403, f"the witness keeps {retention} days of audit records: no purge before "
                               f"{cut.date()}")  # fmt: skip
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT seq, hash, ts, received FROM records ORDER BY seq").fetchall()
            older = []
            for row in rows:  # a prefix only, by the witness's receive time (a back-dated `ts` buys nothing)
                if datetime.fromisoformat(row["received"]) >= cut or datetime.fromisoformat(row["ts"]) >= cut:
                    break
                older.append(row)
            if not older:
                db.execute("ROLLBACK")
                raise ServiceError(409, "no witnessed record is older than that date")
            last = older[-1]
            genesis = self.key.sign({"kind": "genesis", "seq": int(last["seq"]), "hash": last["hash"],
                                     "before": cut.isoformat(), "ts": datetime.now(UTC).isoformat(),
                                     "purged_by": user})  # fmt: skip
            db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('genesis', ?)", (json.dumps(genesis),))
            db.execute("DELETE FROM records WHERE seq <= ?", (int(last["seq"]),))
            db.execute("COMMIT")
        return genesis

    # --- approvals -------------------------------------------------------------------------------------
    @staticmethod
    def _public(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["details"] = json.loads(out["details"])
        out["state"] = "used" if out["used_by"] else "approved" if out["approved_by"] else "pending"
        return out

    def request(self, user: str, operation: str, details: Any) -> dict[str, Any]:
        """File a two-person request with validated details.

        Args:
            user: The requester (needs ``request``).
            operation: One of the two-person operations.
            details: The operation's details (validated: required keys, finite bounded values).

        Returns:
            The request, signed.

        Raises:
            ServiceError: 403 without the role, 400 for an unknown operation or bad details.
        """
        from frugalml.errors import ApprovalError
        from frugalml.governance.approvals import details_digest, validate_details

        self._check(user, "request")
        if operation not in self.config.two_person_operations:
            raise ServiceError(400, f"{operation!r} is not a two-person operation: {self.config.two_person_operations}")
        try:
            clean = validate_details(operation, details, self.config)
        except ApprovalError as error:
            raise ServiceError(400, str(error)) from None
        request_id = uuid.uuid4().hex[:16]
        with self._connect() as db:
            db.execute("INSERT INTO requests (id, operation, details, digest, requested_by, requested_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (request_id, operation, json.dumps(clean, sort_keys=True),
                                                     details_digest(clean), user,
                                                     datetime.now(UTC).isoformat()))  # fmt: skip
        return self.get(request_id)

    def get(self, request_id: str) -> dict[str, Any]:
        """One request, signed by the server.

        Args:
            request_id: Its id.

        Returns:
            The request with its state.

        Raises:
            ServiceError: 404 when unknown.
        """
        with self._connect() as db:
            row = db.execute("SELECT * FROM requests WHERE id = ?", (str(request_id),)).fetchone()
        if row is None:
            raise ServiceError(404, f"no request {request_id!r}")
        return self.key.sign(self._public(row))

    def list(self) -> list[dict[str, Any]]:
        """Every request, oldest first.

        Returns:
            Requests with their state.
        """
        with self._connect() as db:
            return [self._public(r) for r in db.execute("SELECT * FROM requests ORDER BY requested_at")]

    def approve(self, user: str, request_id: str, digest: str) -> dict[str, Any]:
        """A second person approves the details they were shown (their digest must match).

        Args:
            user: The approver (needs ``approve``; not the requester).
            request_id: The request.
            digest: :func:`frugalml.governance.approvals.details_digest` of the details shown to them.

        Returns:
            The approved request, signed.

        Raises:
            ServiceError: 403 self-approval or no role, 404 unknown, 409 not pending or details changed.
        """
        self._check(user, "approve")
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT * FROM requests WHERE id = ?", (str(request_id),)).fetchone()
            problem = None
            if row is None:
                problem = ServiceError(404, f"no request {request_id!r}")
            elif row["used_by"] or row["approved_by"]:
                problem = ServiceError(409, f"request {request_id!r} is already {self._public(row)['state']}")
            elif row["requested_by"] == user:
                problem = ServiceError(403, f"user {user!r} cannot approve their own request {request_id!r}")
            elif row["digest"] != digest:
                problem = ServiceError(
                    409,
                    f"request {request_id!r}: the details you approve are not the ones "
                    "requested (digest differs); look at them again with `frugalml approvals`",
                )
            if problem is not None:
                db.execute("ROLLBACK")
                raise problem
            db.execute("UPDATE requests SET approved_by = ?, approved_at = ? WHERE id = ?",
                       (user, datetime.now(UTC).isoformat(), request_id))  # fmt: skip
            db.execute("COMMIT")
        return self.get(request_id)

    def consume(self, user: str, request_id: str, operation: str, expect: dict[str, Any]) -> dict[str, Any]:
        """Use an approved request once, atomically, for exactly the target it was approved for.

        Args:
            user: Who performs the operation (must be the requester).
            request_id: The request.
            operation: The operation being performed.
            expect: Detail values the operation's target has (each must equal the approved one).

        Returns:
            The used request, signed (the receipt).

        Raises:
            ServiceError: 404 unknown; 409 not approved, used, other operation, other target; 403 not the requester.
        """
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT * FROM requests WHERE id = ?", (str(request_id),)).fetchone()
            problem = self._consume_problem(row, user, request_id, operation, expect)
            if problem is not None:
                db.execute("ROLLBACK")
                raise problem
            db.execute(
                "UPDATE requests SET used_by = ?, used_at = ?, used_for = ? WHERE id = ? AND used_by IS NULL",
                (user, datetime.now(UTC).isoformat(), json.dumps(expect, sort_keys=True), request_id),
            )
            db.execute("COMMIT")
        return self.get(request_id)

    def _consume_problem(self, row: sqlite3.Row | None, user: str, request_id: str, operation: str,
                         expect: dict[str, Any]) -> ServiceError | None:  # fmt: skip
        if row is None:
            return ServiceError(404, f"no request {request_id!r}")
        state = self._public(row)
        if row["operation"] != operation:
            return ServiceError(409, f"request {request_id!r} is for {row['operation']!r}, not {operation!r}")
        if state["state"] != "approved":
            return ServiceError(409, f"request {request_id!r} is {state['state']}, not approved")
        if row["requested_by"] != user:
            return ServiceError(403, f"request {request_id!r} belongs to {row['requested_by']!r}")
        differs = {k: v for k, v in (expect or {}).items() if str(state["details"].get(k)) != str(v)}
        if differs:
            return ServiceError(409, f"request {request_id!r} was approved for {state['details']}, not for {differs}")
        return None

    # --- governance of record --------------------------------------------------------------------------
    def governance(self) -> dict[str, Any]:
        """The server's governance config and the digests approved by ``change_governance``.

        Returns:
            ``{"config", "accepted"}``, signed.
        """
        with self._connect() as db:
            accepted = [r["digest"] for r in db.execute("SELECT digest FROM accepted_governance")]
        return self.key.sign({"config": self.config.model_dump(mode="json"), "accepted": accepted})

    def accept_governance(self, user: str, request_id: str, digest: str) -> dict[str, Any]:
        """Consume a ``change_governance`` approval and remember its digest as accepted.

        Args:
            user: The requester.
            request_id: The approved request.
            digest: The effective config's digest.

        Returns:
            The receipt.
        """
        receipt = self.consume(user, request_id, "change_governance", {"digest": digest})
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO accepted_governance (digest, request_id, ts) VALUES (?, ?, ?)",
                       (digest, request_id, datetime.now(UTC).isoformat()))  # fmt: skip
        return receipt

    # --- registry --------------------------------------------------------------------------------------
    def promote(self, user: str, model: str, version: str, request_id: str) -> dict[str, Any]:
        """Set the production alias under an approved ``promote_production`` request (the only way).

        Args:
            user: The requester of the approval (needs ``promote``).
            model: Registered model.
            version: Its version.
            request_id: The approved request.

        Returns:
            The receipt.

        Raises:
            ServiceError: Refusals of :meth:`consume`, 404 for an unknown model version.
        """
        from mlflow.exceptions import MlflowException
        from mlflow.server.handlers import _get_model_registry_store

        self._check(user, "promote")
        store = _get_model_registry_store()
        try:
            store.get_model_version(model, str(version))
        except MlflowException as error:
            raise ServiceError(404, f"no model version {model} v{version}: {error.message}") from None
        receipt = self.consume(user, request_id, "promote_production", {"model": model, "version": str(version)})
        store.set_registered_model_alias(name=model, alias="production", version=str(version))
        return receipt

    def delete_runs(self, user: str, run_ids: list[str], request_id: str) -> dict[str, Any]:
        """Delete runs under an approved ``delete_runs`` request naming exactly these runs.

        Args:
            user: The requester (needs ``delete_runs``).
            run_ids: The runs.
            request_id: The approved request.

        Returns:
            The receipt.
        """
        from mlflow.server.handlers import _get_tracking_store

        self._check(user, "delete_runs")
        store = _get_tracking_store()
        for run_id in run_ids:
            store.get_run(run_id)  # exists (raises otherwise)
        receipt = self.consume(user, request_id, "delete_runs", {"run_ids": ",".join(run_ids)})
        for run_id in run_ids:
            store.delete_run(run_id)
        return receipt

    def guard(self, path: str, method: str, sources: list[dict[str, Any]] | None) -> str | None:
        """Why a REST call that would move a protected alias, a stage, delete runs or touch an audit anchor is
        refused, or None.

        Args:
            path: The request path.
            method: HTTP method.
            sources: Every place MLflow may read the parameters from (query string, the JSON body however it was
                sent); None when a body was sent that cannot be parsed (refused: fail closed).

        Returns:
            A refusal message, or None to let the call through.
        """
        match = _GUARDED.search(path)
        if match is None or method not in ("POST", "DELETE", "PATCH", "PUT"):
            return None
        route = match.group(1)
        if sources is None:
            return f"{route}: a request body that cannot be parsed as JSON is refused on a governed route"
        protected = {a.lower() for a in self.config.registry.protected_aliases}
        if route in ("registered-models/alias", "model-versions/transition-stage"):
            return _move_refusal(route, sources, protected)
        if route in _DELETE_REFUSALS:
            return _DELETE_REFUSALS[route]
        if route in ("runs/set-tag", "runs/delete-tag", "runs/log-batch", "runs/create"):
            return self._anchor_tag_problem(route, sources)
        return self._model_refusal(route, sources, protected)

    def _model_refusal(self, route: str, sources: Sequence[dict[str, Any]], protected: set[str]) -> str | None:
        """Why deleting or renaming a model, or deleting a version, is refused: it holds a protected alias."""
        names = {str(v) for v in _values(sources, "name")}
        if len(names) != 1:
            return f"{route}: exactly one model name is required on a governed route"
        held = self._protected_versions(names.pop(), protected)
        if held is None:
            return None  # no such model: MLflow answers itself
        if route == "model-versions/delete":
            try:
                versions = {int(str(v).strip()) for v in _values(sources, "version")}
            except ValueError:
                return "model-versions/delete: the version must be a whole number"
            hit = sorted(alias for alias, version in held.items() if version in versions)
            return f"that version holds the protected alias(es) {hit}: it cannot be deleted" if hit else None
        if held:
            return f"the model holds the protected alias(es) {sorted(held)}: it cannot be deleted or renamed"
        return None

    @staticmethod
    def _protected_versions(name: str, protected: set[str]) -> dict[str, int] | None:
        from mlflow.exceptions import MlflowException
        from mlflow.server.handlers import _get_model_registry_store

        try:
            model = _get_model_registry_store().get_registered_model(name)
        except MlflowException:
            return None
        return {alias: int(v) for alias, v in (model.aliases or {}).items() if alias.lower() in protected}

    def _anchor_tag_problem(self, route: str, sources: list[dict[str, Any]]) -> str | None:
        """An ``audit.head`` run tag may only be set to a head this witness signed; never deleted."""
        from frugalml.governance.signing import TrustedKeys

        tags: list[tuple[Any, Any]] = []
        for source in sources:
            if route == "runs/delete-tag" and str(source.get("key")) == ANCHOR_TAG:
                return f"the {ANCHOR_TAG} tag is an audit anchor: it cannot be deleted"
            if route == "runs/set-tag":
                tags.append((source.get("key"), source.get("value")))
            for tag in source.get("tags") or [] if route in ("runs/log-batch", "runs/create") else []:
                if isinstance(tag, dict):
                    tags.append((tag.get("key"), tag.get("value")))
        trusted = TrustedKeys()
        trusted.add("witness", self.key.public_text)
        for key, value in tags:
            if str(key) != ANCHOR_TAG:
                continue
            try:
                head = json.loads(str(value))
            except (ValueError, RecursionError):
                head = None
            if trusted.check(head, roles={"witness"}) is not None:
                return f"the {ANCHOR_TAG} tag may only hold a tree head signed by this governance server"
        return None


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
    import mlflow.server.auth as basic_auth

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
        if request.path.startswith(API) or _GUARDED.search(request.path) is None:
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
