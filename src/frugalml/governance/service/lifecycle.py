"""Two-person requests: filing, approving (a second person, for the digest of the details they were shown) and
consuming once, atomically (``BEGIN IMMEDIATE``); and the governance of record, whose changes are approved so."""

from __future__ import annotations

import builtins
import json
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

from frugalml.governance.service.state import ServiceError, ServiceState


class RequestLifecycle(ServiceState):
    """Requests, approvals and their one-time use, stored in the service's SQLite file.

    The class defines a method named ``list``, which shadows the builtin in its body: annotations there spell
    it ``builtins.list``.
    """

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

    def list(self) -> builtins.list[dict[str, Any]]:
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
