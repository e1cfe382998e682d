"""The audit log: appending to the chain, anchoring its head (signed by the witness or a local key), verifying
it (:mod:`.verification`) and purging past retention under a signed genesis."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from frugalml.errors import AuditIntegrityError, GovernanceError, RetentionError
from frugalml.governance.audit.records import EVENT_KINDS, GENESIS, canonical_record, record_hash
from frugalml.governance.audit.verification import VerifyResult, verify_trail
from frugalml.governance.merkle import merkle_root
from frugalml.governance.signing import SigningKey, TrustedKeys


class Witness(Protocol):
    """The governance server's side of anchoring (see :class:`frugalml.governance.client.GovernanceClient`)."""

    public_text: str

    def witness_state(self) -> dict[str, Any]:
        """``{"public_key", "head", "genesis"}``: the latest signed head and genesis the server holds."""
        ...

    def witness_anchor(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Submit records that extend the witnessed head; returns the new signed head."""
        ...

    def witness_purge(self, before: str) -> dict[str, Any]:
        """Ask for a signed genesis that drops records before ``before`` (retention checked server-side)."""
        ...


class AuditLog:
    """The audit trail at ``path`` (created on first append), with its anchors file beside it.

    ``signer`` (a local key) or ``witness`` (the governance server) signs anchors; ``mlflow_anchors`` returns
    ``(where, tag value)`` pairs of the ``audit.head`` tags to cross-check. :meth:`require_intact` checks all
    of them; the privacy ledger and approvals call it before every decision.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention_days: int = 180,
        signer: SigningKey | None = None,
        witness: Witness | None = None,
        mlflow_anchors: Callable[[], list[tuple[str, str]]] | None = None,
    ) -> None:
        """Open (lazily) an audit log.

        Args:
            path: The JSON-lines file.
            retention_days: Records younger than this cannot be purged.
            signer: The local key that signs anchors when there is no witness.
            witness: The governance server that signs anchors (takes precedence over ``signer``).
            mlflow_anchors: Returns the ``audit.head`` tags of MLflow runs as ``(run id, value)``.
        """
        self.path = Path(path)
        self.anchors_path = self.path.with_name(self.path.stem + ".anchors.jsonl")
        self.retention_days = retention_days
        self.signer = signer
        self.witness = witness
        self.mlflow_anchors = mlflow_anchors

    # --- trust -----------------------------------------------------------------------------------------
    def trusted(self) -> TrustedKeys:
        """The keys whose anchors are accepted: the witness's and the local key's.

        Returns:
            Trusted public keys.
        """
        keys = TrustedKeys()
        if self.signer is not None:
            keys.add("local", self.signer.public_text)
        if self.witness is not None:
            keys.add("witness", self.witness.public_text)
        return keys

    def _vouched_by(self) -> str:
        if self.witness is not None:
            from frugalml.governance.signing import fingerprint_of

            return (f"anchors signed by the governance server (witness key "
                    f"{fingerprint_of(self.witness.public_text)})")  # fmt: skip
        if self.signer is not None:
            return (f"anchors signed by the local key {self.signer.fingerprint} (no witness: whoever can read "
                    "conf/local can re-sign; run the governance server, docs/server.md)")  # fmt: skip
        return "no signing key: anchors cannot be checked"

    # --- reading ---------------------------------------------------------------------------------------
    def _lines(self) -> Iterator[tuple[int, str]]:
        if not self.path.exists():
            return
        with self.path.open("r", encoding="utf-8") as handle:
            yield from enumerate(handle, start=1)

    def records(self) -> list[dict[str, Any]]:
        """Every record (no verification).

        Returns:
            The records, in file order.

        Raises:
            AuditIntegrityError: A line is not a JSON object (e.g. a truncated file).
        """
        out = []
        for number, line in self._lines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise AuditIntegrityError(f"audit line {number} is not valid JSON (truncated?): {error}") from None
            out.append(record)
        return out

    def _tail(self) -> tuple[int, str]:
        """(last seq, last hash), reading the file backwards from its end (appends stay O(1))."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return self._genesis_anchor()
        with self.path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            position = handle.tell()
            chunk = b""
            while position > 0:
                step = min(1 << 16, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step) + chunk
                lines = chunk.rstrip(b"\n").split(b"\n")
                if len(lines) > 1 or position == 0:
                    try:
                        record = json.loads(lines[-1])
                        return int(record["seq"]), str(record["hash"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        raise AuditIntegrityError(
                            f"the last record of {self.path} is damaged (truncated or edited): nothing more is "
                            "appended until it is repaired; run `frugalml audit verify`"
                        ) from None
        return self._genesis_anchor()

    def _genesis_anchor(self) -> tuple[int, str]:
        """(seq, hash) of the latest genesis anchor (after a purge), else ``(0, zeros)``; not verified here."""
        seq, genesis = 0, GENESIS
        for _, anchor in self._anchor_lines():
            if isinstance(anchor, dict) and anchor.get("kind") == "genesis":
                try:
                    seq, genesis = int(anchor["seq"]), str(anchor["hash"])
                except (KeyError, TypeError, ValueError):
                    continue  # verify() reports it
        return seq, genesis

    def _anchor_lines(self) -> list[tuple[int, Any]]:
        if not self.anchors_path.exists():
            return []
        out: list[tuple[int, Any]] = []
        for number, line in enumerate(self.anchors_path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    out.append((number, json.loads(line)))
                except json.JSONDecodeError:
                    out.append((number, line))
        return out

    def anchors(self) -> list[dict[str, Any]]:
        """Recorded anchors (signed heads, and the genesis after a purge), unverified.

        Returns:
            The anchors in order (malformed lines are left out here; :meth:`verify` fails on them).
        """
        return [anchor for _, anchor in self._anchor_lines() if isinstance(anchor, dict)]

    # --- writing ---------------------------------------------------------------------------------------
    def append(self, kind: str, *, actor: str, run_id: str | None = None, **data: Any) -> dict[str, Any]:
        """Append one record to the chain (file-locked, fsync'd).

        Args:
            kind: An event kind of :data:`EVENT_KINDS`.
            actor: The acting user.
            run_id: The MLflow run, if any.
            **data: The event's details (JSON-serialisable).

        Returns:
            The record written.

        Raises:
            ValueError: For a kind outside the catalogue.
        """
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown audit event kind {kind!r}; add it to EVENT_KINDS and docs/governance.md")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                seq, prev = self._tail()
                record = {
                    "seq": seq + 1,
                    "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
                    "kind": kind,
                    "actor": actor,
                    "run_id": run_id,
                    "data": data,
                    "prev": prev,
                }
                record["hash"] = record_hash(record)
                handle.write(canonical_record(record).decode() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return record

    def _write_anchor(self, anchor: dict[str, Any]) -> None:
        self.anchors_path.parent.mkdir(parents=True, exist_ok=True)
        with self.anchors_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(anchor, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def signed_head(self) -> dict[str, Any]:
        """A signed tree head of the chain as it is now (by the witness, else the local key).

        Returns:
            ``{"kind": "head", "first_seq", "seq", "hash", "root", "ts", "signer", "sig"}``.

        Raises:
            AuditIntegrityError: No key to sign with, or the witness refused (the chain does not extend what
                it signed before: rewritten or truncated).
        """
        if self.witness is not None:
            state = self.witness.witness_state()
            witnessed = int((state.get("head") or {}).get("seq", 0))
            records = [r for r in self.records() if int(r["seq"]) > witnessed]
            return self.witness.witness_anchor(records)
        if self.signer is None:
            raise AuditIntegrityError("no key to sign the audit head: open the log with a signer or a witness")
        records = self.records()
        genesis_seq, genesis_hash = self._genesis_anchor()
        head = {
            "kind": "head",
            "first_seq": genesis_seq + 1,
            "seq": int(records[-1]["seq"]) if records else genesis_seq,
            "hash": records[-1]["hash"] if records else genesis_hash,
            "root": merkle_root([r["hash"] for r in records]),
            "ts": datetime.now(UTC).isoformat(),
        }
        return self.signer.sign(head)

    def anchor(self, *, actor: str, run_id: str | None = None) -> dict[str, Any]:
        """Sign the current head, write it to the anchors file, record an ``audit.anchor`` event.

        Args:
            actor: Who anchors.
            run_id: The MLflow run that carries the head as a tag, if any.

        Returns:
            The signed head.
        """
        head = self.signed_head()
        self._write_anchor(head)
        self.append("audit.anchor", actor=actor, run_id=run_id, seq=head["seq"], head=head["hash"],
                    signer=head["signer"])  # fmt: skip
        return head

    # --- verification ----------------------------------------------------------------------------------
    def verify(self, *, extra_anchors: list[tuple[str, Any]] | None = None) -> VerifyResult:
        """Check the whole chain, every signed anchor, the MLflow anchors and the witness's head.

        Args:
            extra_anchors: ``(where, anchor)`` pairs recorded elsewhere (MLflow tag values, JSON text or
                objects), checked like the anchors file; ``mlflow_anchors`` of the log are added to them.

        Returns:
            The result, naming the first bad line or anchor.
        """
        try:
            return self._verify(extra_anchors)
        except GovernanceError as error:  # an unreachable witness: not verified, never "intact"
            return VerifyResult(False, 0, "", None, f"cannot verify: {error}")
        except (UnicodeDecodeError, RecursionError, ValueError, TypeError, KeyError, OverflowError) as error:
            return VerifyResult(False, 0, "", None, f"the trail or an anchor is malformed ({type(error).__name__}: "
                                f"{str(error)[:200]})")  # fmt: skip

    def _verify(self, extra_anchors: list[tuple[str, Any]] | None) -> VerifyResult:
        trusted = self.trusted()
        witness_state = self.witness.witness_state() if self.witness is not None else None
        result = verify_trail(self._lines(), self._anchor_lines(), anchors_name=self.anchors_path.name,
                              trusted=trusted, witness_state=witness_state, witnessed=self.witness is not None,
                              extra_anchors=extra_anchors)  # fmt: skip
        return replace(result, vouched_by=self._vouched_by()) if result.ok else result

    def verify_all(self) -> VerifyResult:
        """:meth:`verify` with the MLflow anchors of ``mlflow_anchors``.

        Returns:
            The result.
        """
        try:
            extra = self.mlflow_anchors() if self.mlflow_anchors is not None else []
        except GovernanceError as error:
            return VerifyResult(False, 0, "", None, f"cannot read the MLflow anchors: {error}")
        return self.verify(extra_anchors=extra)

    def require_intact(self) -> VerifyResult:
        """Verify everything (chain, signed anchors, MLflow anchors, witness) or raise.

        Returns:
            The (passing) result.

        Raises:
            AuditIntegrityError: Naming the first bad record or anchor.
        """
        result = self.verify_all()
        if not result.ok:
            raise AuditIntegrityError(str(result))
        return result

    # --- retention -------------------------------------------------------------------------------------
    def purge(self, before: datetime, *, actor: str, now: datetime | None = None) -> int:
        """Remove records older than ``before``, keeping the chain verifiable (a signed genesis).

        Args:
            before: Records with ``ts`` earlier than this are removed.
            actor: Who purges.
            now: The current time (for tests).

        Returns:
            How many records were removed.

        Raises:
            RetentionError: When ``before`` is later than now minus the retention period (audited).
            AuditIntegrityError: When the chain is broken (a purge never hides tampering).
        """
        now = now or datetime.now(UTC)
        floor = now - timedelta(days=self.retention_days)
        if before > floor:
            self.append(
                "audit.purge_refused", actor=actor, before=before.isoformat(), retention_days=self.retention_days
            )
            raise RetentionError(
                f"refusing to purge audit records before {before.date()}: records younger than "
                f"{self.retention_days} days (since {floor.date()}) must be kept"
            )
        self.require_intact()
        records = self.records()
        removed = [r for r in records if datetime.fromisoformat(r["ts"]) < before]
        if not removed:
            return 0
        kept = records[len(removed) :]
        if len(kept) + len(removed) != len(records) or any(
            datetime.fromisoformat(r["ts"]) < before for r in kept
        ):  # records are in time order in an intact chain; anything else is refused
            raise AuditIntegrityError("audit records are not in time order; refusing to purge")
        if self.witness is not None:
            self.anchor(actor=actor)  # the witness must have seen every record it is asked to drop
            genesis = self.witness.witness_purge(before.isoformat())
            if int(genesis["seq"]) != removed[-1]["seq"] or genesis["hash"] != removed[-1]["hash"]:
                raise AuditIntegrityError(
                    f"the witness signed a genesis at seq {genesis['seq']}, not at the last "
                    f"record to purge (seq {removed[-1]['seq']}); nothing was purged"
                )
        elif self.signer is not None:
            genesis = self.signer.sign({"kind": "genesis", "seq": removed[-1]["seq"], "hash": removed[-1]["hash"],
                                        "ts": now.isoformat(), "before": before.isoformat()})  # fmt: skip
        else:
            raise AuditIntegrityError("no key to sign the new genesis: open the log with a signer or a witness")
        temporary = self.path.with_suffix(".purge.tmp")
        temporary.write_text("".join(canonical_record(r).decode() + "\n" for r in kept), encoding="utf-8")
        self._write_anchor(genesis)
        temporary.replace(self.path)
        self.append("audit.purge", actor=actor, before=before.isoformat(), removed=len(removed),
                    genesis=genesis["hash"])  # fmt: skip
        return len(removed)
