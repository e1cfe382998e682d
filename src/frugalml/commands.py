"""``frugalml`` commands that are not pipelines: audit verify/report/purge, request/approve, check.

Every command checks the acting user's role (``governance.yml``) and is itself audited.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from frugalml.errors import AccessDenied, ApprovalError, FrugalMLError, GovernanceError
from frugalml.governance.audit import AuditLog
from frugalml.governance.context import Governed, open_governed
from frugalml.governance.rbac import GovernanceConfig, Identity, check_operation, load_governance

if TYPE_CHECKING:
    import pandas as pd

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


def _experiments(root: Path, env: str) -> list[str]:
    import warnings

    from kedro.config import MissingConfigException, OmegaConfigLoader

    warnings.filterwarnings("ignore", message=".*register_new_resolver.*")
    try:
        loader = OmegaConfigLoader(
            str(root / "conf"),
            base_env="base",
            default_run_env=env,
            config_patterns={"mlflow": ["mlflow*", "mlflow*/**"]},
            custom_resolvers={"frugalml.project_path": lambda rel=".": str(root / rel)},
        )
        return [str(loader["mlflow"]["tracking"]["experiment"]["name"])]
    except (MissingConfigException, KeyError, TypeError):
        return ["frugalml"]


def _open(env: str, operation: str) -> Governed:
    """The governed context, checked for ``operation`` (refusals audited): policy first, then the role."""
    root = project_root()
    config = load_governance(root / "conf", env)
    governed = open_governed(root, config, tracking_uri=default_tracking_uri(root), experiments=_experiments(root, env))
    from frugalml.governance.policy import weakenings

    if operation in UNDER_BASELINE and weakenings(governed.baseline, config):
        # asking for (or granting) the change_governance that a weaker conf/local needs, or reading, happens under
        # the governance of record, never under the weaker config
        console.print("[yellow]note:[/yellow] conf weakens governance; this command runs under the governance of "
                      "record (the server's, or conf/base at git HEAD)", highlight=False)  # fmt: skip
        governed = open_governed(root, governed.baseline, tracking_uri=default_tracking_uri(root),
                                 experiments=_experiments(root, env))  # fmt: skip
        governed.config = governed.baseline
    else:
        governed.enforce_policy()
    _authorise(governed.config, governed.log, governed.identity, operation)
    return governed


#: Commands that may run while conf/local weakens governance: they run under the baseline instead.
UNDER_BASELINE = frozenset({"request", "approve", "approvals", "audit.verify", "audit.prove", "privacy.status"})


def _authorise(config: GovernanceConfig, log: AuditLog, identity: Identity, operation: str) -> None:
    try:
        check_operation(config, identity, operation)
    except AccessDenied as error:
        log.append("rbac.refused", actor=identity.user, operation=operation, reason=str(error))
        raise


def cmd_verify(args: argparse.Namespace) -> int:
    """``frugalml audit verify``: the chain, every signed anchor, the MLflow run anchors and the witness."""
    governed = _open(args.env, "audit.verify")
    log = governed.log
    result = log.verify_all() if args.mlflow else log.verify()
    console.print(str(result), highlight=False)
    if result.ok:
        log.append("audit.verify", actor=governed.identity.user, ok=True, records=result.records)
        return 0
    return 1


def cmd_prove(args: argparse.Namespace) -> int:
    """``frugalml audit prove SEQ``: a Merkle inclusion proof of one record against a fresh signed head."""
    from frugalml.governance.merkle import inclusion_proof, verify_inclusion

    governed = _open(args.env, "audit.prove")
    log = governed.log
    log.require_intact()
    records = log.records()
    index = next((i for i, r in enumerate(records) if r["seq"] == args.seq), None)
    if index is None:
        raise GovernanceError(f"no audit record seq {args.seq} (records {records[0]['seq'] if records else '-'}"
                              f"..{records[-1]['seq'] if records else '-'})")  # fmt: skip
    head = log.signed_head()
    first = int(head["first_seq"])
    hashes = [r["hash"] for r in records if first <= r["seq"] <= head["seq"]]
    leaf = args.seq - first
    proof = {"record": records[index], "leaf_index": leaf, "tree_size": len(hashes),
             "proof": inclusion_proof(hashes, leaf), "signed_head": head}  # fmt: skip
    if not verify_inclusion(records[index]["hash"], leaf, len(hashes), proof["proof"], head["root"]):
        raise GovernanceError(f"record seq {args.seq} is not in the signed tree (the trail changed meanwhile?)")
    console.print_json(data=proof)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``frugalml audit report``."""
    from frugalml.governance.lineage import lineage_report

    governed = _open(args.env, "audit.report")
    root = governed.root
    paths = lineage_report(
        governed.log,
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
    governed = _open(args.env, "audit.purge")
    before = datetime.fromisoformat(args.before)
    before = before if before.tzinfo else before.replace(tzinfo=UTC)
    removed = governed.log.purge(before, actor=governed.identity.user)
    console.print(f"purged {removed} audit records older than {before.date()}")
    return 0


def cmd_request(args: argparse.Namespace) -> int:
    """``frugalml request OPERATION --detail key=value ...``."""
    from frugalml.governance.approvals import parse_detail_args, request_operation

    governed = _open(args.env, "request")
    signed = request_operation(governed.log, governed.client, governed.config, governed.identity, args.operation,
                               details=parse_detail_args(args.detail))  # fmt: skip
    console.print(f"request {signed['id']} ({signed['operation']}, {_details(signed['details'])}) waits for an "
                  f"approver: frugalml approve {signed['id']}", highlight=False)  # fmt: skip
    return 0


def _details(details: dict) -> str:
    from rich.markup import escape

    return escape(", ".join(f"{key}={value}" for key, value in sorted(details.items())) or "no details")


def cmd_approve(args: argparse.Namespace) -> int:
    """``frugalml approve REQUEST_ID``: shows what is approved, then approves exactly that."""
    from frugalml.governance.approvals import approve, require_server

    governed = _open(args.env, "approve")
    shown = require_server(governed.client, "approve").get(args.request_id)
    console.print(f"request {shown['id']}: {shown['operation']} requested by {shown['requested_by']} at "
                  f"{shown['requested_at']}, state {shown['state']}", highlight=False)  # fmt: skip
    from rich.markup import escape

    for key, value in sorted(shown["details"].items()):  # markup escaped: what is shown is what is approved
        console.print(f"  {escape(str(key))} = {escape(str(value))}", highlight=False)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ApprovalError("read the details above, then approve with `frugalml approve "
                                f"{args.request_id} --yes` (no terminal to confirm on)")  # fmt: skip
        typed = input(f"type {args.request_id} to approve exactly this: ").strip()
        if typed != args.request_id:
            raise ApprovalError("not confirmed: nothing was approved")
    signed = approve(governed.log, governed.client, governed.identity, args.request_id, shown["details"])
    console.print(f"approved {signed['id']} ({signed['operation']}, {_details(signed['details'])}) requested by "
                  f"{signed['requested_by']}", highlight=False)  # fmt: skip
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    """``frugalml approvals``: the requests on the governance server and their state."""
    from frugalml.governance.approvals import require_server

    governed = _open(args.env, "approvals")
    for request in require_server(governed.client, "approvals").requests():
        console.print(
            f"{request['id']}  {request['operation']:22s} {request['state']:9s} by {request['requested_by']}"
            f"{' approved by ' + request['approved_by'] if request['approved_by'] else ''}  "
            f"{_details(request['details'])}",
            highlight=False,
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``frugalml check``: the deployment checklist."""
    from frugalml.governance.checklist import exit_status, run_checklist

    governed = _open(args.env, "check")
    root, config, log, identity = governed.root, governed.config, governed.log, governed.identity
    items = run_checklist(root, config, log, default_tracking_uri(root), run_id=args.run, scan=not args.no_scan)
    for item in items:
        colour = {"pass": "green", "fail": "red", "skipped": "yellow", "unknown": "magenta"}[item.status]
        console.print(f"[{colour}]{item.status.upper():8s}[/{colour}] {item.name}: {item.detail}", highlight=False)
    log.append("check.run", actor=identity.user, results={i.name: i.status for i in items})
    return exit_status(items)  # an item that could not be established (unknown) blocks like a failure


def cmd_promote(args: argparse.Namespace) -> int:
    """``frugalml promote``: set the production alias (passing checklist, then the approval on the server)."""
    from mlflow.tracking import MlflowClient

    from frugalml.governance.approvals import require_server
    from frugalml.governance.checklist import BLOCKING_STATUSES, run_checklist

    governed = _open(args.env, "promote")
    root, config, log, identity = governed.root, governed.config, governed.log, governed.identity
    client = require_server(governed.client, "promote_production")
    uri = default_tracking_uri(root)
    run_id = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(args.model, args.version).run_id
    failed = [
        i
        for i in run_checklist(root, config, log, uri, run_id=run_id, scan=not args.no_scan)
        if i.status in BLOCKING_STATUSES
    ]
    if failed:
        reason = "; ".join(f"{i.name}: {i.detail}" for i in failed)
        log.append("rbac.refused", actor=identity.user, operation="promote", model=args.model,
                   version=args.version, reason=f"deployment checklist failed: {reason}")  # fmt: skip
        raise GovernanceError(f"promotion of {args.model} v{args.version} refused, the checklist fails: {reason}")
    try:
        receipt = client.promote(args.model, args.version, args.request)
    except (AccessDenied, ApprovalError) as error:
        log.append("approval.refused", actor=identity.user, request_id=args.request, reason=str(error))
        raise
    log.append(
        "approval.used",
        actor=identity.user,
        request_id=args.request,
        operation="promote_production",
        details=receipt["details"],
        approved_by=receipt["approved_by"],
        server_signature=receipt["sig"],
    )
    log.append("registry.alias", actor=identity.user, model=args.model, version=args.version, alias="production",
               request_id=args.request)  # fmt: skip
    log.anchor(actor=identity.user)
    console.print(f"{args.model} v{args.version} is now 'production'")
    return 0


def cmd_delete_run(args: argparse.Namespace) -> int:
    """``frugalml runs delete RUN_ID ... --request ID`` (two-person rule, on the server)."""
    from frugalml.governance.approvals import require_server

    governed = _open(args.env, "delete_runs")
    log, identity = governed.log, governed.identity
    client = require_server(governed.client, "delete_runs")
    try:
        receipt = client.delete_runs(sorted(set(args.run_id)), args.request)
    except (AccessDenied, ApprovalError) as error:
        log.append("approval.refused", actor=identity.user, request_id=args.request, reason=str(error))
        raise
    log.append(
        "approval.used",
        actor=identity.user,
        request_id=args.request,
        operation="delete_runs",
        details=receipt["details"],
        approved_by=receipt["approved_by"],
        server_signature=receipt["sig"],
    )
    for run_id in sorted(set(args.run_id)):
        log.append("registry.delete_run", actor=identity.user, run_id_deleted=run_id, request_id=args.request)
    log.anchor(actor=identity.user)
    console.print(f"deleted {', '.join(sorted(set(args.run_id)))}")
    return 0


#: the file types ``privacy status --dataset`` reads itself (anything else is a catalog entry's name)
_TABLE_READERS = {".csv": "read_csv", ".parquet": "read_parquet", ".pq": "read_parquet", ".jsonl": "read_json"}


def load_table(root: Path, env: str, dataset: str) -> tuple[pd.DataFrame, str]:
    """The rows of ``--dataset``: a CSV / Parquet / JSON-lines file, or a dataset of the project's catalog.

    Args:
        root: Project root (the catalog's relative paths are relative to it).
        env: Configuration environment.
        dataset: A file path, or a catalog entry's name (e.g. ``train_clean``).

    Returns:
        The table and where it was read from.

    Raises:
        FrugalMLError: The file does not exist or cannot be read as a table, or no catalog entry has that name.
    """
    import contextlib

    import pandas as pd

    path = Path(dataset)
    if path.suffix.lower() in _TABLE_READERS or path.exists():
        if not path.is_file():
            raise FrugalMLError(f"--dataset {dataset}: no such file")
        reader = _TABLE_READERS.get(path.suffix.lower())
        if reader is None:
            raise FrugalMLError(f"--dataset {dataset}: not a table frugalml reads ({', '.join(_TABLE_READERS)})")
        try:
            frame = getattr(pd, reader)(path, **({"lines": True} if reader == "read_json" else {}))
        except Exception as error:  # noqa: BLE001 - any reader failure is the same answer: not a readable table
            raise FrugalMLError(f"--dataset {dataset}: cannot be read as a {path.suffix} table ({error})") from error
        return frame, str(path)
    from kedro.io import DataCatalog

    from frugalml.config import load_config

    entries = load_config("catalog", root / "conf", env, default={}) or {}
    if dataset not in entries:
        known = ", ".join(sorted(n for n in entries if not n.startswith("_"))[:12])
        raise FrugalMLError(f"--dataset {dataset}: no such file, and no catalog entry of that name ({known}, ...)")
    filepath = entries[dataset].get("filepath") if isinstance(entries[dataset], dict) else None
    if filepath and "://" not in str(filepath) and not (root / str(filepath)).exists():
        raise FrugalMLError(f"--dataset {dataset}: its file {filepath} does not exist yet (a run writes it)")
    credentials = load_config("credentials", root / "conf", env, default={}) or {}
    with contextlib.chdir(root):  # the catalog's relative file paths are relative to the project
        try:
            frame = DataCatalog.from_config({dataset: entries[dataset]}, credentials).load(dataset)
        except Exception as error:  # noqa: BLE001 - the dataset's own error, under the name the user gave
            raise FrugalMLError(f"--dataset {dataset}: the catalog entry cannot be loaded ({error})") from error
    if not isinstance(frame, pd.DataFrame):
        raise FrugalMLError(f"--dataset {dataset}: the catalog entry is a {type(frame).__name__}, not a table")
    return frame, f"catalog entry {dataset}"


def _text_columns(root: Path, env: str) -> list[str]:
    from frugalml.config import load_config
    from frugalml.params import DataSchema

    data = (load_config("parameters", root / "conf", env, default={}) or {}).get("data") or {}
    return list(data.get("text_columns") or DataSchema().text_columns)


def cmd_privacy_status(args: argparse.Namespace) -> int:
    """``frugalml privacy status``: lifetime epsilon spent and remaining per dataset (or of ``--dataset``)."""
    from frugalml.governance.ledger import status

    governed = _open(args.env, "privacy.status")
    config = governed.config
    if args.dataset:
        return _dataset_status(governed, args.env, args.dataset)
    rows = status(governed.log, config, governed.client)
    if not rows:
        console.print(
            f"no DP training recorded; default lifetime budget epsilon {config.privacy.default_budget_epsilon}"
        )
    for row in rows:
        console.print(f"{row['dataset']}  spent {row['spent']:.3f} of {row['budget']:.3f}  "
                      f"(remaining {row['remaining']:.3f}, {row['runs']} runs)")  # fmt: skip
    return 0


def _dataset_status(governed: Governed, env: str, dataset: str) -> int:
    """The ledger key of one table's rows, and the budget its most-spent row has spent and has left."""
    from frugalml.governance.ledger import budget_of, ledger_key, per_row_spent, row_hashes

    frame, source = load_table(governed.root, env, dataset)
    if not len(frame):
        raise FrugalMLError(f"--dataset {dataset}: the table has no rows")
    try:
        hashes = row_hashes(frame, _text_columns(governed.root, env))
    except GovernanceError as error:  # the ledger speaks of "the training set": name the table the user gave
        raise FrugalMLError(f"--dataset {dataset}: {error}") from error
    key = ledger_key(hashes)
    per_row = per_row_spent(governed.log, hashes)  # verifies the trail; a row shares any earlier spend it holds
    spent = float(per_row.max())
    budget = budget_of(governed.config, key, governed.client)
    console.print(f"{key}  {len(frame)} rows of {source}", highlight=False)
    console.print(f"  spent {spent:.3f} of {budget:.3f} (remaining {budget - spent:.3f}; the most-spent row, "
                  f"{int((per_row > 0).sum())} rows spent before)", highlight=False)  # fmt: skip
    console.print(f"  a training on exactly these rows is {key}: `frugalml request disable_dp --detail "
                  f"dataset={key}`; a training on part of them (the split's training rows: train_clean) has "
                  "its own key", highlight=False)  # fmt: skip
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
    prove = audit.add_parser("prove", help="Merkle inclusion proof of one record against a signed head")
    prove.add_argument("seq", type=int)
    prove.set_defaults(func=cmd_prove)
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
    approve.add_argument("--yes", action="store_true", help="approve the details shown without a prompt")
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
    delete.add_argument("run_id", nargs="+")
    delete.add_argument("--request", required=True, help="an approved delete_runs request")
    delete.set_defaults(func=cmd_delete_run)
    privacy = commands.add_parser("privacy", help="the privacy ledger").add_subparsers(
        dest="privacy_command", required=True
    )
    privacy_status = privacy.add_parser("status", help="epsilon spent and remaining per dataset")
    privacy_status.add_argument("--dataset", help="a CSV/Parquet/JSON-lines file or a catalog entry (train_clean): "
                                "its ledger key and budget, before a run")  # fmt: skip
    privacy_status.set_defaults(func=cmd_privacy_status)
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
