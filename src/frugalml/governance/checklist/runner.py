"""The whole checklist (``frugalml check``), item by item, in order."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from frugalml.governance.audit import AuditLog
from frugalml.governance.checklist.dependencies import check_dependencies
from frugalml.governance.checklist.items import CheckItem
from frugalml.governance.checklist.model import check_model_formats, check_registered_versions_dp
from frugalml.governance.checklist.secret_scan import check_secrets_in_git, check_secrets_in_mlflow
from frugalml.governance.rbac import GovernanceConfig


def _latest_run(client: MlflowClient, run_id: str | None):  # noqa: ANN202
    if run_id:
        return client.get_run(run_id)
    experiment = client.get_experiment_by_name("frugalml")
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=50)
    return next((r for r in runs if r.info.status == "FINISHED" and "test.accuracy" in r.data.metrics), None)


def run_checklist(
    root: Path,
    config: GovernanceConfig,
    log: AuditLog,
    tracking_uri: str,
    *,
    run_id: str | None = None,
    scan: bool = True,
) -> list[CheckItem]:
    """Every checklist item.

    Args:
        root: Project root.
        config: Governance config.
        log: The audit trail.
        tracking_uri: The MLflow store.
        run_id: The model's training run (default: the latest finished one).
        scan: Run the dependency scan.

    Returns:
        The items, in order.
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = _latest_run(client, run_id)
    items = [check_registered_versions_dp(client)]
    chain = log.verify_all()  # the chain, its signed anchors, the MLflow run anchors and the witness
    verified = (
        [
            r
            for r in log.records()
            if r["kind"] == "watermark.verify" and r.get("run_id") == (run.info.run_id if run else None)
        ]
        if chain.ok
        else []
    )
    items.append(
        CheckItem(
            "watermark verified",
            "pass" if any(r["data"].get("ok") for r in verified) else "fail",
            "verified" if verified else "no watermark verification recorded (watermarking is not built yet)",
        )
    )
    retention = config.audit.retention_days
    items.append(CheckItem("audit retention >= 180 days", "pass" if retention >= 180 else "fail", f"{retention} days"))
    items.append(CheckItem("audit chain intact", "pass" if chain.ok else "fail", str(chain)))
    witnessed = log.witness is not None
    items.append(CheckItem(
        "audit trail witnessed", "pass" if witnessed and chain.ok else "fail",
        "anchors signed by the governance server" if witnessed else
        "no governance server: anchors are signed by a local key that whoever can read conf/local can use "
        "(start `make server` and set identity.server)",
    ))  # fmt: skip
    items.append(check_secrets_in_git(root))
    items.append(check_secrets_in_mlflow(client))
    items.append(check_model_formats(client, run))
    items.append(
        check_dependencies(root) if scan else CheckItem("dependency vulnerability scan", "skipped", "--no-scan")
    )
    return items
