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


@pytest.mark.parametrize(
    ("train", "enabled"),
    [
        ({"privacy": {"enabled": "false"}}, False),  # `kedro run --params train.privacy.enabled=false` gives a string
        ({"privacy": {"enabled": False}}, False),
        ({"privacy": {"enabled": "true"}}, True),
        ({}, True),  # no privacy block: the default, on
    ],
)
def test_the_hook_reads_privacy_as_the_training_node_does(train, enabled):
    from kedro.pipeline import Node

    from frugalml.governance.hooks import MODEL_TRAINING_TAG, _privacy_of

    def fit(frame, params):
        return frame

    trainer = Node(fit, ["frame", "params:train"], "model", tags=[MODEL_TRAINING_TAG])
    assert _privacy_of(trainer, {"params:train": train})["enabled"] is enabled
    assert _privacy_of(Node(fit, ["frame", "params:train"], "other"), {"params:train": train}) is None  # untagged
    with pytest.raises(ParameterError, match="target_epsilon"):
        _privacy_of(trainer, {"params:train": {"privacy": {"target_epsilon": -1}}})


def test_disable_dp_needs_an_approval_for_every_dataset_and_consumes_none_until_all_are_covered(config, log):
    from frugalml.errors import GovernanceError
    from frugalml.governance.ledger import authorise_nonprivate

    keys = ["archive:aaa", "table:bbb"]
    first = request_operation(log, config, ALICE, "disable_dp", {"dataset": "archive:aaa"})
    approve(log, config, BOB, first.request_id)
    with pytest.raises(GovernanceError, match="table:bbb without differential privacy"):
        authorise_nonprivate(log, config, ALICE, keys)
    assert requests(log)[first.request_id].state == "approved"  # not used up by the refused run
    assert log.records()[-1]["kind"] == "rbac.refused"
    second = request_operation(log, config, ALICE, "disable_dp", {"dataset": "table:bbb"})
    approve(log, config, BOB, second.request_id)
    with pytest.raises(GovernanceError):  # bob's approval is alice's to use, not carol's
        authorise_nonprivate(log, config, CAROL, keys)
    authorise_nonprivate(log, config, ALICE, keys)
    assert {requests(log)[r.request_id].state for r in (first, second)} == {"used"}
    with pytest.raises(GovernanceError):  # one approval, one run
        authorise_nonprivate(log, config, ALICE, keys)
    waived = config.model_copy(update={"privacy": config.privacy.model_copy(update={"require_dp": False})})
    authorise_nonprivate(log, waived, ALICE, keys)  # a policy without require_dp asks for nothing
    assert log.verify().ok
