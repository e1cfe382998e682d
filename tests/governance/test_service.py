"""Governance with a real server on loopback: authenticated identities, the witness, approvals, the registry guard.

One frugalml MLflow server (basic-auth + the governance service) and one project for the module; the tests run
in order on it, as a team would: alice trains, bob approves, mallory (anyone with file access) attacks copies of
the trail. Every attack here is one the issue reproduced against the code before the governance service.
"""

from __future__ import annotations

import json
import secrets
import shutil

import mlflow
import mlflow.tracking.fluent
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from frugalml.commands import main
from frugalml.errors import AccessDenied, GovernanceError
from frugalml.governance.audit import AuditLog, record_hash
from frugalml.governance.client import GovernanceClient
from frugalml.governance.server import free_port, provision, start_server
from frugalml.governance.signing import SigningKey
from tests.helpers import REPO, SMALL, make_project

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "Adm1n-" + secrets.token_urlsafe(16)
PASSWORDS = {user: f"{user}-" + secrets.token_urlsafe(16) for user in ("alice", "bob", "carol")}
MODEL = "frugalml-text-classifier"


@pytest.fixture(scope="module")
def governed(tmp_path_factory, corpus_path):
    """A project whose governance names the server, tracked by it; the server enforces that governance.yml."""
    root = tmp_path_factory.mktemp("governed_server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    params = {**SMALL, "train": {**SMALL["train"], "epochs": 2}}
    witness = SigningKey.load_or_create(root / "auth" / "governance" / "witness.key", "witness")  # pinned below
    project = make_project(root, corpus_path, params, governance={
        "identity": {"server": uri, "server_fingerprint": witness.fingerprint},
        "privacy": {"default_budget_epsilon": 1.5}})  # fmt: skip
    tracking = yaml.safe_load((REPO / "conf" / "base" / "mlflow.yml").read_text())["tracking"]
    (project / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump(
        {"server": {"mlflow_tracking_uri": uri, "mlflow_registry_uri": uri}, "tracking": tracking}))  # fmt: skip
    handle = start_server(port=port, backend_store_uri=f"sqlite:///{root / 'server.db'}",
                          artifacts_destination=str(root / "artifacts"), auth_dir=root / "auth",
                          admin_password=ADMIN_PASSWORD,
                          governance_file=project / "conf" / "base" / "governance.yml")  # fmt: skip
    try:
        policy = yaml.safe_load((project / "conf" / "base" / "governance.yml").read_text())
        provision(uri, policy, admin_password=ADMIN_PASSWORD, passwords=PASSWORDS)
        yield project, uri
    finally:
        handle.stop()


def login(monkeypatch, uri: str, user: str | None, password: str | None = None) -> None:
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    if user is None:
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        return
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or (ADMIN_PASSWORD if user == "admin" else PASSWORDS[user]))


def run(project, pipeline: str, monkeypatch) -> None:
    monkeypatch.chdir(project)
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project) as session:
            session.run(pipeline_names=[pipeline])
    finally:
        while mlflow.active_run():
            mlflow.end_run()


def trail(project, uri: str, user: str = "alice") -> AuditLog:
    return AuditLog(project / "data" / "audit" / "audit.jsonl", witness=GovernanceClient(uri, user, PASSWORDS[user]))


def cli(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_a_run_is_authenticated_and_witnessed_whatever_logname_says(governed, monkeypatch, capsys):
    project, uri = governed
    monkeypatch.chdir(project)
    login(monkeypatch, uri, "alice")
    monkeypatch.setenv("LOGNAME", "bob")  # claims nothing: the server says who this is
    monkeypatch.setenv("USER", "bob")
    run(project, "__default__", monkeypatch)
    log = trail(project, uri)
    records = log.records()
    assert {r["actor"] for r in records} == {"alice"}
    allowed = next(r for r in records if r["kind"] == "rbac.allowed")
    assert allowed["data"]["authenticated"] is True and allowed["data"]["identity_source"] == "mlflow-server"
    assert any(r["kind"] == "privacy.spend" for r in records)
    state = GovernanceClient(uri, "alice", PASSWORDS["alice"]).witness_state()
    assert state["head"]["signer"].startswith("witness:") and state["head"]["seq"] >= len(records) - 2
    code, out = cli(monkeypatch, capsys, "audit", "verify")
    assert code == 0 and "witness key" in out
    run_ = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("frugalml").experiment_id])[0]
    assert json.loads(run_.data.tags["audit.head"])["signer"].startswith("witness:")
    assert MlflowClient(uri).get_registered_model(MODEL).latest_versions  # registered on the server


def test_an_impostor_on_the_servers_port_gets_no_password(governed, tmp_path, monkeypatch):
    """The pinned witness key is checked, without credentials, before any password is sent."""
    project, uri = governed
    monkeypatch.chdir(project)
    impostor_port = free_port()
    handle = start_server(port=impostor_port, backend_store_uri=f"sqlite:///{tmp_path / 'fake.db'}",
                          artifacts_destination=str(tmp_path / "fake-artifacts"), auth_dir=tmp_path / "fake-auth",
                          admin_password=ADMIN_PASSWORD)  # fmt: skip
    try:
        impostor = GovernanceClient(handle.uri, "alice", PASSWORDS["alice"], fingerprint=_pinned(project))
        with pytest.raises(AccessDenied, match="not the pinned"):
            impostor.check_pin()
        with pytest.raises(AccessDenied, match="is not pinned: it presents witness key"):
            GovernanceClient(handle.uri).check_pin()
    finally:
        handle.stop()
    assert "alice" not in (tmp_path / "fake-auth" / "server.log").read_text()  # no login was attempted there


def _pinned(project) -> str:
    return yaml.safe_load((project / "conf" / "base" / "governance.yml").read_text())["identity"]["server_fingerprint"]


def test_a_missing_or_wrong_identity_is_refused_even_with_the_tracking_uri_unset(governed, monkeypatch, capsys):
    project, uri = governed
    monkeypatch.chdir(project)
    login(monkeypatch, uri, None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("LOGNAME", "admin")
    with pytest.raises(AccessDenied, match="unauthenticated: no user name for the MLflow server"):
        run(project, "split", monkeypatch)
    login(monkeypatch, uri, "alice", "not-her-password-at-all")
    with pytest.raises(AccessDenied, match="refused the credentials of user 'alice'"):
        run(project, "split", monkeypatch)
    login(monkeypatch, uri, "alice")
    code, out = cli(monkeypatch, capsys, "approve", "0123456789abcdef", "--yes")
    assert code == 2 and "may not 'approve'" in out  # alice is no approver, whatever LOGNAME says


def _copy_trail(project, tmp_path):
    copy = tmp_path / "audit"
    shutil.copytree(project / "data" / "audit", copy)
    return copy / "audit.jsonl"


def _rewrite(path, records) -> None:
    prev, out = "0" * 64, []
    for record in records:
        record = {**record, "prev": prev}
        record["hash"] = record_hash(record)
        prev = record["hash"]
        out.append(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    path.write_text("".join(out))


def test_the_witness_catches_a_rewritten_truncated_or_deleted_trail(governed, tmp_path):
    project, uri = governed
    witness = GovernanceClient(uri, "alice", PASSWORDS["alice"])
    mallory_key = SigningKey.load_or_create(tmp_path / "conf_local.key", "local")  # she owns conf/local
    path = _copy_trail(project, tmp_path / "a")
    log = AuditLog(path, witness=witness, signer=mallory_key)
    assert log.verify().ok  # an honest copy verifies
    records = log.records()
    records[3] = {**records[3], "actor": "mallory"}
    _rewrite(path, records)  # every hash recomputed
    log.anchors_path.write_text(json.dumps(log.signed_head() if False else mallory_key.sign(
        {"kind": "head", "seq": records[-1]["seq"], "hash": json.loads(path.read_text().splitlines()[-1])["hash"],
         "first_seq": 1})) + "\n")  # fmt: skip
    result = log.verify()
    assert not result.ok and "governance server" in result.reason
    with pytest.raises(GovernanceError, match="does not extend"):  # and the witness will not sign the forgery
        log.anchor(actor="mallory")

    path = _copy_trail(project, tmp_path / "b")
    truncated = AuditLog(path, witness=witness)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-12]))
    truncated.anchors_path.unlink()
    result = truncated.verify()
    assert not result.ok and "records at the end were deleted" in result.reason

    path = _copy_trail(project, tmp_path / "c")
    path.unlink()
    path.with_name("audit.anchors.jsonl").unlink()
    result = AuditLog(path, witness=witness).verify()  # a fresh, empty trail in its place
    assert not result.ok and "chain ends at seq 0" in result.reason

    path = _copy_trail(project, tmp_path / "d")
    cut = AuditLog(path).records()[9]
    with path.with_name("audit.anchors.jsonl").open("a") as handle:
        handle.write(json.dumps(mallory_key.sign({"kind": "genesis", "seq": cut["seq"], "hash": cut["hash"]})) + "\n")
    path.write_text("".join(path.read_text().splitlines(keepends=True)[10:]))
    result = AuditLog(path, witness=witness, signer=mallory_key).verify()
    assert not result.ok and "['witness'] is required" in result.reason


def test_audit_anchors_in_mlflow_cannot_be_garbled_or_deleted_over_rest(governed, monkeypatch, capsys):
    project, uri = governed
    monkeypatch.chdir(project)
    login(monkeypatch, uri, "alice")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("frugalml").experiment_id
    trained = client.search_runs([experiment], "tags.`frugalml.pipeline` = '__default__'")[0]
    with pytest.raises(MlflowException, match="tree head signed by this governance server"):
        client.set_tag(trained.info.run_id, "audit.head", "999999:" + "f" * 64)  # the old format, forged
    with pytest.raises(MlflowException, match="cannot be deleted"):
        client.delete_tag(trained.info.run_id, "audit.head")
    with pytest.raises(MlflowException, match="signed by this governance server"):
        client.create_run(experiment, tags={"audit.head": "garbage"})
    client.set_tag(
        client.create_run(experiment).info.run_id, "audit.head", trained.data.tags["audit.head"]
    )  # a real signed head may be copied: it is still checked
    assert cli(monkeypatch, capsys, "audit", "verify")[0] == 0


def _raw(uri: str, user: str, call: tuple[str, str, bytes, str | None]) -> int:
    method, path, body, content_type = call
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(uri + path, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    password = ADMIN_PASSWORD if user == "admin" else PASSWORDS[user]
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_requests_name_their_target_approvers_see_it_and_an_approval_is_used_once(governed, monkeypatch, capsys):
    project, uri = governed
    monkeypatch.chdir(project)
    login(monkeypatch, uri, "alice")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("frugalml").experiment_id
    scratch, other = (client.create_run(experiment).info.run_id for _ in range(2))
    code, out = cli(monkeypatch, capsys, "request", "delete_runs")  # a blank cheque
    assert code == 2 and "--detail run_ids=" in out
    code, out = cli(monkeypatch, capsys, "request", "raise_privacy_budget", "--detail", "dataset=rows:0123456789abcdef",
                    "--detail", "epsilon=inf")  # fmt: skip
    assert code == 2 and "epsilon" in out
    code, out = cli(monkeypatch, capsys, "request", "delete_runs", "--detail", f"run_ids={scratch}")
    assert code == 0, out
    request_id = out.split("request ", 1)[1].split()[0]
    with pytest.raises(MlflowException, match="403"):  # no way around the rule through REST
        client.delete_run(other)
    login(monkeypatch, uri, "admin")
    with pytest.raises(MlflowException, match="frugalml runs delete"):  # not even for the MLflow admin
        MlflowClient(uri).delete_run(other)
    login(monkeypatch, uri, "alice")
    code, out = cli(monkeypatch, capsys, "runs", "delete", scratch, "--request", request_id)
    assert code == 2 and "pending, not approved" in out
    login(monkeypatch, uri, "bob")
    code, out = cli(monkeypatch, capsys, "approve", request_id)  # no terminal: the details are shown, not approved
    assert code == 2 and f"run_ids = {scratch}" in out and "--yes" in out
    code, out = cli(monkeypatch, capsys, "approve", request_id, "--yes")
    assert code == 0 and f"run_ids={scratch}" in out
    login(monkeypatch, uri, "alice")
    code, out = cli(monkeypatch, capsys, "runs", "delete", other, "--request", request_id)
    assert code == 2 and "approved for" in out  # approved for one run, not for another
    assert cli(monkeypatch, capsys, "runs", "delete", scratch, "--request", request_id)[0] == 0
    assert client.get_run(scratch).info.lifecycle_stage == "deleted"
    code, out = cli(monkeypatch, capsys, "runs", "delete", scratch, "--request", request_id)
    assert code == 2 and "is used" in out
    code, out = cli(monkeypatch, capsys, "approvals")
    assert request_id in out and "used" in out and "approved by bob" in out
    used = [r for r in trail(project, uri).records() if r["kind"] == "approval.used"]
    assert used[-1]["data"]["approved_by"] == "bob" and used[-1]["data"]["server_signature"]
    assert cli(monkeypatch, capsys, "audit", "verify")[0] == 0  # the deleted run's anchor is still checked


def test_production_moves_only_through_the_governed_path(governed, monkeypatch, capsys):
    project, uri = governed
    monkeypatch.chdir(project)
    for user in ("alice", "admin"):  # an EDIT user, and even the MLflow admin
        login(monkeypatch, uri, user)
        client = MlflowClient(uri, registry_uri=uri)
        with pytest.raises(MlflowException, match="move only through `frugalml promote`"):
            client.set_registered_model_alias(MODEL, "production", "1")
        with pytest.raises(MlflowException, match="stage transitions"):
            client.transition_model_version_stage(MODEL, "1", "Production")
    login(monkeypatch, uri, "alice")
    client = MlflowClient(uri, registry_uri=uri)
    client.set_registered_model_alias(MODEL, "challenger", "1")  # unprotected aliases are not governed
    code, out = cli(monkeypatch, capsys, "request", "promote_production", "--detail", f"model={MODEL}",
                    "--detail", "version=1")  # fmt: skip
    request_id = out.split("request ", 1)[1].split()[0]
    login(monkeypatch, uri, "bob")
    assert cli(monkeypatch, capsys, "approve", request_id, "--yes")[0] == 0
    login(monkeypatch, uri, "alice")
    code, out = cli(monkeypatch, capsys, "promote", "--model", MODEL, "--version", "1", "--request", request_id,
                    "--no-scan")  # fmt: skip
    assert code == 2 and "checklist fails" in out  # no watermark yet: the checklist stops it, nothing consumed
    assert "production" not in client.get_registered_model(MODEL).aliases
    receipt = GovernanceClient(uri, "alice", PASSWORDS["alice"]).promote(MODEL, "1", request_id)  # the server path
    assert receipt["state"] == "used" and client.get_registered_model(MODEL).aliases["production"] == "1"
    with pytest.raises(MlflowException, match="protected alias"):  # nor can it be deleted from under the rule
        client.delete_registered_model(MODEL)
    alias = json.dumps({"name": MODEL, "alias": "production"}).encode()
    version = json.dumps({"name": MODEL, "version": "01"}).encode()
    for user, method, path, body, content_type in [  # the body as MLflow reads it, however it is sent
        ("admin", "DELETE", "/api/2.0/mlflow/registered-models/alias", alias, "text/plain"),
        ("admin", "DELETE", "/api/2.0/mlflow/registered-models/alias", alias, None),
        ("admin", "POST", "/api/2.0/mlflow/registered-models/alias",
         json.dumps(json.dumps({"name": MODEL, "alias": "production", "version": "1"})).encode(), "application/json"),
        ("admin", "DELETE", "/api/2.0/mlflow/model-versions/delete", version, "text/plain"),
        ("admin", "DELETE", f"/api/2.0/mlflow/registered-models/delete?name={MODEL}", b"{not json", "text/plain"),
        ("admin", "POST", "/api/2.0/mlflow/experiments/delete", json.dumps({"experiment_id": "1"}).encode(),
         "application/json"),
    ]:  # fmt: skip
        assert _raw(uri, user, (method, path, body, content_type)) == 403, (method, path, content_type)
    assert client.get_registered_model(MODEL).aliases["production"] == "1"


def test_a_weaker_governance_runs_only_under_an_approved_change(governed, monkeypatch, capsys):
    project, uri = governed
    monkeypatch.chdir(project)
    login(monkeypatch, uri, "alice")
    local = project / "conf" / "local" / "governance.yml"
    base = yaml.safe_load((project / "conf" / "base" / "governance.yml").read_text())
    local.write_text(yaml.safe_dump({"identity": {**base["identity"], "server": None}}))
    with pytest.raises(GovernanceError, match="identity.server"):  # leaving the server is a weakening too
        run(project, "split", monkeypatch)
    local.write_text(yaml.safe_dump({"privacy": {**base["privacy"], "require_dp": False}}))
    with pytest.raises(GovernanceError, match="require_dp.*change_governance --detail digest=") as refused:
        run(project, "split", monkeypatch)
    digest = str(refused.value).split("digest=")[1].split("`")[0]
    assert [r["kind"] for r in trail(project, uri).records()[-2:]] == ["governance.refused", "audit.anchor"]
    code, out = cli(monkeypatch, capsys, "request", "change_governance", "--detail", f"digest={digest}")
    assert code == 0, out
    request_id = out.split("request ", 1)[1].split()[0]
    login(monkeypatch, uri, "bob")
    assert cli(monkeypatch, capsys, "approve", request_id, "--yes")[0] == 0
    login(monkeypatch, uri, "alice")
    run(project, "split", monkeypatch)
    kinds = [r["kind"] for r in trail(project, uri).records()]
    assert "governance.accepted" in kinds and "approval.used" in kinds
    local.unlink()


def test_the_budget_is_spent_per_row_and_a_raise_needs_two_people(governed, monkeypatch, capsys):
    project, uri = governed
    monkeypatch.chdir(project)
    login(monkeypatch, uri, "alice")
    model = project / "data" / "06_models" / "text_classifier" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    with pytest.raises(GovernanceError, match="would be exceeded.*raise_privacy_budget --detail dataset=rows:") as over:
        run(project, "train", monkeypatch)
    assert model.stat().st_mtime_ns == stamp
    key = str(over.value).split("dataset=")[1].split()[0]
    code, out = cli(monkeypatch, capsys, "request", "raise_privacy_budget", "--detail", f"dataset={key}",
                    "--detail", "epsilon=11")  # fmt: skip
    assert code == 2 and "max_budget_epsilon" in out  # bounded
    code, out = cli(monkeypatch, capsys, "request", "raise_privacy_budget", "--detail", f"dataset={key}",
                    "--detail", "epsilon=3")  # fmt: skip
    request_id = out.split("request ", 1)[1].split()[0]
    login(monkeypatch, uri, "bob")
    assert cli(monkeypatch, capsys, "approve", request_id, "--yes")[0] == 0
    login(monkeypatch, uri, "alice")
    run(project, "train", monkeypatch)
    assert model.stat().st_mtime_ns != stamp
    spends = [r for r in trail(project, uri).records() if r["kind"] == "privacy.spend"]
    assert len(spends) == 2 and spends[0]["data"]["dataset"] == spends[1]["data"]["dataset"] == key


def test_training_without_dp_needs_one_approval_per_run(governed, monkeypatch, capsys):
    project, uri = governed
    monkeypatch.chdir(project)
    login(monkeypatch, uri, "alice")
    parameters = project / "conf" / "local" / "parameters.yml"
    params = yaml.safe_load(parameters.read_text())
    params["train"] = {**params["train"], "privacy": {"enabled": False}}
    parameters.write_text(yaml.safe_dump(params))
    with pytest.raises(GovernanceError, match="without differential privacy.*disable_dp --detail dataset=rows:") as no:
        run(project, "train", monkeypatch)
    key = str(no.value).split("dataset=")[1].split("`")[0]
    code, out = cli(monkeypatch, capsys, "request", "disable_dp", "--detail", f"dataset={key}")
    request_id = out.split("request ", 1)[1].split()[0]
    login(monkeypatch, uri, "bob")
    assert cli(monkeypatch, capsys, "approve", request_id, "--yes")[0] == 0
    login(monkeypatch, uri, "alice")
    run(project, "train", monkeypatch)
    with pytest.raises(GovernanceError, match="without differential privacy"):  # one approval, one run
        run(project, "train", monkeypatch)
    assert cli(monkeypatch, capsys, "audit", "verify")[0] == 0
