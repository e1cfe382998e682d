"""The audit record format: the event catalogue, canonical JSON, record hashes and the chain rule.

A record is ``{"seq", "ts", "kind", "actor", "run_id", "data", "prev", "hash"}``; ``hash`` is the SHA-256 of
:func:`canonical_record` of the record without ``hash``, and ``prev`` is the hash of the record before it (the
first one's is the chain's genesis).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

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


def canonical_record(record: dict[str, Any]) -> bytes:
    """The bytes a record is hashed and written as: sorted keys, no spaces, UTF-8.

    Args:
        record: An audit record (or anchor).

    Returns:
        Canonical JSON bytes.
    """
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 of a record without its ``hash`` field.

    Args:
        record: An audit record.

    Returns:
        The hex digest.
    """
    return hashlib.sha256(canonical_record({k: v for k, v in record.items() if k != "hash"})).hexdigest()


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
