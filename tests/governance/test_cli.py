"""Governance end to end without a server: the hooks in real kedro runs, the `frugalml` commands on them.

Without a governance server the OS user is unauthenticated: they run pipelines with the local roles, every
two-person or role-gated operation is refused, and conf/local cannot weaken governance. The same flows with a
real server (authenticated users, the witness, approvals) are in test_service.py.
"""

from __future__ import annotations

import getpass
import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from frugalml.commands import main
from frugalml.errors import AccessDenied, GovernanceError
from frugalml.governance.audit import AuditLog
from tests.helpers import CORPUS_SHA256, SMALL, make_project, run, store_uri

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
    from frugalml.governance.context import local_key

    return AuditLog(project / "data" / "audit" / "audit.jsonl", signer=local_key(project, create=False))


def test_a_run_is_audited_with_hashes_and_anchored_in_mlflow(trained):
    project, run_id = trained
    log = audit_of(project)
    assert log.verify().ok
    records = [r for r in log.records() if r["run_id"] == run_id]
    kinds = {r["kind"] for r in records}
    assert {"pipeline.start", "params.snapshot", "node.start", "node.end", "dataset.load", "dataset.save",
            "pipeline.end", "registry.register", "audit.anchor", "privacy.spend"} <= kinds  # fmt: skip
    start = next(r for r in records if r["kind"] == "pipeline.start")
    assert start["actor"] == getpass.getuser() and start["data"]["params_digest"]
    allowed = next(r for r in log.records() if r["kind"] == "rbac.allowed")
    assert allowed["data"]["authenticated"] is False and allowed["data"]["roles"] == ["data-scientist"]
    saved = {r["data"]["dataset"]: r["data"] for r in records if r["kind"] == "dataset.save"}
    assert saved["train_set"]["layer"] == "05_model_input" and saved["train_set"]["rows"] > 0
    assert len(saved["train_set"]["content_hash"]) == 16
    tags = MlflowClient(store_uri(project)).get_run(run_id).data.tags
    head = json.loads(tags["audit.head"])  # a signed tree head, checked like the anchors file
    assert head["kind"] == "head" and head["sig"] and head["signer"].startswith("local:")
    assert next(r for r in log.records() if r["seq"] == head["seq"])["hash"] == head["hash"]


def test_cli_verify_report_and_check(trained, monkeypatch, capsys):
    project, run_id = trained
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(project))
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "intact" in out and "local key" in out and "no witness" in out  # says who vouches, and how little
    assert main(["audit", "prove", "3"]) == 0
    proof = json.loads(capsys.readouterr().out)
    assert proof["record"]["seq"] == 3 and proof["signed_head"]["root"] and proof["proof"]
    assert main(["audit", "report", "--model", "frugalml-text-classifier", "--version", "1"]) == 0
    report = (project / "data" / "08_reporting" / "lineage" / "lineage_frugalml-text-classifier_v1.md").read_text()
    assert CORPUS_SHA256 in report  # raw archive digest
    assert "train_set" in report and "quality.emails.passed" in report and run_id in report
    assert main(["check", "--no-scan"]) == 1  # watermarking is not built yet: the checklist fails
    out = capsys.readouterr().out
    assert "PASS     audit chain intact" in out and "PASS     model artifacts in safe formats" in out
    assert "FAIL     watermark verified" in out


def _copy(trained, tmp_path, monkeypatch):
    import shutil

    project, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(copy))
    return copy


def test_cli_detects_tampering_and_refuses_an_unauthenticated_purge(trained, tmp_path, monkeypatch, capsys):
    copy = _copy(trained, tmp_path, monkeypatch)
    monkeypatch.setenv("LOGNAME", "admin")  # `admin` is an admin in governance.yml: claiming the name gives nothing
    monkeypatch.setenv("USER", "admin")
    assert main(["audit", "purge", "--before", "2020-01-01"]) == 2
    assert "needs an authenticated identity" in capsys.readouterr().out
    log = audit_of(copy)
    assert log.records()[-1]["kind"] == "rbac.refused" and log.verify().ok
    content = log.path.read_text().splitlines(keepends=True)
    record = json.loads(content[10])
    record["actor"] = "mallory"
    content[10] = json.dumps(record) + "\n"
    log.path.write_text("".join(content))
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at line 11" in capsys.readouterr().out


def test_a_chain_rewritten_with_recomputed_hashes_is_caught_by_the_signed_mlflow_anchor(
    trained, tmp_path, monkeypatch, capsys
):
    from frugalml.governance.audit import record_hash

    copy = _copy(trained, tmp_path, monkeypatch)
    log = audit_of(copy)
    records = log.records()
    prev, out = "0" * 64, []
    for record in records:  # rewrite history: one actor changed, every hash and link recomputed
        record = {**record, "prev": prev, "actor": "mallory" if record["seq"] == 5 else record["actor"]}
        record["hash"] = record_hash(record)
        prev = record["hash"]
        out.append(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    log.path.write_text("".join(out))
    log.anchors_path.unlink()  # and remove the anchors file too: the MLflow run tags still hold signed heads
    assert main(["audit", "verify"]) == 1
    assert "MLflow run" in capsys.readouterr().out


def test_governance_cannot_be_switched_off_from_conf_local(trained, tmp_path, monkeypatch, capsys):
    copy = _copy(trained, tmp_path, monkeypatch)
    for weaker, finding in [
        ({"audit": {"enabled": False}}, "audit.enabled"),
        ({"privacy": {"require_dp": False}}, "require_dp"),
        ({"privacy": {"default_budget_epsilon": 1000}}, "default_budget_epsilon"),
        ({"audit": {"path": "data/audit/fresh.jsonl"}}, "fresh, empty ledger"),
        ({"identity": {"local_user_roles": ["admin"]}}, "unauthenticated users gain"),
    ]:
        base = yaml.safe_load((copy / "conf" / "base" / "governance.yml").read_text())
        for block, values in weaker.items():
            base[block] = {**base[block], **values}
        (copy / "conf" / "local" / "governance.yml").write_text(yaml.safe_dump(base))
        before = len(audit_of(copy).records())
        with pytest.raises(GovernanceError, match=f"weakens governance: .*{finding}"):
            run(copy, "train", monkeypatch)
        refused = audit_of(copy).records()[before:]  # audited in the real trail, not in the weakened one
        assert [r["kind"] for r in refused] == ["governance.refused", "audit.anchor"], refused
        assert not (copy / "data" / "audit" / "fresh.jsonl").exists()
        assert main(["runs", "delete", "0" * 32, "--request", "x"]) == 2  # the CLI refuses the weaker config
        assert "weakens governance" in capsys.readouterr().out
        assert main(["privacy", "status"]) == 0  # reading runs under the governance of record
        assert "runs under the governance of record" in capsys.readouterr().out
    (copy / "conf" / "local" / "governance.yml").unlink()


@pytest.mark.parametrize(
    ("local_roles", "message"),
    [(["viewer"], "may not run pipeline 'train'"), ([], "unauthenticated local user")],
)
def test_local_users_get_only_the_local_roles(tmp_path, corpus_path, monkeypatch, local_roles, message):
    project = make_project(tmp_path, corpus_path, SMALL)
    (project / "conf" / "local" / "governance.yml").write_text(yaml.safe_dump({"identity": {
        "local_user_roles": local_roles}}))  # fmt: skip
    monkeypatch.setenv("LOGNAME", "alice")  # alice is a data scientist in `users`, but nobody proved it
    with pytest.raises(AccessDenied, match=message):
        run(project, "train", monkeypatch)
    log = audit_of(project)
    assert [r["kind"] for r in log.records()] == ["rbac.refused"] and log.verify().ok
    store = project / "mlruns" / "mlflow.db"
    if store.exists():  # no MLflow run was opened for the refused user
        experiment = MlflowClient(f"sqlite:///{store}").get_experiment_by_name("frugalml")
        assert experiment is None or not MlflowClient(f"sqlite:///{store}").search_runs([experiment.experiment_id])
    assert not (project / "data" / "06_models").exists()


def test_the_privacy_ledger_refuses_a_run_over_budget(tmp_path, corpus_path, monkeypatch, capsys):
    from frugalml.errors import GovernanceError

    private = {**SMALL, "train": {**SMALL["train"], "epochs": 2, "batch_size": 32,
                                  "privacy": {"enabled": True, "target_epsilon": 1.0,
                                              "refuse_signal_to_noise": 0}}}  # fmt: skip
    project = make_project(tmp_path, corpus_path, private, governance={"privacy": {"default_budget_epsilon": 1.5}})
    run(project, "__default__", monkeypatch)  # spends at most 1.0 of 1.5
    log = audit_of(project)
    spends = [r for r in log.records() if r["kind"] == "privacy.spend"]
    assert len(spends) == 1 and spends[0]["data"]["dataset"].startswith("rows:")
    assert 0 < spends[0]["data"]["epsilon"] <= 1.01 and spends[0]["data"]["rowset"]
    model = project / "data" / "06_models" / "text_classifier" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    with pytest.raises(GovernanceError, match="privacy budget of rows:.* would be exceeded.*make server"):
        run(project, "train", monkeypatch)
    assert model.stat().st_mtime_ns == stamp  # refused before training: no new model
    monkeypatch.chdir(project)
    assert main(["privacy", "status"]) == 0
    assert "spent" in capsys.readouterr().out
    assert main(["request", "raise_privacy_budget", "--detail", f"dataset={spends[0]['data']['dataset']}",
                 "--detail", "epsilon=3"]) == 2  # fmt: skip
    assert "needs an authenticated identity" in capsys.readouterr().out


def test_training_without_dp_is_refused_without_a_server(tmp_path, corpus_path, monkeypatch):
    from frugalml.errors import GovernanceError

    plain = {**SMALL, "train": {**SMALL["train"], "privacy": {"enabled": False}}}
    project = make_project(tmp_path, corpus_path, plain)
    with pytest.raises(GovernanceError, match="rows:[0-9a-f]{16} without differential privacy.*make server"):
        run(project, "__default__", monkeypatch)
    assert not (project / "data" / "06_models" / "text_classifier" / "model.safetensors").exists()
    refused = [r for r in audit_of(project).records() if r["kind"] == "rbac.refused"]
    assert refused and refused[-1]["data"]["operation"] == "disable_dp"


def test_require_dp_off_in_the_projects_policy_lets_it_train_without_dp(tmp_path, corpus_path, monkeypatch):
    plain = {**SMALL, "train": {**SMALL["train"], "privacy": {"enabled": False}}}
    project = make_project(tmp_path, corpus_path, plain, governance={"privacy": {"require_dp": False}})
    run_id = run(project, "__default__", monkeypatch)
    params = MlflowClient(store_uri(project)).get_run(run_id).data.params
    assert params["train.privacy.enabled"] == "False"
    assert not [r for r in audit_of(project).records() if r["kind"] in ("privacy.spend", "rbac.refused")]
