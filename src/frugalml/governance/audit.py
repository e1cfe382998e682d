"""Append-only, hash-chained audit trail (JSON lines) with signed tree heads.

Each record is ``{"seq", "ts", "kind", "actor", "run_id", "data", "prev", "hash"}`` where ``hash`` is the
SHA-256 of the record's canonical JSON without ``hash``, and ``prev`` is the previous record's ``hash`` (the
first record's ``prev`` is the chain's ``genesis``: 64 zeros, or the last purged record's hash after a purge).
Editing, deleting, inserting or reordering a record breaks the chain at that record.

A hash chain alone can be rewritten by anyone who can write the file (recompute every hash). So the head is
*anchored* as a **signed tree head** (Certificate-Transparency style: ``{"kind": "head", "first_seq", "seq",
"hash", "root", "ts"}`` with an ed25519 signature; ``root`` is the RFC 6962 Merkle root of the record hashes, so
one record can be proven with :func:`frugalml.governance.merkle.inclusion_proof`). Anchors go to
``<log>.anchors.jsonl`` and the ``audit.head`` tag of each MLflow run. With the governance server, the
**witness** (the server, running as its own account) signs heads only for records that extend what it has
already seen, keeps the latest head itself and signs purges only past retention: rewriting, truncating or
deleting the chain is then detected even if every local file is replaced. Every anchor must carry a valid
signature by a trusted key; a malformed or unsigned anchor fails verification, it is never skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from frugalml.errors import AuditIntegrityError, GovernanceError, RetentionError
from frugalml.governance.merkle import merkle_root
from frugalml.governance.signing import SigningKey, TrustedKeys

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
    "governance.refused": "a configuration that weakens governance was refused (what it weakens)",
    "governance.accepted": "a configuration that weakens governance ran under an approved change_governance",
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
    vouched_by: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.records} records, head {self.head[:16]}; {self.vouched_by}"
        where = f" at line {self.first_bad_line}" if self.first_bad_line is not None else ""
        return f"audit chain BROKEN{where}: {self.reason}"


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
                handle.write(_canonical(record).decode() + "\n")
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
        try:
            genesis_seq, genesis_hash, heads = self._verify_anchor_file(trusted)
            if witness_state is not None:
                _verify_witness_genesis(trusted, witness_state, genesis_seq, genesis_hash)
            count, head, by_seq = self._verify_chain(genesis_seq, genesis_hash)
            heads += _extra_heads(trusted, extra_anchors, witness_state, count, head)
            _verify_heads(heads, by_seq, genesis_seq, count, head)
        except _Broken as broken:
            return broken.result
        return VerifyResult(True, count, head, vouched_by=self._vouched_by())

    def _verify_anchor_file(self, trusted: TrustedKeys) -> tuple[int, str, list[tuple[str, dict[str, Any]]]]:
        """1. The anchors file: every line signed by a trusted key; geneses by the witness when there is one.

        Returns:
            The last genesis ``(seq, hash)`` and the file's heads ``(where, anchor)``.
        """
        genesis_roles = {"witness"} if self.witness is not None else {"local", "witness"}
        heads: list[tuple[str, dict[str, Any]]] = []
        genesis_seq, genesis_hash = 0, GENESIS
        for number, anchor in self._anchor_lines():
            where = f"{self.anchors_path.name} line {number}"
            is_genesis = isinstance(anchor, dict) and anchor.get("kind") == "genesis"
            problem = trusted.check(anchor, roles=genesis_roles if is_genesis else None)
            if problem is None and not _well_formed(anchor):
                problem = "malformed (needs kind, seq and hash)"
            if problem is not None:
                raise _Broken(VerifyResult(False, 0, "", None, f"anchor {where} is not acceptable: {problem}"))
            if is_genesis:
                if int(anchor["seq"]) < genesis_seq:
                    raise _Broken(VerifyResult(False, 0, "", None,
                                               f"anchor {where}: a genesis older than the one before"))  # fmt: skip
                genesis_seq, genesis_hash = int(anchor["seq"]), str(anchor["hash"])
            else:
                heads.append((where, anchor))
        return genesis_seq, genesis_hash, heads

    def _verify_chain(self, genesis_seq: int, genesis_hash: str) -> tuple[int, str, dict[int, str]]:
        """2. The chain itself, from the genesis on.

        Returns:
            ``(records, head hash, seq -> record hash)``.
        """
        prev, expected_seq, count, head = genesis_hash, genesis_seq + 1, 0, genesis_hash
        by_seq: dict[int, str] = {}
        for number, line in self._lines():
            record = _next_record(line, prev, expected_seq)
            if isinstance(record, str):
                raise _Broken(VerifyResult(False, count, head, number, record))
            prev, head, expected_seq = record["hash"], record["hash"], record["seq"] + 1
            by_seq[record["seq"]] = record["hash"]
            count += 1
        return count, head, by_seq

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
        temporary.write_text("".join(_canonical(r).decode() + "\n" for r in kept), encoding="utf-8")
        self._write_anchor(genesis)
        temporary.replace(self.path)
        self.append("audit.purge", actor=actor, before=before.isoformat(), removed=len(removed),
                    genesis=genesis["hash"])  # fmt: skip
        return len(removed)


class _Broken(Exception):  # a verdict handed back from a verification step, caught in AuditLog._verify
    """A verification step found the trail broken; ``result`` says where and why."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(result.reason)
        self.result = result


def _verify_witness_genesis(trusted: TrustedKeys, witness_state: dict[str, Any], genesis_seq: int,
                            genesis_hash: str) -> None:  # fmt: skip
    """The chain starts where the witness purged it up to, under the genesis it signed."""
    served = witness_state.get("genesis")
    served_seq = int(served["seq"]) if served else 0
    if served and trusted.check(served, roles={"witness"}) is not None:
        raise _Broken(VerifyResult(False, 0, "", None, "the witness's genesis does not verify"))
    if served_seq != genesis_seq or (served and served["hash"] != genesis_hash):
        raise _Broken(VerifyResult(False, 0, "", None, f"the chain starts after seq {genesis_seq} but the witness "
                                   f"purged only up to seq {served_seq}: records at the start were removed "
                                   "or a genesis was forged"))  # fmt: skip


def _next_record(line: str, prev: str, expected_seq: int) -> dict[str, Any] | str:
    """One line of the trail as the record expected next, or (a string) why it is not that record."""
    if not line.endswith("\n"):
        return "the last record is truncated (no line end)"
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return "the line is not valid JSON (edited or truncated)"
    if not isinstance(record, dict) or "hash" not in record or not isinstance(record.get("seq"), int):
        return "the line is not an audit record"
    if record_hash(record) != record["hash"]:
        return f"record seq {record['seq']} was edited"
    if record["seq"] != expected_seq:
        what = "deleted or reordered" if record["seq"] > expected_seq else "inserted or reordered"
        return f"record seq {record['seq']} where seq {expected_seq} was expected: records were {what}"
    if record.get("prev") != prev:
        return (f"record seq {record['seq']} does not chain to the record before it (inserted, deleted or "
                "reordered records)")  # fmt: skip
    return record


def _extra_heads(
    trusted: TrustedKeys,
    extra_anchors: list[tuple[str, Any]] | None,
    witness_state: dict[str, Any] | None,
    count: int,
    head: str,
) -> list[tuple[str, dict[str, Any]]]:
    """3a. The heads from outside the anchors file: MLflow's (``extra_anchors``) and the witness's latest."""
    heads: list[tuple[str, dict[str, Any]]] = []
    for where, raw in extra_anchors or []:
        anchor = raw
        if isinstance(raw, str):
            try:
                anchor = json.loads(raw)
            except json.JSONDecodeError:
                anchor = raw
        problem = trusted.check(anchor)
        if problem is None and not _well_formed(anchor):
            problem = "malformed (needs kind, seq and hash)"
        if problem is not None:
            raise _Broken(VerifyResult(False, count, head, None, f"anchor in {where} is not acceptable: {problem}"))
        heads.append((where, anchor))
    if witness_state is not None and witness_state.get("head"):
        served_head = witness_state["head"]
        if trusted.check(served_head, roles={"witness"}) is not None:
            raise _Broken(VerifyResult(False, count, head, None, "the witness's head does not verify"))
        heads.append(("the governance server (witness)", served_head))
    return heads


def _verify_heads(heads: list[tuple[str, dict[str, Any]]], by_seq: dict[int, str], genesis_seq: int, count: int,
                  head: str) -> None:  # fmt: skip
    """3b. Every head (the file's, MLflow's, the witness's) names a record of the chain, with its hash."""
    last_seq = genesis_seq + count
    for where, anchor in heads:
        seq, digest = int(anchor["seq"]), str(anchor["hash"])
        if seq <= genesis_seq:
            continue  # purged under a signed genesis
        if seq > last_seq:
            raise _Broken(VerifyResult(False, count, head, count + 1, f"{where} anchors seq {seq} but the chain "
                                       f"ends at seq {last_seq}: records at the end were deleted"))  # fmt: skip
        if by_seq[seq] != digest:
            raise _Broken(VerifyResult(False, count, head, None,
                                       f"record seq {seq} differs from the head anchored in {where}"))  # fmt: skip


def _well_formed(anchor: Any) -> bool:
    return (isinstance(anchor, dict) and anchor.get("kind") in ("head", "genesis")
            and isinstance(anchor.get("seq"), int) and not isinstance(anchor.get("seq"), bool)
            and isinstance(anchor.get("hash"), str))  # fmt: skip


def verify_chain_records(records: list[dict[str, Any]], prev: str, next_seq: int) -> str | None:
    """Why ``records`` do not extend a chain whose head is ``(next_seq - 1, prev)``, or None (the witness's test).

    Args:
        records: Records in order.
        prev: The hash they must chain onto.
        next_seq: The seq the first must carry.

    Returns:
        None, or the reason.
    """
    for record in records:
        if not isinstance(record, dict) or record.get("seq") != next_seq:
            return f"expected record seq {next_seq}"
        if record.get("prev") != prev or record_hash(record) != record.get("hash"):
            return f"record seq {next_seq} does not chain onto the witnessed head (rewritten or edited)"
        prev, next_seq = record["hash"], next_seq + 1
    return None


def sha256_hex(data: bytes) -> str:
    """SHA-256 hex digest.

    Args:
        data: Bytes.

    Returns:
        Hex digest.
    """
    return hashlib.sha256(data).hexdigest()
