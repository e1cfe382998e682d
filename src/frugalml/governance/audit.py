"""Append-only, hash-chained audit trail (JSON lines).

Each record is ``{"seq", "ts", "kind", "actor", "run_id", "data", "prev", "hash"}`` where ``hash`` is the
SHA-256 of the record's canonical JSON without ``hash``, and ``prev`` is the previous record's ``hash`` (the
first record's ``prev`` is the chain's ``genesis``: 64 zeros, or the last purged record's hash after a purge).
Editing, deleting, inserting or reordering a record breaks the chain at that record; deleting records at the
*end* is caught by anchors (the head hash recorded elsewhere: ``anchors.jsonl`` beside the log and the
``audit.head`` tag of each MLflow run).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from frugalml.errors import AuditIntegrityError, RetentionError

GENESIS = "0" * 64

# The event catalogue: every `kind` the audit trail records, with what it means (docs/governance.md).
EVENT_KINDS: dict[str, str] = {
    "pipeline.start": "a kedro run starts: user, command, pipeline, env, git commit, parameters digest",
    "pipeline.end": "a kedro run finished successfully",
    "pipeline.error": "a kedro run failed: the error",
    "node.start": "a node starts",
    "node.end": "a node finished",
    "node.error": "a node raised",
    "dataset.load": "a dataset was read: name, layer, content hash, rows",
    "dataset.save": "a dataset was written: name, layer, content hash, rows",
    "params.snapshot": "every parameter value of the run",
    "config.change": "a configuration file changed since the previous run (digests before/after)",
    "rbac.allowed": "an access check passed",
    "rbac.refused": "an access check refused a user (unknown user, missing role, bad credentials)",
    "approval.requested": "a two-person operation was requested",
    "approval.granted": "a second person approved a request",
    "approval.refused": "an approval was refused (self-approval, unknown or used request, not an approver)",
    "approval.used": "an approved request was consumed by its operation",
    "audit.anchor": "the chain head was anchored (MLflow tag, anchors file)",
    "audit.purge": "records older than the retention period were purged; the new genesis is recorded",
    "audit.purge_refused": "a purge that would cut below retention was refused",
    "audit.verify": "the chain was verified (result)",
    "registry.register": "a model version was registered",
    "registry.alias": "a registry alias changed (e.g. production)",
    "registry.delete_run": "an MLflow run was deleted (with its approved request)",
    "privacy.spend": "a DP training spent (epsilon, delta) of a dataset's budget",
    "watermark.verify": "a model's watermark was verified",
    "check.run": "the deployment checklist ran (each item's result)",
}


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 of a record without its ``hash`` field.

    Args:
        record: An audit record.

    Returns:
        The hex digest.
    """
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`AuditLog.verify`."""

    ok: bool
    records: int
    head: str
    first_bad_line: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.records} records, head {self.head[:16]}"
        return f"audit chain BROKEN at line {self.first_bad_line}: {self.reason}"


class AuditLog:
    """The audit trail at ``path`` (created on first append), with its anchors file beside it."""

    def __init__(self, path: str | Path, *, retention_days: int = 180) -> None:
        """Open (lazily) an audit log.

        Args:
            path: The JSON-lines file.
            retention_days: Records younger than this cannot be purged.
        """
        self.path = Path(path)
        self.anchors_path = self.path.with_name(self.path.stem + ".anchors.jsonl")
        self.retention_days = retention_days

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
            return 0, self._genesis()
        with self.path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = position = handle.tell()
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
            del end
        return 0, self._genesis()

    def _genesis(self) -> str:
        """The chain's starting hash: zeros, or the last purged record's hash (kept in the anchors file)."""
        return self._genesis_anchor()[1]

    def _genesis_anchor(self) -> tuple[int, str]:
        seq, genesis = 0, GENESIS
        for anchor in self.anchors():
            if anchor.get("kind") == "genesis":
                seq, genesis = int(anchor["seq"]), anchor["hash"]
        return seq, genesis

    def anchors(self) -> list[dict[str, Any]]:
        """Recorded anchors (heads, and the genesis after a purge).

        Returns:
            The anchors in order.
        """
        if not self.anchors_path.exists():
            return []
        out = []
        for line in self.anchors_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

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
                handle.write(_canonical(record).decode() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return record

    def anchor(self, *, actor: str, run_id: str | None = None) -> dict[str, Any]:
        """Record the current head in the anchors file (and as an ``audit.anchor`` event).

        Args:
            actor: Who anchors.
            run_id: The MLflow run that carries the head as a tag, if any.

        Returns:
            The anchor ``{"seq", "hash", "ts"}``.
        """
        seq, head = self._tail()
        anchor = {"kind": "head", "seq": seq, "hash": head, "ts": datetime.now(UTC).isoformat(), "run_id": run_id}
        with self.anchors_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(anchor) + "\n")
        self.append("audit.anchor", actor=actor, run_id=run_id, seq=seq, head=head)
        return anchor

    # --- verification ----------------------------------------------------------------------------------
    def verify(self, *, extra_anchors: list[tuple[int, str]] | None = None) -> VerifyResult:
        """Check the whole chain and every anchor.

        Args:
            extra_anchors: ``(seq, hash)`` pairs recorded elsewhere (e.g. MLflow run tags).

        Returns:
            The result, naming the first bad line.
        """
        prev, expected_seq, count, head = self._genesis(), None, 0, self._genesis()
        by_seq: dict[int, str] = {}
        for number, line in self._lines():
            if not line.endswith("\n"):
                return VerifyResult(False, count, head, number, "the last record is truncated (no line end)")
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return VerifyResult(False, count, head, number, "the line is not valid JSON (edited or truncated)")
            if not isinstance(record, dict) or "hash" not in record or "seq" not in record:
                return VerifyResult(False, count, head, number, "the line is not an audit record")
            if record_hash(record) != record["hash"]:
                return VerifyResult(False, count, head, number, f"record seq {record['seq']} was edited")
            if expected_seq is not None and record["seq"] != expected_seq:
                what = "deleted or reordered" if record["seq"] > expected_seq else "inserted or reordered"
                return VerifyResult(
                    False,
                    count,
                    head,
                    number,
                    f"record seq {record['seq']} follows seq {expected_seq - 1}: records were {what}",
                )
            if record["prev"] != prev:
                return VerifyResult(
                    False,
                    count,
                    head,
                    number,
                    f"record seq {record['seq']} does not chain to the record before it (inserted, deleted or "
                    "reordered records)",
                )
            prev, head, expected_seq = record["hash"], record["hash"], record["seq"] + 1
            by_seq[record["seq"]] = record["hash"]
            count += 1
        purged_through = self._genesis_anchor()[0]
        anchors = [(a["seq"], a["hash"]) for a in self.anchors() if a.get("kind") == "head"]
        for seq, digest in anchors + list(extra_anchors or []):
            if seq <= purged_through:
                continue  # purged (the genesis anchor vouches for it)
            if seq not in by_seq:
                return VerifyResult(
                    False,
                    count,
                    head,
                    count + 1,
                    f"anchored record seq {seq} is missing: records at the end were deleted",
                )
            if by_seq[seq] != digest:
                return VerifyResult(False, count, head, seq, f"record seq {seq} differs from its anchored hash")
        return VerifyResult(True, count, head)

    def require_intact(self) -> VerifyResult:
        """Verify or raise.

        Returns:
            The (passing) result.

        Raises:
            AuditIntegrityError: Naming the first bad record.
        """
        result = self.verify()
        if not result.ok:
            raise AuditIntegrityError(str(result))
        return result

    # --- retention -------------------------------------------------------------------------------------
    def purge(self, before: datetime, *, actor: str, now: datetime | None = None) -> int:
        """Remove records older than ``before``, keeping the chain verifiable (new genesis anchored).

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
        genesis = removed[-1]["hash"]
        temporary = self.path.with_suffix(".purge.tmp")
        temporary.write_text("".join(_canonical(r).decode() + "\n" for r in kept), encoding="utf-8")
        with self.anchors_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"kind": "genesis", "seq": removed[-1]["seq"], "hash": genesis}) + "\n")
        temporary.replace(self.path)
        self.append("audit.purge", actor=actor, before=before.isoformat(), removed=len(removed), genesis=genesis)
        return len(removed)
