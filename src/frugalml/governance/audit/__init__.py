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

Modules, one concern each: :mod:`.records` (the record format: event catalogue, canonical JSON, hashes, the
chain rule the witness applies), :mod:`.verification` (checking the chain and every anchor) and :mod:`.log`
(:class:`AuditLog`: appending, anchoring, purging). Every public name is importable from this package.
"""

from frugalml.governance.audit.log import AuditLog, Witness
from frugalml.governance.audit.records import (
    EVENT_KINDS,
    GENESIS,
    canonical_record,
    record_hash,
    sha256_hex,
    verify_chain_records,
)
from frugalml.governance.audit.verification import VerifyResult, verify_trail

__all__ = [
    "EVENT_KINDS",
    "GENESIS",
    "AuditLog",
    "VerifyResult",
    "Witness",
    "canonical_record",
    "record_hash",
    "sha256_hex",
    "verify_chain_records",
    "verify_trail",
]
