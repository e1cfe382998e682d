"""The hash-chained audit trail: every kind of tampering is detected and the first bad record named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from frugalml.errors import AuditIntegrityError, RetentionError
from frugalml.governance.audit import EVENT_KINDS, AuditLog


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(tmp_path / "audit.jsonl")
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
    from frugalml.governance.audit import record_hash

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
    assert not result.ok and "missing" in result.reason


def test_external_anchor_that_disagrees_is_detected(log):
    assert not log.verify(extra_anchors=[(3, "f" * 64)]).ok
    assert log.verify(extra_anchors=[(3, json.loads(lines(log)[2])["hash"])]).ok


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
