"""The witness: it signs tree heads of a project's audit chain only for records that extend the head it signed
before, keeps that head, and signs a purge's genesis only for records older than the retention period."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from frugalml.governance.service.state import ServiceError, ServiceState


class WitnessOperations(ServiceState):
    """The witness's side of :class:`frugalml.governance.audit.Witness`, for authenticated callers."""

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

    def witness_anchor(self, user: str, records: object) -> dict[str, Any]:
        """Sign a head for records that extend the witnessed chain.

        Args:
            user: The authenticated caller (any user who may run pipelines or operations).
            records: The records after the witnessed head, in order (all of them the first time), as sent: anything
                but a list of records is refused.

        Returns:
            The signed head.

        Raises:
            ServiceError: 400 for what is not a list of records, 409 when the records do not extend the witnessed
                head (a rewritten chain).
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

    def witness_purge(self, user: str, before: object) -> dict[str, Any]:
        """Sign a genesis that drops the witnessed records older than ``before`` (never within retention).

        Args:
            user: The caller (needs the ``audit.purge`` operation).
            before: ISO time, as sent (anything else is refused).

        Returns:
            The signed genesis.

        Raises:
            ServiceError: 400 for what is not an ISO date, 403 for a user who may not purge or a date within
                retention, 409 when nothing is older.
        """
        self._check(user, "audit.purge")
        if not isinstance(before, str):
            raise ServiceError(400, f"before must be an ISO date, got {before!r}")
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
