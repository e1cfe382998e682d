"""Lineage report: raw-archive digests -> datasets and hashes -> run, parameters, quality gates, privacy,
watermark -> registered model version and its approvals. Markdown and HTML, from MLflow and the audit trail."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from frugalml.errors import GovernanceError
from frugalml.governance.audit import AuditLog


def _table(headers: list[str], rows: list[list[Any]]) -> tuple[str, str]:
    if not rows:
        return "_none recorded_\n", "<p><em>none recorded</em></p>"
    md = "| " + " | ".join(headers) + " |\n|" + "---|" * len(headers) + "\n"
    md += "".join("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |\n" for row in rows)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return md, f"<table><tr>{head}</tr>{body}</table>"


def lineage_report(
    log: AuditLog,
    tracking_uri: str,
    *,
    run_id: str | None = None,
    model: str | None = None,
    version: str | None = None,
    out_dir: Path,
) -> list[Path]:
    """Write the lineage report of a run or of a registered model version.

    Args:
        log: The audit trail.
        tracking_uri: The MLflow store.
        run_id: A run (or give ``model`` and ``version``).
        model: A registered model name.
        version: Its version.
        out_dir: Where to write ``lineage_<id>.md`` and ``.html``.

    Returns:
        The written paths.

    Raises:
        GovernanceError: When neither a run nor a model version is given, or it does not exist.
    """
    started = time.perf_counter()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    model_version = None
    if model and version:
        try:
            model_version = client.get_model_version(model, str(version))
        except Exception as error:  # noqa: BLE001
            raise GovernanceError(f"no registered model {model!r} version {version!r}: {error}") from None
        run_id = model_version.run_id
    if not run_id:
        raise GovernanceError("give --run RUN_ID, or --model NAME --version V")
    try:
        run = client.get_run(run_id)
    except Exception as error:  # noqa: BLE001
        raise GovernanceError(f"no MLflow run {run_id!r}: {error}") from None
    verified = log.verify_all()
    records = [r for r in log.records() if r.get("run_id") == run_id] if verified.ok else []
    sections: list[tuple[str, str, str]] = []

    def add(title: str, headers: list[str], rows: list[list[Any]]) -> None:
        md, page = _table(headers, rows)
        sections.append((title, md, page))

    tags = run.data.tags
    add(
        "Run",
        ["field", "value"],
        [
            ["run id", run_id],
            ["run name", run.info.run_name],
            ["status", run.info.status],
            ["started", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.info.start_time / 1000))],
            ["user (audit)", next((r["actor"] for r in records if r["kind"] == "pipeline.start"), "?")],
            ["git commit", next((r["data"].get("git_commit") for r in records if r["kind"] == "pipeline.start"), "?")],
            ["command", tags.get("kedro_command", "?")],
        ],
    )
    archives = [a for a in tags.get("lineage.archive_sha256", "").split(",") if a]
    add("Raw archives (sha256)", ["archive digest"], [[a] for a in archives])
    add(
        "Datasets logged with mlflow.log_input",
        ["dataset", "context", "digest", "source"],
        [
            [
                d.dataset.name,
                next((t.value for t in d.tags if t.key == "mlflow.data.context"), ""),
                d.dataset.digest,
                json.loads(d.dataset.source).get("uri", d.dataset.source)
                if d.dataset.source.startswith("{")
                else d.dataset.source,
            ]
            for d in (run.inputs.dataset_inputs if run.inputs is not None else [])
        ],
    )
    add(
        "Dataset reads and writes (audit)",
        ["event", "dataset", "layer", "content hash", "rows"],
        [
            [
                r["kind"].split(".")[1],
                r["data"]["dataset"],
                r["data"].get("layer") or "",
                r["data"].get("content_hash") or "",
                r["data"].get("rows") if r["data"].get("rows") is not None else "",
            ]
            for r in records
            if r["kind"] in ("dataset.load", "dataset.save")
        ],
    )
    add("Parameters", ["parameter", "value"], sorted([k, v] for k, v in run.data.params.items()))
    metrics = run.data.metrics
    add(
        "Quality gates and drift",
        ["metric", "value"],
        sorted(
            [k, v]
            for k, v in metrics.items()
            if k.startswith("quality.") and (k.endswith(".passed") or "drift" in k or k.endswith("quarantine_share"))
        ),
    )
    add(
        "Evaluation", ["metric", "value"], sorted([k, round(v, 4)] for k, v in metrics.items() if k.startswith("test."))
    )
    spends = [r for r in records if r["kind"] == "privacy.spend"]
    add(
        "Privacy budget spent (epsilon, delta)",
        ["dataset", "epsilon", "delta"],
        [[r["data"].get("dataset"), r["data"].get("epsilon"), r["data"].get("delta")] for r in spends],
    )
    add(
        "Watermark verification",
        ["result"],
        [[json.dumps(r["data"])] for r in records if r["kind"] == "watermark.verify"],
    )
    approvals = (
        [
            r
            for r in log.records()
            if verified.ok
            and r["kind"].startswith(("approval.", "registry."))
            and (r.get("run_id") == run_id or (model and json.dumps(r["data"]).find(str(model)) >= 0))
        ]
        if verified.ok
        else []
    )
    registration: list[list[Any]] = (
        [
            ["model", model],
            ["version", version],
            ["stage/aliases", ", ".join(model_version.aliases or [])],
            ["created", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(model_version.creation_timestamp / 1000))],
        ]
        if model_version
        else []
    )
    add("Registered version", ["field", "value"], registration)
    add(
        "Approvals and registry events (audit)",
        ["time", "event", "by", "details"],
        [[r["ts"], r["kind"], r["actor"], json.dumps(r["data"])[:200]] for r in approvals],
    )
    add(
        "Audit chain",
        ["field", "value"],
        [["verification", str(verified)], ["run anchor (audit.head)", tags.get("audit.head", "none")]],
    )

    name, title = (
        (f"{model}_v{version}", f"Lineage of model {model} v{version}")
        if model_version and model
        else (run_id, f"Lineage of run {run_id}")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = f"# {title}\n\n" + "".join(f"## {t}\n\n{md}\n" for t, md, _ in sections)
    markdown += f"\n_generated in {time.perf_counter() - started:.2f}s_\n"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
        "body{font-family:sans-serif;margin:2em}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}"
        "</style></head><body><h1>"
        + html.escape(title)
        + "</h1>"
        + "".join(f"<h2>{html.escape(t)}</h2>{p}" for t, _, p in sections)
        + "</body></html>"
    )
    md_path, html_path = out_dir / f"lineage_{name}.md", out_dir / f"lineage_{name}.html"
    md_path.write_text(markdown)
    html_path.write_text(page)
    return [md_path, html_path]
