"""RBAC, identity, the two-person service, the ledger's content keys and the governance policy.

The approvals authority (:class:`GovernanceService`) runs here in-process on a real SQLite file; the same
service behind a real MLflow server, over HTTP, is in test_service.py.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from frugalml.errors import AccessDenied, ApprovalError, GovernanceError, ParameterError
from frugalml.governance.approvals import details_digest, validate_details
from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import (
    Identity,
    check_operation,
    check_pipelines,
    current_identity,
    load_governance,
    load_governance_file,
    parse_governance,
)
from frugalml.governance.service import GovernanceService, ServiceError
from frugalml.governance.signing import SigningKey
from tests.helpers import REPO

ALICE, BOB, CAROL = (
    Identity("alice", "mlflow-server", authenticated=True),
    Identity("bob", "mlflow-server", authenticated=True),
    Identity("carol", "mlflow-server", authenticated=True),
)


@pytest.fixture
def config():
    return load_governance(REPO / "conf", "local")


@pytest.fixture
def log(tmp_path):
    return AuditLog(tmp_path / "audit.jsonl", signer=SigningKey.load_or_create(tmp_path / "k", "local"))


@pytest.fixture
def service(tmp_path):
    return GovernanceService(tmp_path / "server", REPO / "conf" / "base" / "governance.yml")


def test_roles_allow_and_refuse(config):
    assert check_pipelines(config, ALICE, ["train", "__default__"]) == ["data-scientist"]
    with pytest.raises(AccessDenied, match="'carol'.*viewer.*may not run pipeline 'train'"):
        check_pipelines(config, CAROL, ["train"])
    with pytest.raises(AccessDenied, match="unknown user 'mallory'"):
        check_pipelines(config, Identity("mallory", "mlflow-server", authenticated=True), ["ingest"])
    check_operation(config, BOB, "approve")
    with pytest.raises(AccessDenied, match="may not 'approve'"):
        check_operation(config, ALICE, "approve")


def test_unknown_os_user_gets_local_roles_unless_turned_off(config):
    assert check_pipelines(config, Identity("someone", "os"), ["train"]) == ["data-scientist"]
    strict = parse_governance({**config.model_dump(), "identity": {"local_user_roles": []}})
    with pytest.raises(AccessDenied, match="unauthenticated local user 'someone'.*make server"):
        check_pipelines(strict, Identity("someone", "os"), ["train"])


@pytest.mark.parametrize("claimed", ["admin", "bob"])
def test_an_environment_variable_cannot_claim_an_identity(config, monkeypatch, claimed):
    """`LOGNAME=admin` (or USER, USERNAME) names a user, it does not authenticate one."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, claimed)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    me = current_identity(config)
    assert me.user == claimed and not me.authenticated  # getpass believes the variable: we do not
    assert check_pipelines(config, me, ["train"]) == config.identity.local_user_roles  # never `users[admin]`
    for operation in ("approve", "request", "promote", "delete_runs", "audit.purge"):
        with pytest.raises(AccessDenied, match="needs an authenticated identity.*make server"):
            check_operation(config, me, operation)
    check_operation(config, me, "audit.verify")  # reading stays open


def test_a_tracking_server_alone_is_no_authority(config, monkeypatch):
    """Anyone can start a server that answers "you are admin": only the governance of record's server counts."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    me = current_identity(config)
    assert not me.authenticated and me.source == "os"
    with pytest.raises(AccessDenied, match="needs an authenticated identity"):
        check_operation(config, me, "approve")


def test_a_configured_server_is_used_even_when_the_tracking_uri_is_unset(config, monkeypatch):
    served = config.model_copy(update={"identity": config.identity.model_copy(
        update={"server": "http://127.0.0.1:9"})})  # fmt: skip
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.setenv("LOGNAME", "admin")
    with pytest.raises(AccessDenied, match="unauthenticated: no user name for the MLflow server http://127.0.0.1:9"):
        current_identity(served)
    with pytest.raises(AccessDenied, match="authenticates users with the governance server"):
        check_pipelines(served, Identity("admin", "os"), ["train"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"audit": {"retention_days": 30}}, "retention_days"),
        ({"users": {"eve": ["superuser"]}}, "unknown role"),
        ({"rolez": {}}, "rolez"),
        ({"privacy": {"default_budget_epsilon": float("inf")}}, "default_budget_epsilon"),
        ({"privacy": {"budgets": {"rows:0123456789abcdef": float("inf")}}}, "finite"),
        ({"mlflow_permissions": {"viewer": "WRITE"}}, r"mlflow_permissions.viewer\n.*'READ', 'EDIT' or 'MANAGE'"),
        ({"mlflow_permissions": {"viewer": "USE"}}, "mlflow_permissions.viewer"),
        ({"mlflow_permissions": {"admin": "MANAGE"}}, "admin role is not mapped"),
    ],
)
def test_bad_governance_config_names_the_key(config, change, message):
    with pytest.raises(ParameterError, match=message):
        parse_governance({**config.model_dump(), **change})


def _approve(service, request):
    return service.approve("bob", request["id"], details_digest(request["details"]))


def test_two_person_rule_happy_path(service):
    request = service.request("alice", "promote_production", {"model": "m", "version": "3"})
    assert request["state"] == "pending" and request["details"] == {"model": "m", "version": 3}
    approved = _approve(service, request)
    assert approved["state"] == "approved" and approved["approved_by"] == "bob"
    used = service.consume("alice", request["id"], "promote_production", {"model": "m", "version": "3"})
    assert used["state"] == "used" and used["used_by"] == "alice"


@pytest.mark.parametrize(
    ("operation", "details", "message"),
    [
        ("delete_runs", {}, "run_ids"),  # a blank cheque: no target at all
        ("delete_runs", {"run_ids": "*"}, "32 hex"),
        ("promote_production", {"model": "m"}, "version"),
        ("promote_production", {"model": "m", "version": "0"}, "version"),
        ("raise_privacy_budget", {"dataset": "rows:0123456789abcdef", "epsilon": "inf"}, "epsilon"),
        ("raise_privacy_budget", {"dataset": "rows:0123456789abcdef", "epsilon": "nan"}, "epsilon"),
        ("raise_privacy_budget", {"dataset": "rows:0123456789abcdef", "epsilon": "-1"}, "epsilon"),
        ("raise_privacy_budget", {"dataset": "rows:0123456789abcdef", "epsilon": "1e6"}, "max_budget_epsilon"),
        ("raise_privacy_budget", {"epsilon": "2"}, "dataset"),
        ("disable_dp", {"dataset": "anything"}, "dataset"),
        ("disable_dp", {"dataset": "rows:0123456789abcdef", "extra": "x"}, "extra"),
    ],
)
def test_requests_are_never_blank_cheques(service, config, operation, details, message):
    with pytest.raises(ApprovalError, match=message):
        validate_details(operation, details, config)
    with pytest.raises(ServiceError, match=message) as raised:  # the server validates again, for itself
        service.request("alice", operation, details)
    assert raised.value.status == 400


def test_self_approval_non_approvers_and_changed_details_are_refused(service):
    request = service.request("alice", "disable_dp", {"dataset": "rows:0123456789abcdef"})
    with pytest.raises(ServiceError, match="may not 'approve'"):  # alice is no approver
        service.approve("alice", request["id"], details_digest(request["details"]))
    with pytest.raises(ServiceError, match="may not 'approve'"):
        service.approve("carol", request["id"], details_digest(request["details"]))
    with pytest.raises(ServiceError, match="not the ones requested"):  # bob approves what he saw, nothing else
        service.approve("bob", request["id"], details_digest({"dataset": "rows:ffffffffffffffff"}))
    with pytest.raises(ServiceError, match="pending, not approved"):
        service.consume("alice", request["id"], "disable_dp", {"dataset": "rows:0123456789abcdef"})
    _approve(service, request)
    with pytest.raises(ServiceError, match="already approved"):
        _approve(service, request)
    with pytest.raises(ServiceError, match="belongs to 'alice'"):  # bob's approval is alice's to use
        service.consume("carol", request["id"], "disable_dp", {"dataset": "rows:0123456789abcdef"})
    with pytest.raises(ServiceError, match="approved for"):  # not for another dataset
        service.consume("alice", request["id"], "disable_dp", {"dataset": "rows:ffffffffffffffff"})
    with pytest.raises(ServiceError, match="is for 'disable_dp'"):
        service.consume("alice", request["id"], "delete_runs", {})
    service.consume("alice", request["id"], "disable_dp", {"dataset": "rows:0123456789abcdef"})
    with pytest.raises(ServiceError, match="is used"):  # one approval, one use
        service.consume("alice", request["id"], "disable_dp", {"dataset": "rows:0123456789abcdef"})
    with pytest.raises(ServiceError, match="no request"):
        service.consume("alice", "nope", "disable_dp", {})


def _consume_in_another_process(directory, request_id, queue):
    from frugalml.governance.service import GovernanceService, ServiceError

    own = GovernanceService(directory, REPO / "conf" / "base" / "governance.yml")
    try:
        own.consume("alice", request_id, "disable_dp", {"dataset": "rows:0123456789abcdef"})
        queue.put("used")
    except ServiceError as error:
        queue.put(error.message)


def test_two_processes_never_consume_one_approval(service):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for _ in range(3):
        request = service.request("alice", "disable_dp", {"dataset": "rows:0123456789abcdef"})
        _approve(service, request)
        queue = context.Queue()
        workers = [context.Process(target=_consume_in_another_process, args=(service.directory, request["id"], queue))
                   for _ in range(2)]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        outcomes = sorted(queue.get(timeout=5) for _ in workers)
        assert outcomes[1] == "used" and "is used" in outcomes[0], outcomes


def test_the_witness_signs_only_extensions_of_what_it_saw(service, log):
    for number in range(4):
        log.append("node.start", actor="alice", node=str(number))
    records = log.records()
    head = service.witness_anchor("alice", records)
    assert head["seq"] == 4 and head["signer"] == f"witness:{service.key.fingerprint}"
    assert service.witness_anchor("alice", []) == head  # nothing new: the same head
    forged = [dict(r) for r in records[2:]]
    forged[0]["data"] = {"node": "forged"}
    with pytest.raises(ServiceError, match="does not extend"):  # a rewritten tail
        service.witness_anchor("alice", forged)
    log.append("node.end", actor="alice", node="x")
    assert service.witness_anchor("alice", log.records()[4:])["seq"] == 5
    with pytest.raises(ServiceError, match="180 days"):  # and no purge within retention
        service.witness_purge("admin", "2099-01-01")
    with pytest.raises(ServiceError, match="may not 'audit.purge'"):
        service.witness_purge("alice", "2000-01-01")


def test_the_registry_guard_refuses_protected_aliases_stages_and_run_deletion(service):
    alias = "/api/2.0/mlflow/registered-models/alias"
    assert service.guard(alias, "POST", [{"alias": "production"}])
    assert service.guard("/ajax-api/2.0/mlflow/registered-models/alias", "DELETE", [{}, {"alias": " Production"}])
    assert service.guard(alias, "DELETE", [{"alias": "challenger"}, {"alias": "production"}])  # query vs body
    assert service.guard(alias, "POST", None)  # a body that cannot be parsed: refused, never let through
    assert service.guard(alias, "POST", [{}])  # no alias at all: refused
    assert service.guard("/api/2.0/preview/mlflow/model-versions/transition-stage", "POST", [{"stage": "Production"}])
    assert service.guard("/api/2.0/mlflow/runs/delete", "POST", [{"run_id": "x"}])
    assert service.guard("/api/2.0/mlflow/experiments/delete", "POST", [{"experiment_id": "1"}])
    assert service.guard("/api/2.0/mlflow/runs/delete-tag", "POST", [{"run_id": "x", "key": "audit.head"}])
    assert service.guard("/api/2.0/mlflow/runs/set-tag", "POST", [{"key": "audit.head", "value": "1:" + "f" * 64}])
    assert service.guard("/api/2.0/mlflow/runs/log-batch", "POST", [{"tags": [{"key": "audit.head", "value": "{}"}]}])
    signed = service.key.sign({"kind": "head", "seq": 1, "hash": "a" * 64})
    assert service.guard("/api/2.0/mlflow/runs/set-tag", "POST", [{"key": "audit.head",
                                                                   "value": json.dumps(signed)}]) is None  # fmt: skip
    assert service.guard("/api/2.0/mlflow/runs/set-tag", "POST", [{"key": "note", "value": "x"}]) is None
    assert service.guard(alias, "POST", [{"alias": "challenger"}]) is None
    assert service.guard("/api/2.0/mlflow/runs/search", "POST", [{}]) is None


def test_the_witness_purges_by_its_own_clock_not_by_the_records_timestamps(service, log):
    """A back-dated record does not buy a signed genesis over records younger than the retention period."""
    log.append("node.start", actor="alice", node="recent")
    forged = log.append("node.start", actor="alice", node="back-dated")
    records = log.records()
    records[-1] = {**records[-1], "ts": "2001-01-01T00:00:00+00:00"}
    from frugalml.governance.audit import record_hash

    records[-1]["hash"] = record_hash(records[-1])
    assert forged["seq"] == 2
    service.witness_anchor("alice", records)
    with pytest.raises(ServiceError, match="no witnessed record is older"):
        service.witness_purge("admin", "2020-01-01")


@pytest.mark.parametrize("records", [None, "x", [{"seq": 1}], [{"seq": True, "ts": "t"}], [{"seq": 2**70, "ts": "t"}]])
def test_malformed_records_are_a_bad_request_not_a_server_error(service, records):
    with pytest.raises(ServiceError, match="must be a list of audit records") as refused:
        service.witness_anchor("alice", records)
    assert refused.value.status == 400


def test_only_users_who_may_write_the_trail_extend_it(service, log):
    log.append("node.start", actor="carol", node="x")
    with pytest.raises(ServiceError, match="may not write to the audit trail"):
        service.witness_anchor("carol", log.records())  # a viewer
    with pytest.raises(ServiceError, match="unknown user"):
        service.witness_anchor("mallory", log.records())


def test_details_with_control_characters_are_refused(config):
    with pytest.raises(ApprovalError, match="control or formatting"):
        validate_details("promote_production", {"model": "spam\n  version = 7", "version": "1"}, config)
    with pytest.raises(ApprovalError, match="control or formatting"):
        validate_details("promote_production", {"model": "spam\u202eledom", "version": "1"}, config)


def test_the_ledger_key_is_the_content_not_a_column(sample_emails):
    """Dropping `archive_sha256`, renaming columns, re-ordering or sub-sampling the same rows buys no budget."""
    from frugalml.governance.ledger import ledger_key, row_hashes

    frame = sample_emails.head(200)
    columns = ["subject", "body"]
    hashes = row_hashes(frame, columns)
    assert ledger_key(hashes) == ledger_key(row_hashes(frame.drop(columns=["archive_sha256"]), columns))
    assert ledger_key(hashes) == ledger_key(row_hashes(frame.sample(frac=1, random_state=0), columns))
    assert ledger_key(hashes) != ledger_key(row_hashes(sample_emails.tail(200), columns))


def test_a_raise_written_into_the_local_trail_raises_nothing(tmp_path, sample_emails, config):
    """Only the server's own record of a used raise counts; a copy in the local trail is just a line of text."""
    from frugalml.governance.ledger import authorise_spend, budget_of, ledger_key, row_hashes

    log = AuditLog(tmp_path / "audit.jsonl", signer=SigningKey.load_or_create(tmp_path / "k", "local"))
    hashes = row_hashes(sample_emails.head(100), ["subject", "body"])
    key = ledger_key(hashes)
    log.append("approval.used", actor="alice", request_id="x", operation="raise_privacy_budget",
               details={"dataset": key, "epsilon": 1e300}, approved_by="bob", server_signature="AAAA")  # fmt: skip
    assert budget_of(config, key, None) == config.privacy.default_budget_epsilon
    with pytest.raises(GovernanceError, match="would be exceeded"):
        authorise_spend(log, None, config, ALICE, hashes, epsilon=1000)


def test_a_spend_follows_its_rows_whatever_their_table(tmp_path, sample_emails, config):
    from frugalml.governance.ledger import authorise_spend, per_row_spent, record_spend, row_hashes

    log = AuditLog(tmp_path / "audit.jsonl", signer=SigningKey.load_or_create(tmp_path / "k", "local"))
    frame = sample_emails.head(200)
    report = {"epsilon": 2.0, "delta": 1e-5, "noise_multiplier": 1.0, "steps": 10}
    record_spend(log, ALICE, None, row_hashes(frame, ["subject", "body"]), report)
    # the same e-mails without the archive column, renamed, shuffled, half of them, with new rows mixed in
    disguised = (frame.drop(columns=["archive_sha256"]).rename(columns={"body": "text", "subject": "title"})
                 .sample(frac=0.5, random_state=1))  # fmt: skip
    mixed = pd.concat([disguised, sample_emails.tail(100).rename(columns={"body": "text", "subject": "title"})])
    hashes = row_hashes(mixed, ["title", "text"])
    spent = per_row_spent(log, hashes)
    assert (spent[: len(disguised)] == 2.0).all() and spent[len(disguised) :].max() < 2.0
    with pytest.raises(GovernanceError, match="would be exceeded.*spent 2.000"):  # default budget 3: 2 + 1.5 > 3
        authorise_spend(log, None, config, ALICE, hashes, epsilon=1.5)
    authorise_spend(log, None, config, ALICE, row_hashes(sample_emails.tail(100), ["subject", "body"]), epsilon=1.5)
    rowsets = list((tmp_path / "rowsets").iterdir())
    rowsets[0].chmod(0o644)
    rowsets[0].write_bytes(b"\0" * 8)  # a tampered row set can no longer support any decision
    with pytest.raises(GovernanceError, match="altered"):
        per_row_spent(log, hashes)


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        ({"audit": {"enabled": False}}, "audit.enabled"),
        ({"audit": {"path": "data/audit/fresh.jsonl"}}, "a fresh, empty ledger"),
        ({"audit": {"retention_days": 400, "path": "x"}}, "audit.path"),
        ({"audit": {"hash_datasets": False}}, "hash_datasets"),
        ({"privacy": {"require_dp": False}}, "require_dp"),
        ({"privacy": {"default_budget_epsilon": 1000}}, "default_budget_epsilon: 3.0 -> 1000"),
        ({"privacy": {"budgets": {"rows:0123456789abcdef": 50}}}, "budgets"),
        ({"privacy": {"max_budget_epsilon": 100}}, "max_budget_epsilon"),
        ({"identity": {"local_user_roles": ["data-scientist", "admin"]}}, "unauthenticated users gain ['operation *'"),
        ({"users": {"alice": ["data-scientist", "admin"]}}, "users.alice"),
        ({"users": {"mallory": ["approver"]}}, "users.mallory: gains ['operation approvals', 'operation approve'"),
        ({"two_person_operations": ["promote_production"]}, "no longer need a second person"),
        ({"registry": {"protected_aliases": []}}, "no longer protected"),
        ({"roles": {"viewer": {"pipelines": ["*"], "operations": []}}}, "roles.viewer"),
        ({"mlflow_permissions": {"viewer": "EDIT"}}, "mlflow_permissions.viewer: READ -> EDIT"),
        ({"mlflow_permissions": {"data-scientist": "MANAGE"}}, "mlflow_permissions.data-scientist: EDIT -> MANAGE"),
        ({"mlflow_permissions": {"auditor": "READ"}}, "mlflow_permissions.auditor: NO_PERMISSIONS -> READ"),
    ],
)
def test_every_weakening_is_found(config, change, finding):
    from frugalml.governance.policy import weakenings

    merged = config.model_dump()
    for block, values in change.items():
        merged[block] = {**merged[block], **values} if isinstance(merged[block], dict) else values
    found = weakenings(config, parse_governance(merged))
    assert any(finding in f for f in found), found


def test_another_server_or_witness_key_is_a_weakening(config):
    from frugalml.governance.policy import weakenings

    pinned = parse_governance(
        {
            **config.model_dump(),
            "identity": {
                **config.identity.model_dump(),
                "server": "http://127.0.0.1:5001",
                "server_fingerprint": "0123456789abcdef",
            },
        }
    )
    for change in ({"server_fingerprint": "ffffffffffffffff"}, {"server_fingerprint": None},
                   {"server": "http://127.0.0.1:6666"}, {"server": None}):  # fmt: skip
        moved = parse_governance({**pinned.model_dump(), "identity": {**pinned.identity.model_dump(), **change}})
        assert any("identity.server" in f for f in weakenings(pinned, moved)), change
    assert any("identity.server" in f for f in weakenings(config, pinned))  # a server the record does not name


def test_dropping_a_strict_per_set_budget_is_a_weakening(config):
    from frugalml.governance.policy import weakenings

    strict = parse_governance(
        {**config.model_dump(), "privacy": {**config.privacy.model_dump(), "budgets": {"rows:0123456789abcdef": 0.5}}}
    )
    assert any("budgets[rows:0123456789abcdef]: 0.5 -> 3.0" in f for f in weakenings(strict, config))


def test_stronger_settings_are_not_weakenings(config):
    from frugalml.governance.policy import weakenings

    merged = config.model_dump()
    merged["privacy"] = {**merged["privacy"], "default_budget_epsilon": 1.0}
    merged["audit"] = {**merged["audit"], "retention_days": 365}
    merged["two_person_operations"] = [*merged["two_person_operations"], "change_governance"]
    merged["identity"] = {**merged["identity"], "local_user_roles": ["viewer"]}  # fewer grants than before
    merged["mlflow_permissions"] = {"data-scientist": "READ", "approver": "NO_PERMISSIONS"}  # lower, viewer none
    assert weakenings(config, parse_governance(merged)) == []


def test_a_raised_mlflow_permission_in_conf_local_is_refused_without_an_approval(tmp_path, config, log):
    from frugalml.governance.policy import enforce, local_baseline

    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base" / "governance.yml").write_text((REPO / "conf" / "base" / "governance.yml").read_text())
    raised = {"mlflow_permissions": {**config.mlflow_permissions, "viewer": "MANAGE"}}
    (conf / "local" / "governance.yml").write_text(yaml.safe_dump(raised))
    effective = load_governance(conf, "local")
    assert effective.mlflow_permissions["viewer"] == "MANAGE"  # conf/local replaces base's map
    baseline = local_baseline(tmp_path)  # no git here: conf/base/governance.yml on disk
    assert baseline.mlflow_permissions == config.mlflow_permissions
    with pytest.raises(GovernanceError, match=r"weakens governance: mlflow_permissions.viewer: READ -> MANAGE"):
        enforce(effective, baseline, client=None, accepted=[], identity=ALICE, refusal_log=log)
    assert log.records()[-2]["kind"] == "governance.refused"


# --- the one governance loader -----------------------------------------------------------------------------
def test_the_permission_map_is_in_governance_yml_with_the_old_values_as_defaults(config):
    from frugalml.governance.rbac import DEFAULT_MLFLOW_PERMISSIONS

    committed = yaml.safe_load((REPO / "conf" / "base" / "governance.yml").read_text())
    assert committed["mlflow_permissions"] == {"data-scientist": "EDIT", "approver": "READ", "viewer": "READ"}
    assert config.mlflow_permissions == committed["mlflow_permissions"] == DEFAULT_MLFLOW_PERMISSIONS
    old = {k: v for k, v in committed.items() if k != "mlflow_permissions"}  # a governance.yml from before
    assert parse_governance(old).mlflow_permissions == DEFAULT_MLFLOW_PERMISSIONS


@pytest.mark.parametrize("layout", ["no conf folder", "empty conf", "other config only"])
def test_no_governance_yml_gives_the_defaults(tmp_path, layout):
    conf = tmp_path / "conf"
    if layout != "no conf folder":
        (conf / "base").mkdir(parents=True)
        (conf / "local").mkdir()
    if layout == "other config only":
        (conf / "base" / "parameters.yml").write_text("seed: 1\n")
    for env in ("local", None):
        assert load_governance(conf, env) == parse_governance({})
    assert load_governance_file(None) == parse_governance({})


@pytest.mark.parametrize("where", ["base", "local"])
def test_a_broken_governance_yml_is_a_parameter_error_naming_the_file(tmp_path, where):
    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base" / "governance.yml").write_text((REPO / "conf" / "base" / "governance.yml").read_text())
    broken = conf / where / "governance.yml"
    broken.write_text("audit:\n  enabled: [true\nusers: {\n")
    with pytest.raises(ParameterError, match=rf"{where}/governance.yml"):
        load_governance(conf, "local")
    with pytest.raises(ParameterError, match="governance.yml.*not valid YAML"):
        load_governance_file(broken)
    broken.write_text("- a list\n- not settings\n")
    with pytest.raises(ParameterError, match="mapping"):
        load_governance_file(broken)
    with pytest.raises(ParameterError, match="no governance file"):
        load_governance_file(tmp_path / "missing.yml")


def test_env_none_reads_base_alone_and_an_env_replaces_whole_blocks(tmp_path):
    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base" / "governance.yml").write_text((REPO / "conf" / "base" / "governance.yml").read_text())
    (conf / "local" / "governance.yml").write_text("identity:\n  local_user_roles: [viewer]\n")
    assert load_governance(conf, None).identity.local_user_roles == ["data-scientist"]
    local = load_governance(conf, "local")
    assert local.identity.local_user_roles == ["viewer"] and local.identity.server is None
    assert local.users == load_governance(conf, None).users


@pytest.mark.filterwarnings("ignore:.*register_new_resolver:UserWarning")  # OmegaConf's, about Kedro's loader
def test_the_kedro_hook_reads_governance_with_the_one_loader(tmp_path):
    from types import SimpleNamespace

    from kedro.config import OmegaConfigLoader

    from frugalml.config import CONFIG_LOADER_ARGS
    from frugalml.governance.hooks import AccessControlHook, GovernanceState

    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base" / "governance.yml").write_text((REPO / "conf" / "base" / "governance.yml").read_text())
    (conf / "local" / "governance.yml").write_text("identity:\n  local_user_roles: [viewer]\n")
    for env, roles in ((None, ["viewer"]), ("local", ["viewer"]), ("base", ["data-scientist"])):
        loader = OmegaConfigLoader(conf_source=str(conf), env=env, **CONFIG_LOADER_ARGS)  # as a session builds it
        context = SimpleNamespace(config_loader=loader, project_path=tmp_path, env=env, params={})
        state = GovernanceState()
        AccessControlHook(state).after_context_created(context)
        assert state.config == load_governance(conf, env or "local")
        assert state.config.identity.local_user_roles == roles, env
    (conf / "local" / "governance.yml").write_text("identity: {local_user_roles: [viewer]\n")
    loader = OmegaConfigLoader(conf_source=str(conf), env=None, **CONFIG_LOADER_ARGS)
    with pytest.raises(ParameterError, match="local/governance.yml"):
        AccessControlHook(GovernanceState()).after_context_created(
            SimpleNamespace(config_loader=loader, project_path=tmp_path, env=None, params={})
        )


def test_a_weaker_config_is_refused_and_audited_in_the_baseline_trail(config, log):
    from frugalml.governance.policy import enforce, governance_digest

    weak = parse_governance({**config.model_dump(), "audit": {**config.audit.model_dump(), "enabled": False}})
    with pytest.raises(GovernanceError, match="weakens governance: audit.enabled.*make server"):
        enforce(weak, config, client=None, accepted=[], identity=ALICE, refusal_log=log)
    refused, anchored = log.records()[-2:]
    assert refused["kind"] == "governance.refused" and refused["data"]["digest"] == governance_digest(weak)
    assert anchored["kind"] == "audit.anchor"  # anchored at once: cutting the refusal off the end is detected
    assert log.anchors()[-1]["seq"] == refused["seq"]


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
