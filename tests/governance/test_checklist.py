"""`frugalml check` under attack: real detect-secrets scans of a git checkout, real pip-audit runs with the
advisory service made unreachable, and a real MLflow registry holding versions that must not be deployed.

Planted secrets are assembled at run time from random parts, so this file holds none itself.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import string
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from frugalml.governance.checklist import (
    SECRETS_BASELINE,
    STATUSES,
    CheckItem,
    check_dependencies,
    check_registered_versions_dp,
    check_secrets_in_git,
    check_secrets_in_mlflow,
    exit_status,
    installed_requirements,
    run_checklist,
    tracked_files,
    write_secrets_baseline,
)
from tests.helpers import REPO

#: This module and the baseline are new: until they are committed, `git ls-files` in the repository lacks them.
_OWN_NEW_FILES = (SECRETS_BASELINE, "tests/governance/test_checklist.py")


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _planted(kind: str, *, yaml: bool = False) -> tuple[str, str]:
    """A line (or block) a leak would add, and its secret value; built at run time, never a literal here."""
    letters = string.ascii_letters + string.digits
    value = {
        "aws key": "AKIA" + _random(string.ascii_uppercase + string.digits, 16),
        "private key": "-----BEGIN " + "RSA PRIVATE KEY-----",
        "github token": "ghp" + "_" + _random(letters, 36),
        "password assignment": _random(letters, 20),
    }[kind]
    key = {"aws key": "aws_access_key_id", "private key": "tls_key", "github token": "token"}.get(
        kind, "db_pass" + "word"
    )
    if kind == "private key":
        body = _random(string.ascii_letters, 64)
        return (f"{key}: |\n  {value}\n  {body}\n" if yaml else f'{key} = """\n{value}\n{body}\n"""\n'), body
    return (f'{key}: "{value}"\n' if yaml else f'{key} = "{value}"\n'), value


KINDS = ("aws key", "private key", "github token", "password assignment")


def _git(project: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(project), *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout holding the project's tracked files as they are now (plus this module and the baseline)."""
    project = tmp_path / "checkout"
    names = sorted(set(tracked_files(REPO)) | {n for n in _OWN_NEW_FILES if (REPO / n).is_file()})
    for name in names:
        source = REPO / name
        if source.is_symlink() or not source.is_file():
            continue
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, project / name)
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    return project


def _append(project: Path, name: str, text: str, *, track: bool = False) -> None:
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
    if track:
        _git(project, "add", name)


# --- secrets in tracked files ---------------------------------------------------------------------------------
def test_the_project_as_committed_passes_its_own_secret_scan(checkout: Path):
    assert (REPO / SECRETS_BASELINE).is_file(), "the baseline must be committed at the repository root"
    for root in (REPO, checkout):  # the live tree's tracked files, and a checkout that includes the new files
        item = check_secrets_in_git(root)
        assert item.status == "pass", item.detail
        assert "audited false positives" in item.detail and "detect-secrets" in item.detail
    # the false positives are in the scan (tests/ included), audited in the baseline, not excluded
    baseline = json.loads((REPO / SECRETS_BASELINE).read_text())
    assert any(name.startswith("tests/") for name in baseline["results"])
    assert all(entry["is_secret"] is False for entries in baseline["results"].values() for entry in entries)
    assert not [f for f in baseline["filters_used"] if "regex" in f["path"] or "allowlist" in f["path"]]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["tests/conftest.py", "src/frugalml/__init__.py", "conf/base/parameters.yml"])
def test_a_secret_added_to_a_tracked_file_fails_the_item(checkout: Path, target: str, kind: str):
    text, value = _planted(kind, yaml=target.endswith(".yml"))
    _append(checkout, target, text)
    item = check_secrets_in_git(checkout)
    assert item.status == "fail" and target in item.detail and "new secrets" in item.detail
    assert value not in item.detail  # where and what kind, never the value


def test_a_new_tracked_test_file_with_a_secret_fails_the_item(checkout: Path):
    _append(checkout, "tests/test_leak.py", _planted("aws key")[0], track=True)
    item = check_secrets_in_git(checkout)
    assert item.status == "fail" and "tests/test_leak.py" in item.detail


def test_an_inline_allowlist_comment_does_not_hide_a_secret(checkout: Path):
    line = _planted("github token")[0].rstrip("\n") + "  # pragma: " + "allowlist secret\n"
    _append(checkout, "tests/conftest.py", line)
    assert check_secrets_in_git(checkout).status == "fail"


def test_regenerating_the_baseline_does_not_bless_a_secret(checkout: Path):
    _append(checkout, "tests/conftest.py", _planted("password assignment")[0])
    write_secrets_baseline(checkout)  # the finding goes in, unaudited; earlier audit marks are kept
    item = check_secrets_in_git(checkout)
    assert item.status == "fail" and "unaudited" in item.detail and "tests/conftest.py" in item.detail
    baseline = json.loads((checkout / SECRETS_BASELINE).read_text())
    unaudited = [e for e in baseline["results"]["tests/conftest.py"] if e.get("is_secret") is None]
    assert len(unaudited) == 1  # only the new one: the audited false positives kept their marks
    unaudited[0]["is_secret"] = True  # `detect-secrets audit`: "yes, a real secret"
    (checkout / SECRETS_BASELINE).write_text(json.dumps(baseline))
    item = check_secrets_in_git(checkout)
    assert item.status == "fail" and "audited as real secrets" in item.detail
    unaudited[0]["is_secret"] = False  # audited as a false positive: now (and only now) it passes
    (checkout / SECRETS_BASELINE).write_text(json.dumps(baseline))
    assert check_secrets_in_git(checkout).status == "pass"


def test_a_baseline_cannot_switch_the_scan_off(checkout: Path):
    baseline = json.loads((checkout / SECRETS_BASELINE).read_text())
    baseline["plugins_used"] = []
    baseline["filters_used"] = [
        {"path": "detect_secrets.filters.regex.should_exclude_file", "pattern": [".*"]},
        {"path": "detect_secrets.filters.regex.should_exclude_line", "pattern": [".*"]},
    ]
    (checkout / SECRETS_BASELINE).write_text(json.dumps(baseline))
    _append(checkout, "tests/conftest.py", _planted("aws key")[0])
    item = check_secrets_in_git(checkout)
    assert item.status == "fail" and "tests/conftest.py" in item.detail


def test_a_missing_baseline_or_a_folder_that_is_not_a_checkout(checkout: Path, tmp_path: Path):
    (checkout / SECRETS_BASELINE).unlink()
    item = check_secrets_in_git(checkout)  # the project's own false positives are then unaudited findings
    assert item.status == "fail" and f"no {SECRETS_BASELINE}" in item.detail
    plain = tmp_path / "plain"
    plain.mkdir()
    assert check_secrets_in_git(plain).status == "unknown"


# --- secrets in MLflow parameters -----------------------------------------------------------------------------
def test_secret_values_in_mlflow_params_fail_and_digests_do_not(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("frugalml")
    clean = client.create_run(experiment).info.run_id
    client.log_param(clean, "git.commit", secrets.token_hex(20))  # digests are not secrets
    client.log_param(clean, "data.sha256", secrets.token_hex(32))
    client.log_param(clean, "train.privacy.target_epsilon", "1.0")
    assert check_secrets_in_mlflow(client).status == "pass"

    leaked = client.create_run(experiment).info.run_id
    credentials = "alice:" + secrets.token_urlsafe(12)
    client.log_param(leaked, "data.source_uri", f"https://{credentials}@data.example.com/emails.csv")
    client.delete_run(leaked)  # a deleted run still holds the value in the store
    item = check_secrets_in_mlflow(client)
    assert item.status == "fail" and f"{leaked[:8]}:data.source_uri" in item.detail
    assert credentials not in item.detail


# --- DP on every registered version ----------------------------------------------------------------------------
def _registered(client: MlflowClient, experiment: str, model: str, params: dict, spent: float | None = None) -> str:
    run = client.create_run(experiment)
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    if spent is not None:
        for step, value in enumerate((spent / 2, spent)):
            client.log_metric(run.info.run_id, "train.epsilon", value, step=step)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(filter_string=f"name = '{model}'"):
        client.create_registered_model(model)
    return client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version


def test_every_registered_version_is_checked_for_dp(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("frugalml")
    dp = {"train.privacy.enabled": "True", "train.privacy.target_epsilon": "1.0"}
    assert check_registered_versions_dp(client).status == "fail"  # an empty registry: nothing deployable
    assert "no registered model version" in check_registered_versions_dp(client).detail

    good = _registered(client, experiment, "frugalml-text-classifier", dp, spent=0.97)
    item = check_registered_versions_dp(client)
    assert item.status == "pass" and "all 1 registered versions" in item.detail

    # a train-only run (no test.* metrics, so not "the latest evaluated run") at epsilon 60
    eps60 = _registered(client, experiment, "frugalml-text-classifier",
                        {**dp, "train.privacy.target_epsilon": "60"}, spent=59.8)  # fmt: skip
    no_dp = _registered(client, experiment, "frugalml-text-classifier", {"train.privacy.enabled": "False"})
    overspent = _registered(client, experiment, "other-model", dp, spent=3.5)  # the params say 1, it spent 3.5
    unlabelled = _registered(client, experiment, "other-model", {})
    # the latest evaluated run is a good DP run: the old check looked only at this one and passed
    latest = client.create_run(experiment).info.run_id
    for key, value in dp.items():
        client.log_param(latest, key, value)
    client.log_metric(latest, "test.accuracy", 0.98)
    client.set_terminated(latest)

    item = check_registered_versions_dp(client)
    assert item.status == "fail" and item.detail.startswith("4 of 5 registered versions")
    assert f"frugalml-text-classifier v{eps60}: target epsilon 60" in item.detail
    assert f"frugalml-text-classifier v{no_dp}: DP off" in item.detail
    assert f"other-model v{overspent}: spent epsilon 3.5" in item.detail
    assert f"other-model v{unlabelled}: source run" in item.detail
    assert f"frugalml-text-classifier v{good}:" not in item.detail

    for version in (eps60, no_dp):  # delete the offenders: the rest of the registry decides
        client.delete_model_version("frugalml-text-classifier", version)
    client.delete_registered_model("other-model")
    assert check_registered_versions_dp(client).status == "pass"


# --- dependencies -------------------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: nothing listens there


def _unreachable_env() -> dict[str, str]:
    import os

    proxy = f"http://127.0.0.1:{_closed_port()}"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    return {**env, "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy, "http_proxy": proxy}


def test_an_unreachable_advisory_service_is_unknown_never_pass(tmp_path: Path):
    item = check_dependencies(REPO, env=_unreachable_env(), cache_dir=tmp_path / "cache", timeout=5)
    assert item.status == "unknown", item.detail
    assert item.detail.startswith("0 of ") and "could not be reached" in item.detail
    assert exit_status([item]) == 1


def test_packages_pip_audit_skips_are_unknown_and_counted(tmp_path: Path):
    missing = f"frugalml-no-such-distribution-{secrets.token_hex(4)}==0.0.1"  # on no index anywhere
    item = check_dependencies(REPO, requirements=[missing], cache_dir=tmp_path / "cache", timeout=10)
    assert item.status == "unknown", item.detail
    assert item.detail.startswith("0 of 1 packages audited") and "not reported as safe" in item.detail


def test_the_real_environment_is_pass_only_when_every_package_was_audited(tmp_path: Path):
    pins = installed_requirements()
    assert not [p for p in pins if p.startswith("frugalml==")] and any(p.startswith("torch==2.13.0") for p in pins)
    assert not [p for p in pins if "+" in p]  # local labels dropped: torch 2.13.0+cpu is audited as 2.13.0
    item = check_dependencies(REPO, cache_dir=tmp_path / "cache")
    assert item.status in ("pass", "fail", "unknown")
    if item.status == "pass":
        assert f"{len(pins)} of {len(pins)} packages audited, 0 skipped" in item.detail
    if " skipped" in item.detail and ", 0 skipped" not in item.detail:
        assert item.status != "pass"


def test_a_known_vulnerable_package_fails_where_the_advisory_service_answers(tmp_path: Path):
    item = check_dependencies(REPO, requirements=["jinja2==2.10"], cache_dir=tmp_path / "cache", timeout=10)
    if item.status == "unknown":
        pytest.skip(f"pip-audit's advisory service does not answer here: {item.detail}")
    assert item.status == "fail" and "jinja2 2.10" in item.detail


# --- statuses and the exit rule -------------------------------------------------------------------------------------
def test_unknown_and_fail_block_skipped_does_not():
    items = {status: CheckItem("x", status, "") for status in STATUSES}
    assert exit_status([items["pass"], items["skipped"]]) == 0
    assert exit_status([items["pass"], items["unknown"]]) == 1
    assert exit_status([items["pass"], items["fail"]]) == 1
    assert exit_status([]) == 0


def test_the_checklist_runs_every_item_on_a_real_store(tmp_path: Path):
    from frugalml.governance.audit import AuditLog
    from frugalml.governance.rbac import load_governance

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("frugalml")
    _registered(client, experiment, "frugalml-text-classifier", {"train.privacy.enabled": "False"})
    config = load_governance(REPO / "conf", "local")
    items = run_checklist(REPO, config, AuditLog(tmp_path / "audit.jsonl"), uri, scan=False)
    by_name = {item.name: item for item in items}
    assert {item.status for item in items} <= set(STATUSES)
    assert by_name["DP on with epsilon <= 2"].status == "fail" and "DP off" in by_name["DP on with epsilon <= 2"].detail
    assert by_name["dependency vulnerability scan"].status == "skipped"
    assert by_name["no secrets in git"].status == "pass"
    assert exit_status(items) == 1
