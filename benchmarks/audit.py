"""Governance: audit overhead, forgery detection, identity spoofing, governance overrides, registry bypasses.

Runs the default pipeline on a 300-message sample of the real corpus in temporary projects, with the audit
trail on and off (alternating, ``--repeats`` each, medians). Then it tries every attack of the governance issues
against real artefacts: forged, truncated, reordered and deleted audit records (with the local key, and against
a real frugalml governance server on loopback as the witness), identities claimed by environment variables,
governance weakened from ``conf/local``, blank-cheque approvals, and the registry moved around the two-person
rule through MLflow's REST API.

    python -m benchmarks.audit [--repeats 3] [--smoke]

``--smoke`` (one timing per arm, every attack; about two minutes) is what the test suite runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from rich.console import Console
from rich.table import Table

from benchmarks._common import CONF, REPO, emit, log_to_mlflow, machine
from frugalml.errors import FrugalMLError
from frugalml.governance.audit import AuditLog, record_hash

console = Console(stderr=True)
# the small sample's parameters, as a user would write them in conf/local. The default DP recipe trains on its
# ~200 rows because `train.batch_size: auto` caps the Poisson batch at a quarter of the rows (49 here); a fixed
# 256 would be refused ("batch_size 256 is larger than the 197 training rows"), so it is not set here. ~200 rows
# cannot teach a model at epsilon 1, and this benchmark times the audit, not the model: the learnability pre-check
# and the useless-model gate warn instead of stopping
SMALL = {"ingest": {"sample": {"n": 300, "seed": 0}}, "split": {"gold_dev_size": 20},
         "train": {"epochs": 5, "batch_size": "auto", "progress": False, "privacy": {"refuse_signal_to_noise": 0}},
         "evaluate": {"useless_model": "warn"}}  # fmt: skip
MODEL = "frugalml-text-classifier"


def tracking_uri(project: Path) -> str:
    """The throwaway project's tracking URI, as its own conf/ says (``frugalml.config``)."""
    from frugalml.config import tracking_uri as project_tracking_uri

    return project_tracking_uri(project)


def corpus_sources() -> list[dict[str, Any]]:
    """The catalog's corpus sources (``frugalml.config``), local paths made absolute for a project elsewhere."""
    from frugalml.config import corpus_sources as catalog_sources

    return [
        source | {"path": str((REPO / source["path"]).resolve())} if source.get("kind") == "local" else source
        for source in catalog_sources(CONF)
    ]


def make_project(root: Path, *, audit: bool = True, governance: dict | None = None, tracking: str | None = None
                 ) -> Path:  # fmt: skip
    """A throwaway project on the real corpus; ``governance`` is its own policy of record (conf/base)."""
    project = root / f"project-{'audit' if audit else 'plain'}-{time.perf_counter_ns()}"
    shutil.copytree(REPO / "conf" / "base", project / "conf" / "base")
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    for name in (".telemetry",):
        if (REPO / name).exists():
            shutil.copy(REPO / name, project / name)
    (project / "src").mkdir()
    local = project / "conf" / "local"
    local.mkdir(parents=True)
    corpus = {"type": "frugalml.datasets.MailCorpusDataset", "cache_dir": "data/01_raw", "sources": corpus_sources()}
    (local / "catalog.yml").write_text(yaml.safe_dump({"spam_corpus_archive": corpus}))
    (local / "parameters.yml").write_text(yaml.safe_dump(SMALL))
    base = project / "conf" / "base" / "governance.yml"
    config = yaml.safe_load(base.read_text())
    config["audit"]["enabled"] = audit
    for block, values in (governance or {}).items():
        config[block] = {**config.get(block, {}), **values} if isinstance(values, dict) else values
    base.write_text(yaml.safe_dump(config))
    if tracking:
        mlflow_conf = yaml.safe_load((REPO / "conf" / "base" / "mlflow.yml").read_text())
        (local / "mlflow.yml").write_text(yaml.safe_dump(
            {"server": {"mlflow_tracking_uri": tracking, "mlflow_registry_uri": tracking},
             "tracking": mlflow_conf["tracking"]}))  # fmt: skip
    return project


def kedro_run(project: Path, pipeline: str = "__default__") -> float:
    os.chdir(project)
    bootstrap_project(project)
    import mlflow

    try:
        with KedroSession.create(project_path=project) as session:
            started = time.perf_counter()
            session.run(pipeline_names=[pipeline])
            return time.perf_counter() - started
    finally:
        while mlflow.active_run():  # kedro-mlflow may leave its run active in this thread
            mlflow.end_run()


def refused(action: Callable[[], Any], *errors: type[BaseException]) -> bool:
    """True when ``action`` raises one of ``errors`` (a refusal), False when it goes through."""
    caught = errors or (FrugalMLError,)
    try:
        action()
    except caught:
        return True
    return False


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    prev, out = "0" * 64, []
    for record in records:
        record = {**record, "prev": prev}
        record["hash"] = record_hash(record)
        prev = record["hash"]
        out.append(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    path.write_text("".join(out))


def tamper_cases(log: AuditLog) -> dict[str, bool]:
    """Edits of a locally signed trail: detected by the chain and the signed anchors."""
    original = log.path.read_text().splitlines(keepends=True)
    anchors = log.anchors_path.read_text()

    def detected(lines: list[str], anchor_text: str | None = None, extra: list | None = None) -> bool:
        log.path.write_text("".join(lines))
        if anchor_text is not None:
            log.anchors_path.write_text(anchor_text)
        result = log.verify(extra_anchors=extra)
        log.path.write_text("".join(original))
        log.anchors_path.write_text(anchors)
        return not result.ok

    def edit(index: int, **change: Any) -> list[str]:
        lines = list(original)
        lines[index] = json.dumps({**json.loads(lines[index]), **change}) + "\n"
        return lines

    rehashed = list(original)
    record = {**json.loads(rehashed[5]), "actor": "mallory"}
    record["hash"] = record_hash(record)
    rehashed[5] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    swapped = list(original)
    swapped[6], swapped[7] = swapped[7], swapped[6]
    fake_genesis = json.dumps({"kind": "genesis", "seq": 10**9, "hash": "0" * 64}) + "\n"
    cases = {
        "edited": detected(edit(5, actor="mallory")),
        "edited_and_rehashed": detected(rehashed),
        "deleted": detected(original[:4] + original[5:]),
        "inserted": detected(original[:4] + [original[2]] + original[4:]),
        "reordered": detected(swapped),
        "truncated_file": detected(original[:-1] + [original[-1][:-30]]),
        "tail_deleted": detected(original[:-5]),
        "forged_genesis_huge_seq": detected(original[:-5], anchors + fake_genesis),
        "oldest_dropped_under_fake_genesis": detected(
            original[10:],
            anchors
            + json.dumps(
                {"kind": "genesis", "seq": json.loads(original[9])["seq"], "hash": json.loads(original[9])["hash"]}
            )
            + "\n",
        ),  # fmt: skip
        "malformed_anchor_line": detected(original, anchors + "{not json\n"),
        "malformed_mlflow_tag": detected(original, None, [("MLflow run x tag audit.head", "12:" + "f" * 64)]),
    }
    assert log.verify().ok
    return cases


def witness_cases(log: AuditLog, root: Path) -> dict[str, bool]:
    """Attacks by someone who owns every local file, against a trail the governance server witnessed."""
    from frugalml.governance.signing import SigningKey

    mallory = SigningKey.load_or_create(root / "mallory.key", "local")
    results: dict[str, bool] = {}

    def copy(name: str) -> AuditLog:
        folder = root / f"attack-{name}"
        shutil.copytree(log.path.parent, folder)
        return AuditLog(folder / log.path.name, witness=log.witness, signer=mallory)

    rewritten = copy("rewritten")
    records = rewritten.records()
    records[3] = {**records[3], "actor": "mallory"}
    _rewrite(rewritten.path, records)
    last = rewritten.records()[-1]
    rewritten.anchors_path.write_text(
        json.dumps(mallory.sign({"kind": "head", "seq": last["seq"], "hash": last["hash"], "first_seq": 1})) + "\n"
    )
    results["rewritten_and_resigned"] = not rewritten.verify().ok
    results["witness_refuses_to_sign_forgery"] = refused(lambda: rewritten.anchor(actor="mallory"))
    truncated = copy("truncated")
    truncated.path.write_text("".join(truncated.path.read_text().splitlines(keepends=True)[:-10]))
    truncated.anchors_path.unlink()
    results["truncated_and_anchors_deleted"] = not truncated.verify().ok
    deleted = copy("deleted")
    deleted.path.unlink()
    deleted.anchors_path.unlink()
    results["whole_trail_deleted"] = not deleted.verify().ok
    genesis = copy("genesis")
    cut = genesis.records()[9]
    with genesis.anchors_path.open("a") as handle:
        handle.write(json.dumps(mallory.sign({"kind": "genesis", "seq": cut["seq"], "hash": cut["hash"]})) + "\n")
    genesis.path.write_text("".join(genesis.path.read_text().splitlines(keepends=True)[10:]))
    results["oldest_dropped_under_locally_signed_genesis"] = not genesis.verify().ok
    return results


def _env(**values: str | None) -> Callable[[], None]:
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    return restore


@dataclasses.dataclass
class _Served:
    """One governance server on loopback and the project witnessed by it: who may log in, with what."""

    root: Path
    uri: str
    admin: str
    passwords: dict[str, str]
    project: Path
    fingerprint: str

    def login(self, user: str | None, password: str | None = None) -> None:
        import mlflow

        os.environ["MLFLOW_TRACKING_URI"] = self.uri
        mlflow.set_tracking_uri(self.uri)
        if user is None:
            os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
            os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
            return
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password or (self.admin if user == "admin" else self.passwords[user])

    def client(self, user: str) -> Any:
        from frugalml.governance.client import GovernanceClient

        return GovernanceClient(self.uri, user, self.passwords[user])


def served_cases(root: Path, cwd: Path) -> dict[str, dict[str, bool]]:
    """Identity, overrides, approvals and registry against a real governance server on loopback."""
    import mlflow

    from frugalml.commands import main as cli
    from frugalml.governance.client import GovernanceClient
    from frugalml.governance.server import free_port, provision, start_server
    from frugalml.governance.signing import SigningKey

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    witness = SigningKey.load_or_create(root / "auth" / "governance" / "witness.key", "witness")
    project = make_project(root, governance={"identity": {"server": uri, "server_fingerprint": witness.fingerprint}},
                           tracking=uri)  # fmt: skip
    served = _Served(root, uri, "Adm1n-" + secrets.token_urlsafe(16),
                     {user: f"{user}-" + secrets.token_urlsafe(16) for user in ("alice", "bob", "carol")},
                     project, witness.fingerprint)  # fmt: skip
    handle = start_server(port=port, backend_store_uri=f"sqlite:///{root}/server.db",
                          artifacts_destination=str(root / "server-artifacts"), auth_dir=root / "auth",
                          admin_password=served.admin,
                          governance_file=project / "conf" / "base" / "governance.yml")  # fmt: skip
    restore = _env(MLFLOW_TRACKING_URI=None, MLFLOW_TRACKING_USERNAME=None, MLFLOW_TRACKING_PASSWORD=None,
                   LOGNAME=None, USER=None)  # fmt: skip
    try:
        provision(uri, yaml.safe_load((project / "conf" / "base" / "governance.yml").read_text()),
                  admin_password=served.admin, passwords=served.passwords)  # fmt: skip
        served.login("alice")
        os.environ["LOGNAME"] = os.environ["USER"] = "bob"
        kedro_run(project)
        log = AuditLog(project / "data" / "audit" / "audit.jsonl",
                       witness=GovernanceClient(uri, "alice", served.passwords["alice"]))  # fmt: skip
        identity = {"logname_names_nobody": {r["actor"] for r in log.records()} == {"alice"}}
        forgery = dict(witness_cases(log, root / "attacks"))
        identity |= _served_identity_cases(served)
        abuse, forgery["raise_written_into_the_local_trail"] = _approval_cases(served, log)
        override = _served_override_cases(served, log)
        bypass, governed_path = _registry_cases(served)
        served.login("alice")
        os.chdir(project)
        forgery["trail_still_verifies_after_all_attacks"] = cli(["audit", "verify"]) == 0
    finally:
        restore()
        mlflow.set_tracking_uri(None)
        while mlflow.active_run():
            mlflow.end_run()
        os.chdir(cwd)
        handle.stop()
    return {
        "identity": identity,
        "override": override,
        "bypass": bypass,
        "forgery": forgery,
        "abuse": abuse,
        "governed_path": governed_path,
    }


def _served_identity_cases(served: _Served) -> dict[str, bool]:
    """No credentials with the tracking URI unset, a wrong password, roles claimed by name, impostor servers."""
    from frugalml.commands import main as cli
    from frugalml.governance.client import GovernanceClient
    from frugalml.governance.server import free_port, start_server

    identity = {}
    served.login(None)
    os.environ.pop("MLFLOW_TRACKING_URI")
    os.environ["LOGNAME"] = os.environ["USER"] = "admin"
    identity["server_configured_tracking_uri_unset"] = refused(lambda: kedro_run(served.project, "split"))
    served.login("alice", "not-her-password-at-all")
    identity["wrong_password"] = refused(lambda: kedro_run(served.project, "split"))
    served.login("alice")
    os.chdir(served.project)
    identity["approve_as_logname_bob"] = cli(["approve", "0123456789abcdef", "--yes"]) == 2
    root, password = served.root, served.passwords["alice"]
    with start_server(port=free_port(), backend_store_uri=f"sqlite:///{root}/fake.db",
                      artifacts_destination=str(root / "fake-artifacts"), auth_dir=root / "fake-auth",
                      admin_password=served.admin) as fake:  # fmt: skip
        identity["impostor_with_another_key"] = refused(
            lambda: GovernanceClient(fake.uri, "alice", password, fingerprint=served.fingerprint).check_pin()
        )
        identity["unpinned_server"] = refused(lambda: GovernanceClient(fake.uri).check_pin())
    return identity


def _approval_cases(served: _Served, log: AuditLog) -> tuple[dict[str, bool], bool]:
    """Blank cheques, self-approval, changed details, reuse; and a raise forged into the local trail."""
    from frugalml.governance.approvals import details_digest
    from frugalml.governance.ledger import budget_of
    from frugalml.governance.rbac import load_governance

    alice, bob = served.client("alice"), served.client("bob")
    dataset = {"dataset": "rows:0123456789abcdef"}
    abuse = {
        "delete_runs_without_detail": refused(lambda: alice.request("delete_runs", {})),
        "budget_raise_to_infinity": refused(
            lambda: alice.request("raise_privacy_budget", dataset | {"epsilon": "inf"})),
        "budget_raise_above_ceiling": refused(
            lambda: alice.request("raise_privacy_budget", dataset | {"epsilon": "1e9"})),
    }  # fmt: skip
    request = alice.request("disable_dp", dataset)
    abuse["self_approval"] = refused(lambda: alice.approve(request["id"], details_digest(request["details"])))
    abuse["approval_of_other_details"] = refused(lambda: bob.approve(
        request["id"], details_digest({"dataset": "rows:ffffffffffffffff"})))  # fmt: skip
    bob.approve(request["id"], details_digest(request["details"]))
    abuse["approval_for_another_target"] = refused(lambda: alice.consume(
        request["id"], "disable_dp", {"dataset": "rows:ffffffffffffffff"}))  # fmt: skip
    alice.consume(request["id"], "disable_dp", dataset)
    abuse["approval_used_twice"] = refused(lambda: alice.consume(request["id"], "disable_dp", dataset))
    config = load_governance(served.project / "conf")
    key = next(r["data"]["dataset"] for r in log.records() if r["kind"] == "privacy.spend")
    log.append("approval.used", actor="alice", request_id="forged", operation="raise_privacy_budget",
               details={"dataset": key, "epsilon": 1e300}, server_signature="AAAA")  # fmt: skip
    return abuse, budget_of(config, key, alice) == config.privacy.default_budget_epsilon


def _served_override_cases(served: _Served, log: AuditLog) -> dict[str, bool]:
    """Governance switched off or loosened from conf/local: each refused and audited."""
    project, override = served.project, {}
    local = project / "conf" / "local" / "governance.yml"
    base = yaml.safe_load((project / "conf" / "base" / "governance.yml").read_text())
    for name, change in {
        "audit_disabled": {"audit": {**base["audit"], "enabled": False}},
        "require_dp_off": {"privacy": {**base["privacy"], "require_dp": False}},
        "budget_1000": {"privacy": {**base["privacy"], "default_budget_epsilon": 1000}},
        "audit_path_moved": {"audit": {**base["audit"], "path": "data/audit/fresh.jsonl"}},
        "server_removed": {"identity": {**base["identity"], "server": None}},
        "local_users_made_admin": {"identity": {**base["identity"], "local_user_roles": ["admin"]}},
        "viewer_given_training": {"roles": {**base["roles"], "viewer": {"pipelines": ["*"], "operations": []}}},
    }.items():
        local.write_text(yaml.safe_dump(change))
        before = len(log.records())
        override[name] = refused(lambda: kedro_run(project, "split")) and any(
            r["kind"] == "governance.refused" for r in log.records()[before:]
        )
    local.unlink()
    return override


def _registry_cases(served: _Served) -> tuple[dict[str, bool], bool]:
    """The registry: production moves only through the governed path; REST bodies sent by hand are refused."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from frugalml.governance.approvals import details_digest

    client, bypass = MlflowClient(served.uri, registry_uri=served.uri), {}
    for user in ("alice", "admin"):
        served.login(user)
        bypass[f"{user}_sets_production_alias"] = refused(
            lambda: client.set_registered_model_alias(MODEL, "production", "1"), MlflowException
        )
        bypass[f"{user}_transitions_to_production"] = refused(
            lambda: client.transition_model_version_stage(MODEL, "1", "Production"), MlflowException
        )
    served.login("admin")
    run_id = client.search_runs([client.get_experiment_by_name("frugalml").experiment_id])[0].info.run_id
    bypass["admin_deletes_a_run_over_rest"] = refused(lambda: client.delete_run(run_id), MlflowException)
    served.login("alice")
    alice = served.client("alice")
    promotion = alice.request("promote_production", {"model": MODEL, "version": "1"})
    bypass["promote_without_approval"] = refused(lambda: alice.promote(MODEL, "1", promotion["id"]))
    served.client("bob").approve(promotion["id"], details_digest(promotion["details"]))
    alice.promote(MODEL, "1", promotion["id"])  # the governed path works
    governed_path = client.get_registered_model(MODEL).aliases.get("production") == "1"
    served.login("admin")
    bypass["admin_deletes_the_production_model"] = refused(lambda: client.delete_registered_model(MODEL),
                                                           MlflowException)  # fmt: skip
    for name, call in _raw_calls(run_id).items():
        bypass[name] = _raw(served.uri, ("admin", served.admin), call) == 403
    bypass["production_alias_unchanged"] = client.get_registered_model(MODEL).aliases.get("production") == "1"
    return bypass, governed_path


def _raw_calls(run_id: str) -> dict[str, tuple[str, str, bytes, str | None]]:
    """REST calls an MLflow admin might send by hand to move or delete what only governance may."""
    alias = json.dumps({"name": MODEL, "alias": "production"}).encode()
    return {
        "alias_delete_as_text_plain": ("DELETE", "/api/2.0/mlflow/registered-models/alias", alias, "text/plain"),
        "alias_delete_without_content_type": ("DELETE", "/api/2.0/mlflow/registered-models/alias", alias, None),
        "alias_set_as_double_encoded_json": ("POST", "/api/2.0/mlflow/registered-models/alias", json.dumps(
            json.dumps({"name": MODEL, "alias": "production", "version": "1"})).encode(), "application/json"),
        "version_delete_as_01": ("DELETE", "/api/2.0/mlflow/model-versions/delete",
                                 json.dumps({"name": MODEL, "version": "01"}).encode(), "text/plain"),
        "experiment_delete": ("POST", "/api/2.0/mlflow/experiments/delete",
                              json.dumps({"experiment_id": "1"}).encode(), "application/json"),
        "anchor_tag_garbled": ("POST", "/api/2.0/mlflow/runs/set-tag", json.dumps(
            {"run_id": run_id, "key": "audit.head", "value": "9:" + "f" * 64}).encode(), "application/json"),
        "anchor_tag_deleted": ("POST", "/api/2.0/mlflow/runs/delete-tag",
                               json.dumps({"run_id": run_id, "key": "audit.head"}).encode(), "application/json"),
    }  # fmt: skip


def _raw(uri: str, login: tuple[str, str], call: tuple[str, str, bytes, str | None]) -> int:
    """One REST call as sent by hand (any Content-Type), the HTTP status it got."""
    import base64
    import urllib.error
    import urllib.request

    method, path, body, content_type = call
    request = urllib.request.Request(uri + path, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    request.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def local_cases(root: Path, cwd: Path) -> dict[str, dict[str, bool]]:
    """Without a server: names from the environment give nothing, conf/local cannot weaken governance."""
    from frugalml.commands import main as cli

    restore = _env(LOGNAME="admin", USER="admin", MLFLOW_TRACKING_URI=None)
    identity, override = {}, {}
    try:
        project = make_project(root, governance={"identity": {"local_user_roles": []}})
        identity["unlisted_local_user_runs_nothing"] = refused(lambda: kedro_run(project, "train"))
        project = make_project(root)
        os.chdir(project)
        identity["logname_admin_purges"] = cli(["audit", "purge", "--before", "2000-01-01"]) == 2
        identity["logname_admin_approves"] = cli(["approve", "0123456789abcdef", "--yes"]) == 2
        (project / "conf" / "local" / "governance.yml").write_text(yaml.safe_dump({"audit": {"enabled": False}}))
        override["local_audit_disabled"] = refused(lambda: kedro_run(project, "train"))
    finally:
        restore()
        os.chdir(cwd)
    return {"identity": identity, "override": override}


def timed_runs(root: Path, repeats: int, *, warm_up: bool) -> tuple[dict[bool, list[float]], dict[bool, Path]]:
    """The default pipeline with the audit trail off and on, alternating; seconds per run and the last projects."""
    if warm_up:
        kedro_run(make_project(root, audit=True))  # warm-up: imports, caches
    timings: dict[bool, list[float]] = {True: [], False: []}
    projects: dict[bool, Path] = {}
    for _ in range(repeats):
        for audit in (False, True):
            projects[audit] = make_project(root, audit=audit)
            timings[audit].append(kedro_run(projects[audit]))
    return timings, projects


def _ratio(cases: dict[str, bool]) -> str:
    return f"{sum(cases.values())}/{len(cases)}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print the table and the JSON line.

    Args:
        argv: Command-line arguments.

    Returns:
        The figures.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one timing per arm, every attack (the test suite)")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    repeats = 1 if args.smoke else args.repeats
    started = time.perf_counter()
    cwd = Path.cwd()
    root = Path(tempfile.mkdtemp(prefix="frugalml-audit-bench-"))
    try:
        timings, projects = timed_runs(root, repeats, warm_up=not args.smoke)
        os.chdir(cwd)
        from frugalml.governance.context import local_key

        log = AuditLog(projects[True] / "data" / "audit" / "audit.jsonl",
                       signer=local_key(projects[True], create=False))  # fmt: skip
        records = log.records()
        run_id = next(r["run_id"] for r in records if r["kind"] == "pipeline.start")
        events_per_run = sum(1 for r in records if r["run_id"] == run_id)
        tamper = tamper_cases(log)
        from frugalml.governance.lineage import lineage_report

        report_started = time.perf_counter()
        lineage_report(log, tracking_uri(projects[True]), model=MODEL, version="1",
                       out_dir=root / "lineage")  # fmt: skip
        report_seconds = time.perf_counter() - report_started
        kinds = sorted({r["kind"] for r in log.records()})
        local = local_cases(root, cwd)
        served = served_cases(root, cwd)
    finally:
        import mlflow

        while mlflow.active_run():
            mlflow.end_run()
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)
    forgery = {**{f"local: {k}": v for k, v in tamper.items()}, **{f"witness: {k}": v for k, v in
                                                                     served["forgery"].items()}}  # fmt: skip
    identity = {**local["identity"], **served["identity"]}
    override = {**local["override"], **served["override"]}
    with_audit, without = statistics.median(timings[True]), statistics.median(timings[False])
    table = Table(title="governance benchmark")
    table.add_column("case")
    table.add_column("result")
    for group, cases in (("forgery", forgery), ("identity", identity), ("override", override),
                         ("registry", served["bypass"]), ("approval", served["abuse"])):  # fmt: skip
        for name, ok in cases.items():
            table.add_row(f"{group}: {name}", "refused/detected" if ok else "MISSED")
    table.add_row("pipeline s, audit on / off (median)", f"{with_audit:.2f} / {without:.2f}")
    console.print(table)
    figures = {
        "event_kinds": len(kinds),
        "event_kind_names": kinds,
        "events_per_run": events_per_run,
        "tamper_detected": _ratio(tamper),
        "forgery_detected": _ratio(forgery),
        "identity_spoof_refused": _ratio(identity),
        "governance_override_refused": _ratio(override),
        "registry_bypass_refused": _ratio(served["bypass"]),
        "abuse_refused": _ratio(served["abuse"]),
        "governed_promotion_works": served["governed_path"],
        "missed": sorted(
            f"{group}: {name}"
            for group, cases in (
                ("forgery", forgery),
                ("identity", identity),
                ("override", override),
                ("registry", served["bypass"]),
                ("approval", served["abuse"]),
            )
            for name, ok in cases.items()
            if not ok
        ),  # fmt: skip
        "report_seconds": round(report_seconds, 3),
        "pipeline_seconds_audit": round(with_audit, 3),
        "pipeline_seconds_no_audit": round(without, 3),
        "overhead_ratio": round(with_audit / without, 3),
        "smoke": args.smoke,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not (args.no_mlflow or args.smoke):
        log_to_mlflow("audit", figures)
    emit(figures)
    return figures


if __name__ == "__main__":
    main()
