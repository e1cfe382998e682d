"""``frugalml`` commands that are not pipelines: audit verify/report/purge, request/approve, check.

Every command checks the acting user's role (``governance.yml``) and is itself audited.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from frugalml.errors import AccessDenied, ApprovalError, FrugalMLError, GovernanceError
from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import GovernanceConfig, Identity, check_operation, current_identity, load_governance

console = Console()


def project_root() -> Path:
    """The Kedro project around the current directory.

    Returns:
        Its root (the current directory when none is found).
    """
    from kedro.utils import find_kedro_project

    return Path(find_kedro_project(Path.cwd()) or Path.cwd())


def default_tracking_uri(root: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else the project's SQLite store.

    Args:
        root: Project root.

    Returns:
        A tracking URI.
    """
    import os

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def _context(env: str) -> tuple[Path, GovernanceConfig, AuditLog]:
    root = project_root()
    config = load_governance(root / "conf", env)
    path = Path(config.audit.path)
    log = AuditLog(path if path.is_absolute() else root / path, retention_days=config.audit.retention_days)
    return root, config, log


def _open(env: str, operation: str) -> tuple[Path, GovernanceConfig, AuditLog, Identity]:
    """Project, governance config, audit log and the acting user, checked for ``operation`` (audited)."""
    root, config, log = _context(env)
    identity = current_identity()
    _authorise(config, log, identity, operation)
    return root, config, log, identity


def _authorise(config: GovernanceConfig, log: AuditLog, identity: Identity, operation: str) -> None:
    try:
        check_operation(config, identity, operation)
    except AccessDenied as error:
        log.append("rbac.refused", actor=identity.user, operation=operation, reason=str(error))
        raise


def _mlflow_anchors(uri: str) -> list[tuple[int, str]]:
    """``audit.head`` tags of every run in the tracking store (best effort)."""
    from mlflow.tracking import MlflowClient

    anchors = []
    try:
        client = MlflowClient(tracking_uri=uri)
        for experiment in client.search_experiments():
            for run in client.search_runs([experiment.experiment_id], max_results=5000):
                head = run.data.tags.get("audit.head")
                if head and ":" in head:
                    seq, digest = head.split(":", 1)
                    anchors.append((int(seq), digest))
    except Exception:  # noqa: BLE001 - the store may be absent; the anchors file still counts
        return []
    return anchors


def cmd_verify(args: argparse.Namespace) -> int:
    """``frugalml audit verify``."""
    root, config, log, identity = _open(args.env, "audit.verify")
    result = log.verify(extra_anchors=_mlflow_anchors(default_tracking_uri(root)) if args.mlflow else None)
    console.print(str(result))
    if result.ok:
        log.append("audit.verify", actor=identity.user, ok=True, records=result.records)
        return 0
    return 1


def cmd_report(args: argparse.Namespace) -> int:
    """``frugalml audit report``."""
    from frugalml.governance.lineage import lineage_report

    root, config, log, identity = _open(args.env, "audit.report")
    paths = lineage_report(
        log,
        default_tracking_uri(root),
        run_id=args.run,
        model=args.model,
        version=args.version,
        out_dir=Path(args.out) if args.out else root / "data" / "08_reporting" / "lineage",
    )
    for path in paths:
        console.print(f"wrote {path}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """``frugalml audit purge --before DATE``."""
    _, config, log, identity = _open(args.env, "audit.purge")
    before = datetime.fromisoformat(args.before)
    before = before if before.tzinfo else before.replace(tzinfo=UTC)
    removed = log.purge(before, actor=identity.user)
    console.print(f"purged {removed} audit records older than {before.date()}")
    return 0


def cmd_request(args: argparse.Namespace) -> int:
    """``frugalml request OPERATION``."""
    from frugalml.governance.approvals import request_operation

    _, config, log = _context(args.env)
    details = dict(item.split("=", 1) for item in args.detail)
    request = request_operation(log, config, current_identity(), args.operation, details)
    console.print(
        f"request {request.request_id} ({request.operation}) waits for an approver: "
        f"frugalml approve {request.request_id}"
    )
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    """``frugalml approve REQUEST_ID``."""
    from frugalml.governance.approvals import approve

    _, config, log = _context(args.env)
    request = approve(log, config, current_identity(), args.request_id)
    console.print(f"approved {request.request_id} ({request.operation}) requested by {request.requested_by}")
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    """``frugalml approvals``: the requests and their state."""
    from frugalml.governance.approvals import requests

    _, config, log, identity = _open(args.env, "audit.verify")
    for request in requests(log).values():
        console.print(
            f"{request.request_id}  {request.operation:22s} {request.state:9s} by {request.requested_by}"
            f"{' approved by ' + request.approved_by if request.approved_by else ''}"
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``frugalml check``: the deployment checklist."""
    from frugalml.governance.checklist import run_checklist

    root, config, log, identity = _open(args.env, "check")
    items = run_checklist(root, config, log, default_tracking_uri(root), run_id=args.run, scan=not args.no_scan)
    for item in items:
        colour = {"pass": "green", "fail": "red", "skipped": "yellow"}[item.status]
        console.print(f"[{colour}]{item.status.upper():8s}[/{colour}] {item.name}: {item.detail}")
    log.append("check.run", actor=identity.user, results={i.name: i.status for i in items})
    return 0 if all(item.status != "fail" for item in items) else 1


def _approved(log: AuditLog, identity: Identity, request_id: str, operation: str, **expected: str) -> None:
    """Consume an approved request whose details match the operation's target."""
    from frugalml.governance.approvals import consume, requests

    found = requests(log).get(request_id)
    mismatched = {
        key: value for key, value in expected.items() if found and str(found.details.get(key, value)) != str(value)
    }
    if mismatched:
        log.append(
            "approval.refused", actor=identity.user, request_id=request_id, reason=f"details differ: {mismatched}"
        )
        raise ApprovalError(f"request {request_id!r} was approved for other details: {found.details}")
    consume(log, identity, request_id, operation)


def cmd_promote(args: argparse.Namespace) -> int:
    """``frugalml promote``: set the production alias (two-person rule + passing checklist)."""
    from mlflow.tracking import MlflowClient

    from frugalml.governance.checklist import run_checklist

    root, config, log, identity = _open(args.env, "promote")
    uri = default_tracking_uri(root)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version(args.model, args.version).run_id
    failed = [
        i for i in run_checklist(root, config, log, uri, run_id=run_id, scan=not args.no_scan) if i.status == "fail"
    ]
    if failed:
        reason = "; ".join(f"{i.name}: {i.detail}" for i in failed)
        log.append(
            "rbac.refused",
            actor=identity.user,
            operation="promote",
            model=args.model,
            version=args.version,
            reason=f"deployment checklist failed: {reason}",
        )
        raise GovernanceError(f"promotion of {args.model} v{args.version} refused, the checklist fails: {reason}")
    _approved(log, identity, args.request, "promote_production", model=args.model, version=args.version)
    client.set_registered_model_alias(args.model, "production", args.version)
    log.append(
        "registry.alias",
        actor=identity.user,
        model=args.model,
        version=args.version,
        alias="production",
        request_id=args.request,
    )
    console.print(f"{args.model} v{args.version} is now 'production'")
    return 0


def cmd_delete_run(args: argparse.Namespace) -> int:
    """``frugalml runs delete RUN_ID --request ID`` (two-person rule)."""
    from mlflow.tracking import MlflowClient

    root, config, log, identity = _open(args.env, "delete_runs")
    client = MlflowClient(tracking_uri=default_tracking_uri(root))
    client.get_run(args.run_id)  # exists
    _approved(log, identity, args.request, "delete_runs", run_id=args.run_id)
    client.delete_run(args.run_id)
    log.append("registry.delete_run", actor=identity.user, run_id_deleted=args.run_id, request_id=args.request)
    console.print(f"run {args.run_id} deleted")
    return 0


def cmd_privacy_status(args: argparse.Namespace) -> int:
    """``frugalml privacy status``: lifetime epsilon spent and remaining per dataset."""
    from frugalml.governance.ledger import status

    _, config, log, identity = _open(args.env, "privacy.status")
    rows = status(log, config)
    if not rows:
        console.print(
            f"no DP training recorded; default lifetime budget epsilon {config.privacy.default_budget_epsilon}"
        )
    for row in rows:
        console.print(f"{row['dataset']}  spent {row['spent']:.3f} of {row['budget']:.3f}  "
                      f"(remaining {row['remaining']:.3f}, {row['runs']} runs)")  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(prog="frugalml", description=__doc__)
    parser.add_argument("--env", default="local", help="configuration environment over conf/base (default: local)")
    commands = parser.add_subparsers(dest="command", required=True)
    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser("verify", help="check the hash chain and its anchors; exit 1 if broken")
    verify.add_argument("--no-mlflow", dest="mlflow", action="store_false", help="ignore MLflow run anchors")
    verify.set_defaults(func=cmd_verify)
    report = audit.add_parser("report", help="lineage report of a run or a registered model version")
    report.add_argument("--run")
    report.add_argument("--model")
    report.add_argument("--version")
    report.add_argument("--out")
    report.set_defaults(func=cmd_report)
    purge = audit.add_parser("purge", help="remove records older than a date (never within retention)")
    purge.add_argument("--before", required=True, help="ISO date, e.g. 2026-01-01")
    purge.set_defaults(func=cmd_purge)
    request = commands.add_parser("request", help="ask for a two-person operation")
    request.add_argument("operation")
    request.add_argument("--detail", action="append", default=[], help="key=value, repeatable")
    request.set_defaults(func=cmd_request)
    approve = commands.add_parser("approve", help="approve another user's request")
    approve.add_argument("request_id")
    approve.set_defaults(func=cmd_approve)
    commands.add_parser("approvals", help="list requests").set_defaults(func=cmd_approvals)
    promote = commands.add_parser("promote", help="set the production alias (approval + passing checklist)")
    promote.add_argument("--model", required=True)
    promote.add_argument("--version", required=True)
    promote.add_argument("--request", required=True, help="an approved promote_production request")
    promote.add_argument("--no-scan", action="store_true", help="skip the dependency scan of the checklist")
    promote.set_defaults(func=cmd_promote)
    runs = commands.add_parser("runs", help="MLflow runs").add_subparsers(dest="runs_command", required=True)
    delete = runs.add_parser("delete", help="delete a run (two-person rule)")
    delete.add_argument("run_id")
    delete.add_argument("--request", required=True, help="an approved delete_runs request")
    delete.set_defaults(func=cmd_delete_run)
    privacy = commands.add_parser("privacy", help="the privacy ledger").add_subparsers(
        dest="privacy_command", required=True
    )
    privacy.add_parser("status", help="epsilon spent and remaining per dataset").set_defaults(func=cmd_privacy_status)
    check = commands.add_parser("check", help="deployment checklist; exit 1 if any item fails")
    check.add_argument("--run", help="the MLflow run of the model to check (default: the latest)")
    check.add_argument("--no-scan", action="store_true", help="skip the dependency vulnerability scan")
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``frugalml``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FrugalMLError as error:
        console.print(f"[red]refused:[/red] {error}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
