"""Deployment checklist (``frugalml check``): each item passes, fails or is skipped with a reason."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import GovernanceConfig

UNSAFE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt"}
SAFE_SUFFIXES = {".safetensors", ".onnx"}
SECRET_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)(password|passwd|secret|api[_-]?key|token)\s*[:=]\s*['\"]?[A-Za-z0-9!@#$%^&*_+\-/]{8,}"),
]
SECRET_PARAM_NAMES = re.compile(
    r"(?i)(^|[._-])(password|passwd|secret|secret[_-]?key|api[_-]?key|access[_-]?token|auth[_-]?token|token|"
    r"watermark[_-]?key|private[_-]?key)$"
)


@dataclass(frozen=True)
class CheckItem:
    """One checklist line."""

    name: str
    status: str  # pass | fail | skipped
    detail: str


def _latest_run(client: MlflowClient, run_id: str | None):  # noqa: ANN202
    if run_id:
        return client.get_run(run_id)
    experiment = client.get_experiment_by_name("frugalml")
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=50)
    return next((r for r in runs if r.info.status == "FINISHED" and "test.accuracy" in r.data.metrics), None)


def check_secrets_in_git(root: Path) -> CheckItem:
    """No credential-looking strings in tracked files."""
    try:
        files = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), "ls-files"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return CheckItem("no secrets in git", "skipped", "not a git checkout")
    hits = []
    for name in files:
        path = root / name
        if not path.is_file() or path.stat().st_size > 2_000_000 or name.startswith("tests/"):
            continue
        text = path.read_text(errors="ignore")
        if any(pattern.search(text) for pattern in SECRET_PATTERNS):
            hits.append(name)
    return CheckItem(
        "no secrets in git",
        "fail" if hits else "pass",
        f"credential-like strings in {hits}" if hits else f"{len(files)} tracked files scanned",
    )


def check_secrets_in_mlflow(client: MlflowClient) -> CheckItem:
    """No parameter of any run is named like, or looks like, a secret."""
    hits, runs = [], 0
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=5000):
            runs += 1
            for key, value in run.data.params.items():
                if (SECRET_PARAM_NAMES.search(key) and value not in ("", "None", "null")) or any(
                    p.search(f"{key}={value}") for p in SECRET_PATTERNS[:2]
                ):
                    hits.append(f"{run.info.run_id[:8]}:{key}")
    return CheckItem(
        "no secrets in MLflow params",
        "fail" if hits else "pass",
        f"secret-like params {hits[:10]}" if hits else f"{runs} runs scanned",
    )


def check_model_formats(client: MlflowClient, run) -> CheckItem:  # noqa: ANN001
    """The model's files are safetensors/ONNX; nothing a loader would unpickle."""
    if run is None:
        return CheckItem("model artifacts in safe formats", "fail", "no finished training run found")
    import mlflow.artifacts

    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    if not logged:
        return CheckItem("model artifacts in safe formats", "fail", f"run {run.info.run_id} logged no model")
    files, local = [], Path()
    for model in logged:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model.artifact_location, tracking_uri=client._tracking_client.tracking_uri
            )
        )
        files += [p for p in local.rglob("*") if p.is_file()]
    unsafe = [p.name for p in files if p.suffix in UNSAFE_SUFFIXES]
    safe = [p.name for p in files if p.suffix in SAFE_SUFFIXES]
    if unsafe or not safe:
        return CheckItem(
            "model artifacts in safe formats",
            "fail",
            f"pickle-like files {unsafe}" if unsafe else "no safetensors/ONNX weights in the model",
        )
    return CheckItem("model artifacts in safe formats", "pass", f"weights {safe}; no pickle files")


def check_dependencies(root: Path) -> CheckItem:
    """pip-audit of the installed environment, where its advisory service answers."""
    executable = shutil.which("pip-audit") or str(Path(__import__("sys").executable).with_name("pip-audit"))
    if not Path(executable).exists():
        return CheckItem("dependency vulnerability scan", "skipped", "pip-audit is not installed")
    try:
        result = subprocess.run(  # noqa: S603
            [executable, "--format", "json", "--progress-spinner", "off", "--timeout", "20"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return CheckItem("dependency vulnerability scan", "skipped", "the advisory service did not answer in time")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return CheckItem("dependency vulnerability scan", "skipped", f"advisory service unreachable: {reason}")
    dependencies = report.get("dependencies", report) if isinstance(report, dict) else report
    vulnerable = [
        f"{d['name']} {d['version']} ({', '.join(v['id'] for v in d['vulns'])})" for d in dependencies if d.get("vulns")
    ]
    return CheckItem(
        "dependency vulnerability scan",
        "fail" if vulnerable else "pass",
        f"vulnerable: {vulnerable[:10]}" if vulnerable else f"{len(dependencies)} packages, no known vulnerability",
    )


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
    params = run.data.params if run else {}
    items = []
    dp_enabled, epsilon = params.get("train.privacy.enabled"), params.get("train.privacy.target_epsilon")
    if dp_enabled is None:
        items.append(
            CheckItem(
                "DP on with epsilon <= 2",
                "fail",
                "no training run with train.privacy parameters found",
            )
        )
    else:
        ok = dp_enabled == "True" and epsilon is not None and float(epsilon) <= 2
        items.append(
            CheckItem("DP on with epsilon <= 2", "pass" if ok else "fail", f"enabled={dp_enabled}, epsilon={epsilon}")
        )
    verified = (
        [
            r
            for r in log.records()
            if r["kind"] == "watermark.verify" and r.get("run_id") == (run.info.run_id if run else None)
        ]
        if log.verify().ok
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
    chain = log.verify()
    items.append(CheckItem("audit chain intact", "pass" if chain.ok else "fail", str(chain)))
    items.append(check_secrets_in_git(root))
    items.append(check_secrets_in_mlflow(client))
    items.append(check_model_formats(client, run))
    items.append(
        check_dependencies(root) if scan else CheckItem("dependency vulnerability scan", "skipped", "--no-scan")
    )
    return items
