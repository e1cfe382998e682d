"""Governance end to end: the hooks in real kedro runs, and the `frugalml` commands on their results."""

from __future__ import annotations

import getpass
import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from frugalml.commands import main
from frugalml.errors import AccessDenied
from frugalml.governance.audit import AuditLog
from tests.test_pipeline import SMALL, make_project, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_path):
    """One default run on 300 real e-mails, shared by the tests below (they only read it)."""
    tmp_path = tmp_path_factory.mktemp("governed")
    project = make_project(tmp_path, corpus_path, SMALL)
    with pytest.MonkeyPatch.context() as patch:
        run_id = run(project, "__default__", patch)
    return project, run_id


def audit_of(project):
    return AuditLog(project / "data" / "audit" / "audit.jsonl")


def test_a_run_is_audited_with_hashes_and_anchored_in_mlflow(trained):
    project, run_id = trained
    log = audit_of(project)
    assert log.verify().ok
    records = [r for r in log.records() if r["run_id"] == run_id]
    kinds = {r["kind"] for r in records}
    assert {"pipeline.start", "params.snapshot", "node.start", "node.end", "dataset.load", "dataset.save",
            "pipeline.end", "registry.register", "audit.anchor"} <= kinds  # fmt: skip
    start = next(r for r in records if r["kind"] == "pipeline.start")
    assert start["actor"] == getpass.getuser() and start["data"]["params_digest"]
    saved = {r["data"]["dataset"]: r["data"] for r in records if r["kind"] == "dataset.save"}
    assert saved["train_set"]["layer"] == "05_model_input" and saved["train_set"]["rows"] > 0
    assert len(saved["train_set"]["content_hash"]) == 16
    tags = MlflowClient(f"sqlite:///{project}/mlruns/mlflow.db").get_run(run_id).data.tags
    seq, head = tags["audit.head"].split(":")
    assert next(r for r in log.records() if r["seq"] == int(seq))["hash"] == head


def test_cli_verify_report_and_check(trained, monkeypatch, capsys):
    project, run_id = trained
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project}/mlruns/mlflow.db")
    assert main(["audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out
    assert main(["audit", "report", "--model", "frugalml-text-classifier", "--version", "1"]) == 0
    report = (project / "data" / "08_reporting" / "lineage" / "lineage_frugalml-text-classifier_v1.md").read_text()
    assert "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb" in report  # raw archive digest
    assert "train_set" in report and "quality.emails.passed" in report and run_id in report
    assert main(["check", "--no-scan"]) == 1  # watermarking is not built yet: the checklist fails
    out = capsys.readouterr().out
    assert "PASS     audit chain intact" in out and "PASS     model artifacts in safe formats" in out
    assert "PASS     DP on with epsilon <= 2" in out and "PASS     no secrets in MLflow params" in out  # default DP
    assert "FAIL     watermark verified" in out


def test_cli_detects_tampering_and_refuses_purge_below_retention(trained, tmp_path, monkeypatch, capsys):
    import shutil

    project, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy}/mlruns/mlflow.db")
    assert main(["audit", "purge", "--before", "2020-01-01"]) == 2  # a data scientist may not purge
    assert "may not 'audit.purge'" in capsys.readouterr().out
    _govern(copy, {getpass.getuser(): ["admin"]}, [])
    assert main(["audit", "purge", "--before", "2100-01-01"]) == 2  # an admin may, but not below retention
    assert "refused" in capsys.readouterr().out
    log = audit_of(copy)
    assert log.records()[-1]["kind"] == "audit.purge_refused" and log.verify().ok
    content = log.path.read_text().splitlines(keepends=True)
    record = json.loads(content[10])
    record["actor"] = "mallory"
    content[10] = json.dumps(record) + "\n"
    log.path.write_text("".join(content))
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at line 11" in capsys.readouterr().out


def _govern(project, users: dict, local_roles: list) -> None:
    base = yaml.safe_load((project / "conf" / "base" / "governance.yml").read_text())
    base["users"] = users
    base["identity"] = {"local_user_roles": local_roles}
    (project / "conf" / "local" / "governance.yml").write_text(yaml.safe_dump(base))


@pytest.mark.parametrize(
    ("users", "message"),
    [({getpass.getuser(): ["viewer"]}, "may not run pipeline 'train'"), ({}, "unknown user")],
)
def test_viewer_or_unknown_user_cannot_train(tmp_path, corpus_path, monkeypatch, users, message):
    project = make_project(tmp_path, corpus_path, SMALL)
    _govern(project, users, [])
    with pytest.raises(AccessDenied, match=message):
        run(project, "train", monkeypatch)
    log = audit_of(project)
    assert [r["kind"] for r in log.records()] == ["rbac.refused"] and log.verify().ok
    store = project / "mlruns" / "mlflow.db"
    if store.exists():  # no MLflow run was opened for the refused user
        experiment = MlflowClient(f"sqlite:///{store}").get_experiment_by_name("frugalml")
        assert experiment is None or not MlflowClient(f"sqlite:///{store}").search_runs([experiment.experiment_id])
    assert not (project / "data" / "06_models").exists()


def test_two_person_operations_through_the_cli(trained, tmp_path, monkeypatch, capsys):
    import re
    import shutil

    from frugalml.governance.approvals import approve, requests
    from frugalml.governance.rbac import Identity, load_governance

    project, run_id = trained
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    monkeypatch.chdir(copy)
    uri = f"sqlite:///{copy}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _govern(copy, {getpass.getuser(): ["data-scientist", "approver"], "bob": ["approver"]}, [])
    log, config = audit_of(copy), load_governance(copy / "conf")

    def request(*args: str) -> str:
        assert main(["request", *args]) == 0
        return re.search(r"request (\w+)", capsys.readouterr().out).group(1)

    # deleting a run: refused without an approval, done with one from another user
    pending = request("delete_runs", "--detail", f"run_id={run_id}")
    assert main(["runs", "delete", run_id, "--request", pending]) == 2
    assert "pending, not approved" in capsys.readouterr().out
    assert main(["approve", pending]) == 2  # self-approval through the CLI
    assert "cannot approve their own request" in capsys.readouterr().out
    approve(log, config, Identity("bob", "mlflow-server"), pending)
    assert main(["runs", "delete", run_id, "--request", pending]) == 0
    assert MlflowClient(uri).get_run(run_id).info.lifecycle_stage == "deleted"
    assert main(["runs", "delete", run_id, "--request", pending]) == 2  # used once
    # promotion: approved, but the deployment checklist fails (no watermark): refused, not consumed
    promotion = request("promote_production", "--detail", "model=frugalml-text-classifier", "--detail", "version=1")
    approve(log, config, Identity("bob", "mlflow-server"), promotion)
    capsys.readouterr()
    assert main(["promote", "--model", "frugalml-text-classifier", "--version", "1", "--request", promotion,
                 "--no-scan"]) == 2  # fmt: skip
    assert "checklist fails" in capsys.readouterr().out
    assert requests(log)[promotion].state == "approved"
    client = MlflowClient(uri, registry_uri=uri)
    assert "production" not in client.get_registered_model("frugalml-text-classifier").aliases
    assert log.verify().ok


def test_privacy_ledger_refuses_a_run_over_budget_until_a_raise_is_approved(tmp_path, corpus_path, monkeypatch, capsys):
    from frugalml.errors import GovernanceError
    from frugalml.governance.approvals import approve, request_operation
    from frugalml.governance.rbac import Identity, load_governance

    private = {**SMALL, "train": {**SMALL["train"], "epochs": 2, "batch_size": 32,
                                  "privacy": {"enabled": True, "target_epsilon": 1.0}}}  # fmt: skip
    project = make_project(tmp_path, corpus_path, private)
    base = yaml.safe_load((project / "conf" / "base" / "governance.yml").read_text())
    base["privacy"] = {"default_budget_epsilon": 1.5, "budgets": {}}
    (project / "conf" / "local" / "governance.yml").write_text(yaml.safe_dump(base))
    run(project, "__default__", monkeypatch)  # spends at most 1.0 of 1.5
    log = audit_of(project)
    spends = [r for r in log.records() if r["kind"] == "privacy.spend"]
    key = "archive:8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
    assert [s["data"]["dataset"] for s in spends] == [key] and 0 < spends[0]["data"]["epsilon"] <= 1.01
    model = project / "data" / "06_models" / "text_classifier" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    with pytest.raises(GovernanceError, match="privacy budget of archive:8d15.* would be exceeded"):
        run(project, "train", monkeypatch)
    assert model.stat().st_mtime_ns == stamp  # refused before training: no new model
    assert log.records()[-1]["kind"] in ("audit.anchor", "pipeline.error")
    monkeypatch.chdir(project)
    assert main(["privacy", "status"]) == 0
    assert "spent" in capsys.readouterr().out
    config = load_governance(project / "conf")
    me = Identity(getpass.getuser(), "os")
    request = request_operation(log, config, me, "raise_privacy_budget", {"dataset": key, "epsilon": "3.0"})
    approve(log, config, Identity("bob", "os"), request.request_id)
    run(project, "train", monkeypatch)  # the approved raise is consumed, the run trains
    assert model.stat().st_mtime_ns != stamp
    assert [r["kind"] for r in log.records()].count("privacy.spend") == 2 and log.verify().ok


def test_training_without_dp_needs_a_second_persons_approval_each_time(tmp_path, corpus_path, monkeypatch):
    from frugalml.errors import GovernanceError
    from frugalml.governance.approvals import approve, request_operation, requests
    from frugalml.governance.rbac import Identity, load_governance

    plain = {**SMALL, "train": {**SMALL["train"], "privacy": {"enabled": False}}}
    project = make_project(tmp_path, corpus_path, plain)
    with pytest.raises(GovernanceError, match="without differential privacy needs a second person"):
        run(project, "__default__", monkeypatch)
    model = project / "data" / "06_models" / "text_classifier" / "model.safetensors"
    assert not model.exists()  # refused before training
    log = audit_of(project)
    refused = [r for r in log.records() if r["kind"] == "rbac.refused"]
    key = "archive:8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
    assert refused and refused[-1]["data"]["operation"] == "disable_dp" and refused[-1]["data"]["dataset"] == key
    config = load_governance(project / "conf")
    me = Identity(getpass.getuser(), "os")
    other = request_operation(log, config, me, "disable_dp", {"dataset": "table:someone-else"})
    approve(log, config, Identity("bob", "os"), other.request_id)
    with pytest.raises(GovernanceError, match="without differential privacy"):  # approval for another dataset
        run(project, "train", monkeypatch)
    request = request_operation(log, config, me, "disable_dp", {"dataset": key})
    with pytest.raises(GovernanceError, match="without differential privacy"):  # requested, not yet approved
        run(project, "train", monkeypatch)
    approve(log, config, Identity("bob", "os"), request.request_id)
    run(project, "train", monkeypatch)
    assert model.exists()
    assert requests(log)[request.request_id].state == "used" and requests(log)[other.request_id].state == "approved"
    assert not [r for r in log.records() if r["kind"] == "privacy.spend"]
    stamp = model.stat().st_mtime_ns
    with pytest.raises(GovernanceError, match="without differential privacy"):  # one approval, one run
        run(project, "train", monkeypatch)
    assert model.stat().st_mtime_ns == stamp and log.verify().ok


def test_require_dp_off_lets_a_project_train_without_dp(tmp_path, corpus_path, monkeypatch):
    plain = {**SMALL, "train": {**SMALL["train"], "privacy": {"enabled": False}}}
    project = make_project(tmp_path, corpus_path, plain, governance={"privacy": {"require_dp": False}})
    run_id = run(project, "__default__", monkeypatch)
    params = MlflowClient(f"sqlite:///{project}/mlruns/mlflow.db").get_run(run_id).data.params
    assert params["train.privacy.enabled"] == "False"
    assert not [r for r in audit_of(project).records() if r["kind"] in ("privacy.spend", "rbac.refused")]
