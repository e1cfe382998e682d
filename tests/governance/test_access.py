"""RBAC and the two-person rule: refusals are clear, audited, and change nothing else."""

from __future__ import annotations

import pytest

from frugalml.errors import AccessDenied, ApprovalError, ParameterError
from frugalml.governance.approvals import approve, consume, request_operation, requests
from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import (
    Identity,
    check_operation,
    check_pipelines,
    load_governance,
    parse_governance,
)
from tests.conftest import REPO

ALICE, BOB, CAROL = (
    Identity("alice", "mlflow-server"),
    Identity("bob", "mlflow-server"),
    Identity("carol", "mlflow-server"),
)


@pytest.fixture
def config():
    return load_governance(REPO / "conf", "local")


@pytest.fixture
def log(tmp_path):
    return AuditLog(tmp_path / "audit.jsonl")


def test_roles_allow_and_refuse(config):
    assert check_pipelines(config, ALICE, ["train", "__default__"]) == ["data-scientist"]
    with pytest.raises(AccessDenied, match="'carol'.*viewer.*may not run pipeline 'train'"):
        check_pipelines(config, CAROL, ["train"])
    with pytest.raises(AccessDenied, match="unknown user 'mallory'"):
        check_pipelines(config, Identity("mallory", "mlflow-server"), ["ingest"])
    check_operation(config, BOB, "approve")
    with pytest.raises(AccessDenied, match="may not 'approve'"):
        check_operation(config, ALICE, "approve")


def test_unknown_os_user_gets_local_roles_unless_turned_off(config):
    assert check_pipelines(config, Identity("someone", "os"), ["train"]) == ["data-scientist"]
    strict = parse_governance({**config.model_dump(), "identity": {"local_user_roles": []}})
    with pytest.raises(AccessDenied, match="unknown user 'someone'"):
        check_pipelines(strict, Identity("someone", "os"), ["train"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"audit": {"retention_days": 30}}, "retention_days"),
        ({"users": {"eve": ["superuser"]}}, "unknown role"),
        ({"rolez": {}}, "rolez"),
    ],
)
def test_bad_governance_config_names_the_key(config, change, message):
    with pytest.raises(ParameterError, match=message):
        parse_governance({**config.model_dump(), **change})


def test_two_person_rule_happy_path(config, log):
    request = request_operation(log, config, ALICE, "promote_production", {"model": "m", "version": "3"})
    assert requests(log)[request.request_id].state == "pending"
    approve(log, config, BOB, request.request_id)
    consume(log, ALICE, request.request_id, "promote_production")
    assert requests(log)[request.request_id].state == "used"
    kinds = [r["kind"] for r in log.records()]
    assert kinds == ["approval.requested", "approval.granted", "approval.used"]
    assert log.verify().ok


def _refused(log, count_before):
    records = log.records()
    assert len(records) == count_before + 1 and records[-1]["kind"] == "approval.refused"
    return records[-1]


def test_self_approval_is_refused_and_audited(config, log):
    admin = Identity("admin", "mlflow-server")  # admin has every operation, including request and approve
    request = request_operation(log, config, admin, "disable_dp")
    with pytest.raises(ApprovalError, match="cannot approve their own request"):
        approve(log, config, admin, request.request_id)
    _refused(log, 1)
    assert requests(log)[request.request_id].state == "pending"


def test_unknown_and_used_requests_are_refused(config, log):
    with pytest.raises(ApprovalError, match="no request 'nope'"):
        approve(log, config, BOB, "nope")
    _refused(log, 0)
    request = request_operation(log, config, ALICE, "delete_runs")
    approve(log, config, BOB, request.request_id)
    with pytest.raises(ApprovalError, match="already approved"):
        approve(log, config, BOB, request.request_id)
    consume(log, ALICE, request.request_id, "delete_runs")
    with pytest.raises(ApprovalError, match="is used, not approved"):
        consume(log, ALICE, request.request_id, "delete_runs")


def test_non_approver_and_non_two_person_operations_are_refused(config, log):
    request = request_operation(log, config, ALICE, "raise_privacy_budget")
    with pytest.raises(ApprovalError, match="may not 'approve'"):
        approve(log, config, CAROL, request.request_id)
    with pytest.raises(ApprovalError, match="not a two-person operation"):
        request_operation(log, config, ALICE, "make_coffee")
    with pytest.raises(AccessDenied):
        request_operation(log, config, CAROL, "disable_dp")
    assert log.records()[-1]["kind"] == "rbac.refused"


def test_a_forged_approval_breaks_the_chain(config, log):
    import json

    request = request_operation(log, config, ALICE, "promote_production")
    forged = dict(log.records()[-1], kind="approval.granted", actor="bob", seq=2)
    with log.path.open("a") as handle:
        handle.write(json.dumps(forged) + "\n")
    with pytest.raises(Exception, match="edited|chain"):
        requests(log)
    assert request.request_id
