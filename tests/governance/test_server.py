"""A real MLflow ``basic-auth`` server on a free loopback port: passwords, users, permissions, a kedro run.

One server serves the whole module (starting one takes ~10 s); every test talks to it over HTTP, no mocks.
Passwords are generated per test session, so none is a fixed secret in git.
"""

from __future__ import annotations

import base64
import configparser
import os
import secrets
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import mlflow
import mlflow.tracking.fluent
import pandas as pd
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from frugalml.errors import AccessDenied, GovernanceError, ParameterError
from frugalml.governance.rbac import load_governance_file
from frugalml.governance.server import (
    ADMIN_PASSWORD_ENV,
    admin_password_from_env,
    authenticated_user,
    check_loopback,
    check_password,
    free_port,
    main,
    passwords_from_env,
    provision,
    start_server,
    write_auth_config,
)
from frugalml.governance.server.cli import registered_model_names
from tests.helpers import REPO, SMALL, make_project

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "admin-" + secrets.token_urlsafe(12)
PASSWORDS = {user: f"{user}-" + secrets.token_urlsafe(12) for user in ("alice", "bob", "carol")}
GOVERNANCE = yaml.safe_load((REPO / "conf" / "base" / "governance.yml").read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One authenticated MLflow server for the module, in a temp folder; always stopped at the end."""
    root = tmp_path_factory.mktemp("mlflow_server")
    handle = start_server(
        port=free_port(),
        backend_store_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifacts_destination=str(root / "artifacts"),
        auth_dir=root / "auth",
        admin_password=ADMIN_PASSWORD,
        governance_file=REPO / "conf" / "base" / "governance.yml",  # the governance of record it enforces
    )
    try:
        yield handle
    finally:
        handle.stop()
        assert not handle.is_running()


@pytest.fixture(scope="module")
def provisioned(server) -> dict:
    """The governance users created on the server (first provisioning)."""
    return provision(server.uri, GOVERNANCE, admin_password=ADMIN_PASSWORD, passwords=PASSWORDS)


@pytest.fixture
def login(server, monkeypatch: pytest.MonkeyPatch):
    """``login(user)``: point MLflow at the server as that user; undo it (tracking URI, experiment) after."""
    experiment_env = os.environ.get("MLFLOW_EXPERIMENT_ID")
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)

    def as_user(user: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS[user])
        mlflow.set_tracking_uri(server.uri)

    yield as_user
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # back to $MLFLOW_TRACKING_URI, which monkeypatch then restores
    if experiment_env is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_env


def _get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, Message]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers  # case-insensitive .get
    except urllib.error.HTTPError as error:
        return error.code, error.headers


# --- passwords and hosts are refused before anything starts -------------------------------------------------
@pytest.mark.parametrize("password", ["", "password", "password1234", "admin", "PASSWORD1234", "changeme", "short-pw"])
def test_empty_default_or_short_admin_password_is_refused(tmp_path: Path, password: str):
    with pytest.raises(GovernanceError, match="admin"):
        write_auth_config(tmp_path / "auth", admin_password=password)
    with pytest.raises(GovernanceError, match="admin"):
        start_server(
            port=free_port(), backend_store_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifacts_destination=str(tmp_path / "artifacts"), auth_dir=tmp_path / "auth", admin_password=password,
        )  # fmt: skip
    assert not (tmp_path / "auth").exists()  # nothing written, no server started


#: Passwords an attacker tries first (user, password): repeats, sequences, keyboard walks, common passwords
#: with the usual decorations, and the user's or the server's name plus digits. All are 12+ characters, so
#: only the strength policy (zxcvbn) refuses them.
WEAK_PASSWORDS = [
    ("admin", "aaaaaaaaaaaa"),
    ("admin", "abcabcabcabc"),
    ("admin", "abcdefghijkl"),
    ("admin", "123456789012"),
    ("admin", "qwertyuiop[]"),
    ("admin", "1qaz2wsx3edc"),
    ("admin", "asdfghjkl;zx"),
    ("admin", "zxcvbnm,./zx"),
    ("admin", "1q2w3e4r5t6y"),
    ("admin", "qazwsxedcrfv"),
    ("admin", "password1234"),
    ("admin", "Password1234"),
    ("admin", "P@ssw0rd2024!"),
    ("admin", "iloveyou2024"),
    ("admin", "trustno1trustno1"),
    ("admin", "admin1234567"),
    ("admin", "mlflow123456"),
    ("admin", "frugalml2024"),
    ("alice", "alice1234567"),
    ("bob", "bob123456789"),
    ("carol", "carolcarol12"),
]


@pytest.mark.parametrize(("user", "password"), WEAK_PASSWORDS)
def test_weak_passwords_are_refused_saying_why_but_never_what(user: str, password: str):
    why = rf"'{user}'.*(too weak: zxcvbn score [0-2] of 4|known default)"
    with pytest.raises(GovernanceError, match=why) as refused:
        check_password(user, password, source=f"FRUGALML_PASSWORD_{user.upper()}")
    message = str(refused.value)
    assert password not in message and password.lower() not in message.lower()
    if "zxcvbn" in message:  # zxcvbn's own feedback says why
        assert any(word in message for word in ("Repeats", "Sequences", "rows of keys", "common", "guess", "Add"))


@pytest.mark.parametrize("password", [p for user, p in WEAK_PASSWORDS if user == "admin"][:6])
def test_a_weak_admin_password_starts_nothing(tmp_path: Path, password: str):
    with pytest.raises(GovernanceError, match="too weak|known default"):
        start_server(
            port=free_port(), backend_store_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifacts_destination=str(tmp_path / "artifacts"), auth_dir=tmp_path / "auth", admin_password=password,
        )  # fmt: skip
    assert not (tmp_path / "auth").exists()


def test_strong_passwords_are_accepted():
    for password in (ADMIN_PASSWORD, *PASSWORDS.values(), secrets.token_urlsafe(12), "violet-anchor-mosaic-tundra"):
        assert check_password("alice", password) == password


def test_admin_password_comes_from_env_and_is_never_defaulted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ADMIN_PASSWORD_ENV, raising=False)
    with pytest.raises(GovernanceError, match=rf"{ADMIN_PASSWORD_ENV}.*conf/local"):
        admin_password_from_env()
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, "")
    with pytest.raises(GovernanceError, match=ADMIN_PASSWORD_ENV):
        admin_password_from_env()
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, "password1234")
    with pytest.raises(GovernanceError, match="default") as refused:
        admin_password_from_env()
    assert "password1234" not in str(refused.value)  # a password never appears in an error
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, ADMIN_PASSWORD)
    assert admin_password_from_env() == ADMIN_PASSWORD


def test_passwords_from_env_uses_upper_case_user_variables(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FRUGALML_PASSWORD_ALICE", PASSWORDS["alice"])
    monkeypatch.setenv("FRUGALML_PASSWORD_DATA_BOT", "bot-password-123")
    monkeypatch.setenv("FRUGALML_PASSWORD_BOB", "")
    monkeypatch.delenv("FRUGALML_PASSWORD_CAROL", raising=False)
    found = passwords_from_env(["alice", "data-bot", "bob", "carol"])
    assert found == {"alice": PASSWORDS["alice"], "data-bot": "bot-password-123"}


def test_auth_config_is_what_mlflow_reads(tmp_path: Path):
    password = "per%cent-" + secrets.token_urlsafe(8)  # '%' must survive MLflow's configparser interpolation
    path = write_auth_config(tmp_path / "auth", admin_password=password)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = configparser.ConfigParser()  # exactly how mlflow.server.auth.config.read_auth_config reads it
    config.read(path)
    section = config["mlflow"]
    assert section["admin_password"] == password and section["admin_username"] == "admin"
    assert section["default_permission"] == "NO_PERMISSIONS"
    assert section["database_uri"] == f"sqlite:///{(tmp_path / 'auth' / 'basic_auth.db').resolve()}"
    assert section["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"
    with pytest.raises(GovernanceError, match="default_permission"):
        write_auth_config(tmp_path / "other", admin_password=password, default_permission="ALL")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "10.0.0.1", "example.com", "::", "mlflow.local"])
def test_non_loopback_host_is_refused(tmp_path: Path, host: str):
    with pytest.raises(GovernanceError, match="loopback"):
        start_server(
            host=host, port=free_port(), backend_store_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifacts_destination=str(tmp_path / "artifacts"), auth_dir=tmp_path / "auth",
            admin_password=ADMIN_PASSWORD,
        )  # fmt: skip
    assert not (tmp_path / "auth").exists()


def test_cli_start_refuses_a_missing_password_and_a_public_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ADMIN_PASSWORD_ENV, raising=False)
    assert main(["--project", str(tmp_path), "start", "--port", str(free_port())]) == 2
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, ADMIN_PASSWORD)
    assert main(["--project", str(tmp_path), "start", "--host", "0.0.0.0", "--port", str(free_port())]) == 2
    assert list(tmp_path.iterdir()) == []  # no mlruns/auth, no server


def test_loopback_hosts_are_accepted():
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert check_loopback(host) == host


# --- the running server ---------------------------------------------------------------------------------------
def test_provisioning_creates_users_with_role_permissions_and_is_idempotent(server, provisioned):
    assert sorted(provisioned["created"]) == ["alice", "bob", "carol"]
    assert provisioned["skipped"] == [] and provisioned["updated"] == []
    assert provisioned["permissions"] == {"alice": "EDIT", "bob": "READ", "carol": "READ"}
    for user, password in PASSWORDS.items():
        assert authenticated_user(server.uri, user, password) == user
    with pytest.MonkeyPatch.context() as patch:  # the registry model gets the same permissions
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        from mlflow.server import get_app_client

        auth = get_app_client("basic-auth", tracking_uri=server.uri)
        granted = {u: auth.get_user_permission(u, "registered_model", "frugalml-text-classifier").permission
                   for u in PASSWORDS}  # fmt: skip
    assert granted == {"alice": "EDIT", "bob": "READ", "carol": "READ"}

    again = provision(server.uri, GOVERNANCE, admin_password=ADMIN_PASSWORD, passwords=PASSWORDS)
    assert again["created"] == [] and again["updated"] == []
    assert sorted(again["unchanged"]) == ["alice", "bob", "carol"]
    assert again["experiment_id"] == provisioned["experiment_id"]

    # a user whose password is not given is reported, not invented
    partial = provision(server.uri, {"users": {"dave": ["viewer"]}}, admin_password=ADMIN_PASSWORD, passwords={})
    assert partial["skipped"] == ["dave"] and partial["created"] == []


def test_cli_provisions_from_governance_yml_and_env(server, provisioned, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, ADMIN_PASSWORD)
    for user, password in PASSWORDS.items():
        monkeypatch.setenv(f"FRUGALML_PASSWORD_{user.upper()}", password)
    assert main(["--project", str(REPO), "provision", "--uri", server.uri]) == 0
    # every model the catalog registers (trained, compressed, distilled) gets each user's role permission, so an
    # approver may act on a distilled model as on the trained one
    models = registered_model_names(REPO)
    assert {"frugalml-text-classifier", "frugalml-compressed-classifier", "frugalml-distilled-classifier"} <= set(
        models
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        from mlflow.server import get_app_client

        auth = get_app_client("basic-auth", tracking_uri=server.uri)
        granted = {(u, m): auth.get_user_permission(u, "registered_model", m).permission
                   for u in PASSWORDS for m in models}  # fmt: skip
    assert granted == {(u, m): {"alice": "EDIT", "bob": "READ", "carol": "READ"}[u] for u in PASSWORDS for m in models}
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, "wrong-" + ADMIN_PASSWORD)
    assert main(["--project", str(REPO), "provision", "--uri", server.uri]) == 2


def test_provisioning_resets_a_changed_password_and_role(server, provisioned):
    new_password = "bob-new-" + secrets.token_urlsafe(10)
    promoted = {"users": {"bob": ["data-scientist"]}}
    changed = provision(server.uri, promoted, admin_password=ADMIN_PASSWORD, passwords={"bob": new_password})
    assert changed["updated"] == ["bob"] and changed["permissions"] == {"bob": "EDIT"}
    assert authenticated_user(server.uri, "bob", new_password) == "bob"
    with pytest.raises(AccessDenied):
        authenticated_user(server.uri, "bob", PASSWORDS["bob"])
    back = provision(server.uri, GOVERNANCE, admin_password=ADMIN_PASSWORD, passwords=PASSWORDS)
    assert back["updated"] == ["bob"] and back["permissions"]["bob"] == "READ"
    assert authenticated_user(server.uri, "bob", PASSWORDS["bob"]) == "bob"


def _server_permissions(server, user: str) -> set[str]:
    """What the server itself says ``user`` may do on the experiment and the registry model."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        from mlflow.server import get_app_client

        auth = get_app_client("basic-auth", tracking_uri=server.uri)
        experiment = MlflowClient(server.uri).get_experiment_by_name("frugalml").experiment_id
        return {auth.get_user_permission(user, "experiment", experiment).permission,
                auth.get_user_permission(user, "registered_model", "frugalml-text-classifier").permission}  # fmt: skip


def test_provisioning_applies_the_permission_map_of_governance_yml(server, provisioned):
    record = load_governance_file(REPO / "conf" / "base" / "governance.yml")  # what the CLI provisions from
    assert record.mlflow_permissions == GOVERNANCE["mlflow_permissions"]
    mapped = GOVERNANCE["mlflow_permissions"]
    assert provisioned["permissions"] == {user: mapped[roles[0]] for user, roles in GOVERNANCE["users"].items()
                                          if user != "admin"}  # fmt: skip
    assert _server_permissions(server, "carol") == {GOVERNANCE["mlflow_permissions"]["viewer"]}

    raised = {**GOVERNANCE, "mlflow_permissions": {**GOVERNANCE["mlflow_permissions"], "viewer": "EDIT"}}
    changed = provision(server.uri, raised, admin_password=ADMIN_PASSWORD, passwords=PASSWORDS)
    assert changed["updated"] == ["carol"] and changed["permissions"]["carol"] == "EDIT"
    assert _server_permissions(server, "carol") == {"EDIT"}
    unmapped = {**GOVERNANCE, "mlflow_permissions": {"data-scientist": "EDIT", "approver": "READ"}}
    untouched = provision(server.uri, unmapped, admin_password=ADMIN_PASSWORD, passwords=PASSWORDS)
    assert "carol" not in untouched["permissions"] and _server_permissions(server, "carol") == {"EDIT"}

    back = provision(server.uri, record, admin_password=ADMIN_PASSWORD, passwords=PASSWORDS)  # a validated config
    assert back["updated"] == ["carol"] and back["permissions"] == provisioned["permissions"]
    assert _server_permissions(server, "carol") == {"READ"}
    with pytest.raises(ParameterError, match="mlflow_permissions.viewer"):  # refused before anything changes
        provision(server.uri, {**GOVERNANCE, "mlflow_permissions": {"viewer": "WRITE"}},
                  admin_password=ADMIN_PASSWORD, passwords=PASSWORDS)  # fmt: skip
    assert _server_permissions(server, "carol") == {"READ"}


def test_cli_refuses_an_invalid_or_missing_governance_yml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, ADMIN_PASSWORD)
    unused = f"http://127.0.0.1:{free_port()}"  # nothing is contacted: the config is refused first
    assert main(["--project", str(tmp_path), "provision", "--uri", unused]) == 2
    (tmp_path / "conf" / "base").mkdir(parents=True)
    governance = tmp_path / "conf" / "base" / "governance.yml"
    governance.write_text(yaml.safe_dump({**GOVERNANCE, "mlflow_permissions": {"viewer": "WRITE"}}))
    assert main(["--project", str(tmp_path), "provision", "--uri", unused]) == 2
    governance.write_text("users: [\n")
    assert main(["--project", str(tmp_path), "provision", "--uri", unused]) == 2


def test_the_command_line_runs_as_a_module():
    shown = subprocess.run([sys.executable, "-m", "frugalml.governance.server", "--help"], capture_output=True,
                           text=True, timeout=120, check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "start" in shown.stdout and "provision" in shown.stdout and "--project" in shown.stdout


def test_provisioning_refuses_a_weak_user_password_before_changing_anything(server, provisioned):
    with pytest.raises(GovernanceError, match="'alice'.*too weak") as refused:
        provision(server.uri, GOVERNANCE, admin_password=ADMIN_PASSWORD,
                  passwords={**PASSWORDS, "alice": "alice1234567"})  # fmt: skip
    assert "alice1234567" not in str(refused.value)
    assert authenticated_user(server.uri, "alice", PASSWORDS["alice"]) == "alice"  # her password is unchanged
    with pytest.raises(AccessDenied):
        authenticated_user(server.uri, "alice", "alice1234567")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private_and_password_free(auth: Path, *passwords: str) -> None:
    assert _mode(auth) == 0o700
    for name in ("basic_auth.db", "basic_auth.ini", "server.log"):
        assert _mode(auth / name) == 0o600, name
    config = configparser.ConfigParser()
    config.read(auth / "basic_auth.ini")
    assert "admin_password" not in config["mlflow"] and config["mlflow"]["admin_username"] == "admin"
    for path in auth.rglob("*"):  # the ini, the auth database (hashes only), its journal, the log
        if path.is_file():
            data = path.read_bytes()
            assert not [p for p in passwords if p.encode() in data], f"a password in plain text in {path.name}"


def test_the_running_servers_auth_files_are_private_and_hold_no_password(server, provisioned):
    _assert_private_and_password_free(server.auth_config.parent, ADMIN_PASSWORD, *PASSWORDS.values())
    assert authenticated_user(server.uri, "admin", ADMIN_PASSWORD) == "admin"  # bootstrapped before the scrub


def test_stop_restart_and_a_failed_start_leave_no_password_on_disk(tmp_path: Path):
    auth = tmp_path / "auth"
    auth.mkdir(mode=0o755)
    auth.chmod(0o755)
    for name in ("server.log", "basic_auth.ini"):  # what an older start left, world-readable
        (auth / name).write_text("")
        (auth / name).chmod(0o644)
    stores = {"backend_store_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
              "artifacts_destination": str(tmp_path / "artifacts"), "auth_dir": auth}  # fmt: skip
    first = start_server(port=free_port(), admin_password=ADMIN_PASSWORD, **stores)
    try:
        _assert_private_and_password_free(auth, ADMIN_PASSWORD)
    finally:
        first.stop()
    _assert_private_and_password_free(auth, ADMIN_PASSWORD)

    (auth / "basic_auth.db").chmod(0o644)  # as MLflow created it before (umask 022)
    second = start_server(port=free_port(), admin_password=ADMIN_PASSWORD, **stores)
    try:  # the admin exists: the restarted server needs no password on disk, and the old one still works
        _assert_private_and_password_free(auth, ADMIN_PASSWORD)
        assert authenticated_user(second.uri, "admin", ADMIN_PASSWORD) == "admin"
    finally:
        second.stop()

    with pytest.raises(GovernanceError, match="did not answer"):  # gives up before the server answers
        start_server(port=free_port(), admin_password=ADMIN_PASSWORD, wait_seconds=0.05, **stores)
    _assert_private_and_password_free(auth, ADMIN_PASSWORD)


def test_provisioning_with_a_wrong_admin_password_is_refused(server, provisioned):
    with pytest.raises(AccessDenied, match="'admin'") as refused:
        provision(server.uri, GOVERNANCE, admin_password="not-the-admin-password", passwords=PASSWORDS)
    assert "not-the-admin-password" not in str(refused.value)


def test_authenticated_user_checks_the_password_with_the_server(server, provisioned):
    assert authenticated_user(server.uri, "alice", PASSWORDS["alice"]) == "alice"
    wrong = "wrong-" + secrets.token_urlsafe(8)
    with pytest.raises(AccessDenied, match="'alice'") as refused:
        authenticated_user(server.uri, "alice", wrong)
    assert wrong not in str(refused.value) and PASSWORDS["alice"] not in str(refused.value)
    with pytest.raises(AccessDenied, match="unauthenticated"):
        authenticated_user(server.uri, None, None)
    with pytest.raises(AccessDenied, match="'alice' has no password"):
        authenticated_user(server.uri, "alice", "")
    with pytest.raises(AccessDenied, match="'mallory'"):
        authenticated_user(server.uri, "mallory", PASSWORDS["alice"])


def test_unauthenticated_http_request_gets_401(server):
    assert _get(f"{server.uri}/health")[0] == 200  # the only open door
    status, headers = _get(f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1")
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Basic")
    assert _get(f"{server.uri}/api/2.0/mlflow/users/current", auth=("alice", "wrong-password-x"))[0] == 401


def test_alice_logs_a_run_and_carol_the_viewer_may_only_read(server, provisioned, login, tmp_path: Path):
    login("alice")
    mlflow.set_experiment("frugalml")
    note = tmp_path / "note.txt"
    note.write_text("logged through the server's artifact proxy")
    with mlflow.start_run(run_name="alice-run") as run:
        mlflow.log_param("who", "alice")
        mlflow.log_metric("score", 0.5)
        mlflow.log_artifact(str(note))
    finished = MlflowClient(server.uri).get_run(run.info.run_id)
    assert finished.info.status == "FINISHED" and finished.data.metrics["score"] == 0.5
    assert [a.path for a in MlflowClient(server.uri).list_artifacts(run.info.run_id)] == ["note.txt"]

    login("carol")
    experiment = mlflow.set_experiment("frugalml")  # READ: she can see the experiment and its runs
    assert MlflowClient(server.uri).get_run(run.info.run_id).data.params["who"] == "alice"
    with pytest.raises(MlflowException, match="Permission denied") as refused:
        mlflow.start_run(experiment_id=experiment.experiment_id)
    assert refused.value.get_http_status_code() == 403
    assert mlflow.active_run() is None
    with pytest.raises(MlflowException, match="Permission denied"):
        MlflowClient(server.uri).log_metric(run.info.run_id, "score", 1.0)  # nor write into alice's run


def test_kedro_split_run_as_alice_is_tracked_by_the_server(
    server, provisioned, login, tmp_path: Path, corpus_path: Path, *, sample_emails: pd.DataFrame, monkeypatch
):
    validated = tmp_path / "emails_validated.parquet"
    sample_emails.to_parquet(validated)
    catalog = {"emails_validated": {"type": "pandas.ParquetDataset", "filepath": str(validated)}}
    project = make_project(tmp_path, corpus_path, SMALL, catalog)
    tracking = yaml.safe_load((REPO / "conf" / "base" / "mlflow.yml").read_text())["tracking"]
    tracking["experiment"]["name"] = "frugalml"  # conf/local replaces whole top-level blocks: keep base's rest
    local_mlflow = {"server": {"mlflow_tracking_uri": server.uri}, "tracking": tracking}
    (project / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump(local_mlflow))
    login("alice")

    monkeypatch.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        session.run(pipeline_names=["split"])

    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("frugalml")
    assert experiment.experiment_id == provisioned["experiment_id"]
    runs = client.search_runs([experiment.experiment_id], "tags.`frugalml.pipeline` = 'split'")
    assert len(runs) == 1
    run = client.get_run(runs[0].info.run_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    sizes = [metrics[f"split.{name}_rows"] for name in ("train", "dev", "dev_gold", "test", "unlabelled")]
    assert sum(sizes) == len(sample_emails) and metrics["split.test_rows"] > 0
    assert 0.0 < metrics["split.train_positive_rate"] < 1.0
    assert (project / "data" / "03_primary" / "train_labelled.parquet").is_file()
    assert not (project / "mlruns" / "mlflow.db").exists()  # nothing went to a local store
    # not named in identity.server, the server is no witness here: it refuses a locally signed head as a run tag
    assert "audit.head" not in run.data.tags
    assert (project / "data" / "audit" / "audit.anchors.jsonl").is_file()
