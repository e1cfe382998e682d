"""Verifying the audit trail: the anchors file, the chain, and every head (the file's, MLflow's, the witness's).

:func:`verify_trail` runs the steps in order; each raises :class:`_Broken` with the verdict where the trail
breaks, so the first bad line or anchor is the one reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from frugalml.governance.audit.records import GENESIS, record_hash
from frugalml.governance.signing import TrustedKeys


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`frugalml.governance.audit.AuditLog.verify`."""

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


class _Broken(Exception):  # a verdict handed back from a verification step, caught in verify_trail
    """A verification step found the trail broken; ``result`` says where and why."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(result.reason)
        self.result = result


def verify_trail(
    lines: Iterable[tuple[int, str]],
    anchor_lines: list[tuple[int, Any]],
    *,
    anchors_name: str,
    trusted: TrustedKeys,
    witness_state: dict[str, Any] | None,
    witnessed: bool,
    extra_anchors: list[tuple[str, Any]] | None,
) -> VerifyResult:
    """Check the anchors file, the chain from its genesis on, and that every head names a record of the chain.

    Args:
        lines: ``(line number, line)`` of the trail, in file order.
        anchor_lines: ``(line number, parsed JSON or the raw line)`` of the anchors file.
        anchors_name: The anchors file's name (for messages).
        trusted: The keys whose anchors are accepted.
        witness_state: The witness's ``{"public_key", "head", "genesis"}``, None without a witness.
        witnessed: Whether the trail has a witness (then only it may sign a genesis).
        extra_anchors: ``(where, anchor)`` pairs recorded elsewhere (MLflow tag values, JSON text or objects).

    Returns:
        The result (``vouched_by`` left empty), naming the first bad line or anchor.
    """
    try:
        genesis_seq, genesis_hash, heads = _verify_anchor_file(anchor_lines, anchors_name, trusted, witnessed)
        if witness_state is not None:
            _verify_witness_genesis(trusted, witness_state, genesis_seq, genesis_hash)
        count, head, by_seq = _verify_chain(lines, genesis_seq, genesis_hash)
        heads += _extra_heads(trusted, extra_anchors, witness_state, count, head)
        _verify_heads(heads, by_seq, genesis_seq, count, head)
    except _Broken as broken:
        return broken.result
    return VerifyResult(True, count, head)


def _verify_anchor_file(anchor_lines: list[tuple[int, Any]], anchors_name: str, trusted: TrustedKeys,
                        witnessed: bool) -> tuple[int, str, list[tuple[str, dict[str, Any]]]]:  # fmt: skip
    """1. The anchors file: every line signed by a trusted key; geneses by the witness when there is one.

    Returns:
        The last genesis ``(seq, hash)`` and the file's heads ``(where, anchor)``.
    """
    genesis_roles = {"witness"} if witnessed else {"local", "witness"}
    heads: list[tuple[str, dict[str, Any]]] = []
    genesis_seq, genesis_hash = 0, GENESIS
    for number, anchor in anchor_lines:
        where = f"{anchors_name} line {number}"
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


def _verify_chain(lines: Iterable[tuple[int, str]], genesis_seq: int,
                  genesis_hash: str) -> tuple[int, str, dict[int, str]]:  # fmt: skip
    """2. The chain itself, from the genesis on.

    Returns:
        ``(records, head hash, seq -> record hash)``.
    """
    prev, expected_seq, count, head = genesis_hash, genesis_seq + 1, 0, genesis_hash
    by_seq: dict[int, str] = {}
    for number, line in lines:
        record = _next_record(line, prev, expected_seq)
        if isinstance(record, str):
            raise _Broken(VerifyResult(False, count, head, number, record))
        prev, head, expected_seq = record["hash"], record["hash"], record["seq"] + 1
        by_seq[record["seq"]] = record["hash"]
        count += 1
    return count, head, by_seq


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
