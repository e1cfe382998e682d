"""The hash-chained audit trail with signed anchors: every kind of tampering is detected and named.

These tests use the local signing key (no server); tests/governance/test_service.py repeats the attacks that
need a witness (a rewritten chain with re-signed anchors, a deleted trail) against a real governance server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from frugalml.errors import AuditIntegrityError, RetentionError
from frugalml.governance.audit import EVENT_KINDS, AuditLog, record_hash
from frugalml.governance.signing import SigningKey


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "conf_local" / "audit_signing.key", "local")


@pytest.fixture
def log(tmp_path: Path, key: SigningKey) -> AuditLog:
    audit = AuditLog(tmp_path / "audit.jsonl", signer=key)
    for number in range(10):
        audit.append("node.start", actor="alice", run_id="r1", node=f"n{number}")
    audit.anchor(actor="alice", run_id="r1")
    return audit


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def write(log: AuditLog, content: list[str]) -> None:
    log.path.write_text("".join(content))


def test_intact_chain_verifies(log):
    result = log.verify()
    assert result.ok and result.records == 11
    assert "intact" in str(result)


def test_edited_record_is_named(log):
    content = lines(log)
    record = json.loads(content[3])
    record["data"]["node"] = "forged"
    content[3] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    write(log, content)
    result = log.verify()
    assert not result.ok and result.first_bad_line == 4 and "seq 4 was edited" in result.reason


def test_edit_with_recomputed_hash_still_breaks_the_chain(log):
    content = lines(log)
    record = json.loads(content[3])
    record["data"]["node"] = "forged"
    record["hash"] = record_hash(record)
    content[3] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    write(log, content)
    result = log.verify()
    assert not result.ok and result.first_bad_line == 5


def test_deleted_record_is_detected(log):
    content = lines(log)
    del content[5]
    write(log, content)
    result = log.verify()
    assert not result.ok and result.first_bad_line == 6 and "deleted" in result.reason


def test_inserted_record_is_detected(log):
    content = lines(log)
    content.insert(2, content[1])
    write(log, content)
    result = log.verify()
    assert not result.ok and result.first_bad_line == 3


def test_reordered_records_are_detected(log):
    content = lines(log)
    content[4], content[5] = content[5], content[4]
    write(log, content)
    result = log.verify()
    assert not result.ok and result.first_bad_line == 5 and "reordered" in result.reason


def test_truncated_file_is_detected(log):
    log.path.write_bytes(log.path.read_bytes()[:-40])
    result = log.verify()
    assert not result.ok and "truncated" in result.reason
    with pytest.raises(AuditIntegrityError, match="truncated"):
        log.require_intact()
    size = log.path.stat().st_size
    with pytest.raises(AuditIntegrityError, match="damaged"):  # nothing is chained onto a damaged record
        log.append("node.start", actor="alice")
    assert log.path.stat().st_size == size


def test_deleting_the_last_records_is_caught_by_the_anchor(log):
    write(log, lines(log)[:8])
    result = log.verify()
    assert not result.ok and "records at the end were deleted" in result.reason


def _rewrite(log: AuditLog, records: list[dict]) -> None:
    """What a forger with file access does: rewrite the records and recompute every hash and link."""
    prev = "0" * 64
    out = []
    for seq, record in enumerate(records, start=1):
        record = {**record, "seq": seq, "prev": prev}
        record["hash"] = record_hash(record)
        prev = record["hash"]
        out.append(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    write(log, out)


def test_a_rewritten_chain_with_recomputed_hashes_fails_on_its_signed_anchor(log):
    records = log.records()
    records[3]["data"]["node"] = "forged"
    _rewrite(log, records)  # every hash recomputed: the chain itself is consistent again
    result = log.verify()
    assert not result.ok and "differs from the head anchored" in result.reason


def test_anchors_forged_without_the_key_fail(log, tmp_path):
    records = log.records()[:5]
    _rewrite(log, records)
    mallory = SigningKey.load_or_create(tmp_path / "mallory.key", "local")  # not the project's key
    head = mallory.sign({"kind": "head", "seq": 5, "hash": records[-1]["hash"], "first_seq": 1})
    log.anchors_path.write_text(json.dumps(head) + "\n")
    result = log.verify()
    assert not result.ok and "unknown key" in result.reason
    unsigned = {"kind": "head", "seq": 5, "hash": log.records()[-1]["hash"]}
    log.anchors_path.write_text(json.dumps(unsigned) + "\n")
    assert "not a signed object" in log.verify().reason


def test_a_forged_genesis_with_a_huge_seq_does_not_silence_the_anchors(log):
    with log.anchors_path.open("a") as handle:
        handle.write(json.dumps({"kind": "genesis", "seq": 10**9, "hash": "0" * 64}) + "\n")
    write(log, lines(log)[:4])  # and drop records at the end
    result = log.verify()
    assert not result.ok and "not acceptable" in result.reason


def test_dropping_the_oldest_records_under_a_fake_genesis_is_detected(log, tmp_path):
    content = lines(log)
    cut = json.loads(content[4])
    mallory = SigningKey.load_or_create(tmp_path / "mallory.key", "local")
    with log.anchors_path.open("a") as handle:
        handle.write(json.dumps(mallory.sign({"kind": "genesis", "seq": cut["seq"], "hash": cut["hash"]})) + "\n")
    write(log, content[5:])
    assert "unknown key" in log.verify().reason


@pytest.mark.parametrize("line", ["not json", "{}", '{"kind": "head"}', "[1, 2]", '"a string"'])
def test_a_malformed_anchor_fails_closed(log, line):
    with log.anchors_path.open("a") as handle:
        handle.write(line + "\n")
    result = log.verify()
    assert not result.ok and "not acceptable" in result.reason


@pytest.mark.parametrize("tag", ["3:" + "f" * 64, "garbage", "", '{"seq": 3}', "12:abc"])
def test_a_malformed_or_unsigned_mlflow_anchor_fails_closed(log, tag):
    result = log.verify(extra_anchors=[("MLflow run r1 tag audit.head", tag)])
    assert not result.ok and "MLflow run r1" in result.reason


def test_signed_mlflow_anchors_are_checked_against_the_chain(log, key):
    head = log.signed_head()
    assert log.verify(extra_anchors=[("run", json.dumps(head))]).ok
    forged = key.sign({**head, "hash": "f" * 64})  # even signed with the right key, a wrong hash fails
    assert "differs" in log.verify(extra_anchors=[("run", forged)]).reason
    ahead = key.sign({**head, "seq": head["seq"] + 5})
    assert "deleted" in log.verify(extra_anchors=[("run", ahead)]).reason


def test_a_missing_signing_key_fails_closed(log):
    bare = AuditLog(log.path)  # the anchors exist, but nothing can check them
    result = bare.verify()
    assert not result.ok and "unknown key" in result.reason


def test_unknown_event_kind_is_refused(log):
    with pytest.raises(ValueError, match="unknown audit event kind"):
        log.append("made.up", actor="alice")
    assert "pipeline.start" in EVENT_KINDS and len(EVENT_KINDS) >= 20


def test_purge_below_retention_is_refused_audited_and_changes_nothing(log):
    before = log.path.read_text()
    with pytest.raises(RetentionError, match="180 days"):
        log.purge(datetime.now(UTC) - timedelta(days=30), actor="admin")
    after = log.records()
    assert log.path.read_text().startswith(before)  # only the refusal was appended
    assert after[-1]["kind"] == "audit.purge_refused" and len(after) == 12


def test_purge_of_old_records_keeps_the_chain_verifiable(log):
    future = datetime.now(UTC) + timedelta(days=400)
    removed = log.purge(datetime.now(UTC) + timedelta(minutes=1), actor="admin", now=future)
    assert removed == 11
    result = log.verify()
    assert result.ok, result
    assert log.records()[-1]["kind"] == "audit.purge"
    log.append("node.start", actor="alice", node="after purge")
    assert log.verify().ok


def test_a_purge_writes_a_signed_genesis_and_later_anchors_still_verify(log):
    future = datetime.now(UTC) + timedelta(days=400)
    log.purge(datetime.now(UTC) + timedelta(minutes=1), actor="admin", now=future)
    genesis = [a for a in log.anchors() if a["kind"] == "genesis"]
    assert len(genesis) == 1 and genesis[0]["sig"] and genesis[0]["signer"].startswith("local:")
    log.anchor(actor="admin")
    assert log.verify().ok


def test_a_single_record_is_proven_by_a_merkle_path_against_the_signed_head(log, key):
    from frugalml.governance.merkle import inclusion_proof, verify_inclusion
    from frugalml.governance.signing import TrustedKeys

    head = log.signed_head()
    trusted = TrustedKeys()
    trusted.add("local", key.public_text)
    assert trusted.check(head) is None
    hashes = [r["hash"] for r in log.records()]
    for index in (0, 4, len(hashes) - 1):
        proof = inclusion_proof(hashes, index)
        assert verify_inclusion(hashes[index], index, len(hashes), proof, head["root"])
        assert not verify_inclusion("f" * 64, index, len(hashes), proof, head["root"])
    assert trusted.check({**head, "root": "0" * 64}) is not None  # a head with another root is not signed
