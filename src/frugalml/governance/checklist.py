"""Deployment checklist (``frugalml check``): each item passes, fails, is skipped or is unknown, with a reason.

Statuses: ``pass``; ``fail``; ``unknown`` (the item could not be established, e.g. no dependency could be
audited: never reported as safe, and ``frugalml check`` exits 1 on it, see :func:`exit_status`); ``skipped``
(the user switched the item off, e.g. ``--no-scan``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import GovernanceConfig

UNSAFE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt"}
SAFE_SUFFIXES = {".safetensors", ".onnx"}
SECRET_PARAM_NAMES = re.compile(
    r"(?i)(^|[._-])(password|passwd|secret|secret[_-]?key|api[_-]?key|access[_-]?token|auth[_-]?token|token|"
    r"watermark[_-]?key|private[_-]?key)$"
)
STATUSES = ("pass", "fail", "unknown", "skipped")
#: Statuses that make ``frugalml check`` exit 1: a deployment gate never treats "could not tell" as safe.
BLOCKING_STATUSES = frozenset({"fail", "unknown"})
#: The committed detect-secrets baseline, at the repository root.
SECRETS_BASELINE = ".secrets.baseline"
#: Highest epsilon a deployable model may have been trained with.
MAX_EPSILON = 2.0
#: The MLflow metric training logs per epoch with the epsilon spent so far (``train.`` + ``epsilon``).
EPSILON_METRIC = "train.epsilon"
#: detect-secrets plugins that flag any high-entropy string: right for source files, wrong for MLflow
#: parameters, which legitimately carry digests (git commits, content hashes).
_ENTROPY_PLUGINS = ("Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector")
#: Honouring inline ``pragma: allowlist secret`` comments would let a line hide itself from review: every
#: false positive must be audited in the baseline instead.
_INLINE_ALLOWLIST_FILTER = "detect_secrets.filters.allowlist.is_line_allowlisted"


@dataclass(frozen=True)
class CheckItem:
    """One checklist line."""

    name: str
    status: str  # pass | fail | unknown | skipped
    detail: str


def exit_status(items: Sequence[CheckItem]) -> int:
    """The exit status of ``frugalml check``: 1 when any item fails or is unknown, else 0.

    Args:
        items: The checklist's items.

    Returns:
        0 or 1.
    """
    return 1 if any(item.status in BLOCKING_STATUSES for item in items) else 0


def _latest_run(client: MlflowClient, run_id: str | None):  # noqa: ANN202
    if run_id:
        return client.get_run(run_id)
    experiment = client.get_experiment_by_name("frugalml")
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=50)
    return next((r for r in runs if r.info.status == "FINISHED" and "test.accuracy" in r.data.metrics), None)


# --- secrets: detect-secrets ----------------------------------------------------------------------------
def secret_scan_config() -> dict[str, Any]:
    """The detect-secrets settings of the checklist, fixed in code so a baseline cannot weaken them.

    Every plugin detect-secrets ships, at its default limits; its default heuristic filters; no network
    verification of found secrets (nothing found is ever sent anywhere); inline allowlist comments not honoured.

    Returns:
        A ``plugins_used``/``filters_used`` mapping, as in a baseline file.
    """
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import Settings

    plugins = sorted(plugin.__name__ for plugin in get_mapping_from_secret_type_to_class().values())
    filters = sorted(set(Settings().filters) - Settings.DEFAULT_FILTERS - {_INLINE_ALLOWLIST_FILTER})
    return {"plugins_used": [{"name": name} for name in plugins], "filters_used": [{"path": p} for p in filters]}


@contextmanager
def _secret_scan_settings(disabled_plugins: Sequence[str] = ()) -> Iterator[None]:
    from detect_secrets.settings import get_settings, transient_settings

    with transient_settings(secret_scan_config()):
        get_settings().disable_plugins(*disabled_plugins)
        yield


def tracked_files(root: Path) -> list[str]:
    """Every file git tracks in ``root`` (``git ls-files``), relative, ``/``-separated.

    Args:
        root: The repository root.

    Returns:
        The paths.

    Raises:
        OSError: git is missing.
        subprocess.SubprocessError: Not a git checkout.
    """
    listed = subprocess.run(  # noqa: S603
        ["git", "-C", str(root), "ls-files", "-z"],
        capture_output=True,
        check=True,
        timeout=60,  # noqa: S607
    ).stdout
    return [name for name in listed.decode("utf-8", "surrogateescape").split("\0") if name]


def scan_for_secrets(root: Path, files: Sequence[str]):  # noqa: ANN201
    """Scan files with detect-secrets (the checklist's settings, :func:`secret_scan_config`).

    Args:
        root: The folder the paths are relative to.
        files: Relative paths; symbolic links and missing files are skipped.

    Returns:
        A detect-secrets ``SecretsCollection`` (file -> potential secrets, values kept in memory only).
    """
    from detect_secrets.core.secrets_collection import SecretsCollection

    found = SecretsCollection(root=str(root))
    with _secret_scan_settings():
        for name in files:
            path = root / name
            if path.is_symlink() or not path.is_file():
                continue
            found.scan_file(name)
            if name in found.files:  # record the relative name, as the baseline does, not root/name
                hits = list(found[name])
                for secret in hits:
                    secret.filename = name
                found[name] = set(hits)
    return found


def _load_baseline(path: Path):  # noqa: ANN202
    from detect_secrets.core import baseline
    from detect_secrets.core.secrets_collection import SecretsCollection

    # not baseline.load(): that would also take the scan settings from the file
    loaded = baseline.upgrade(json.loads(path.read_text(encoding="utf-8")))
    results = {name: [{**entry, "filename": name} for entry in entries] for name, entries in loaded["results"].items()}
    return SecretsCollection.load_from_baseline({**loaded, "results": results})


def write_secrets_baseline(root: Path, previous: Path | None = None) -> Path:
    """Write ``.secrets.baseline``: every tracked file scanned with the checklist's settings.

    Audit marks (``is_secret``) of findings that are still there are kept from the previous baseline; new
    findings are unaudited until ``detect-secrets audit .secrets.baseline`` marks them.

    Args:
        root: The repository root.
        previous: The baseline to keep audit marks from (default: the one in ``root``, if any).

    Returns:
        The baseline's path.
    """
    from detect_secrets.core import baseline

    path = root / SECRETS_BASELINE
    previous = path if previous is None else previous
    files = [name for name in tracked_files(root) if name != SECRETS_BASELINE]
    found = scan_for_secrets(root, files)
    if previous.is_file():
        found.merge(_load_baseline(previous))
    with _secret_scan_settings():
        output = baseline.format_for_output(found)
    path.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    return path


def check_secrets_in_git(root: Path) -> CheckItem:
    """No secret in any tracked file (``tests/`` included) beyond the false positives audited in the baseline.

    detect-secrets scans every tracked file with :func:`secret_scan_config`; each finding must be in the
    committed ``.secrets.baseline`` *and* audited there as a false positive (``"is_secret": false``). A new
    finding, an unaudited one, or one audited as a real secret fails the item.

    Args:
        root: The repository root.

    Returns:
        The item (``unknown`` when ``root`` is not a git checkout: nothing was scanned).
    """
    from detect_secrets.__version__ import VERSION

    name = "no secrets in git"
    try:
        files = tracked_files(root)
    except (OSError, subprocess.SubprocessError):
        return CheckItem(name, "unknown", f"{root} is not a git checkout: no tracked file could be scanned")
    baseline_path = root / SECRETS_BASELINE
    if baseline_path.is_file():
        try:
            audited = _load_baseline(baseline_path)
        except (ValueError, KeyError, TypeError) as error:
            return CheckItem(name, "fail", f"{SECRETS_BASELINE} is not a detect-secrets baseline: {error!r}")
    else:
        from detect_secrets.core.secrets_collection import SecretsCollection

        audited = SecretsCollection()
    files = [f for f in files if f != SECRETS_BASELINE]  # hashes of audited findings only
    found = scan_for_secrets(root, files)
    known = {(f, s.secret_hash, s.type): s for f, s in audited}
    new, unaudited, real, allowed = [], [], [], 0
    for filename, secret in found:
        where = f"{filename}:{secret.line_number} ({secret.type})"  # never the value
        entry = known.get((filename, secret.secret_hash, secret.type))
        if entry is None:
            new.append(where)
        elif entry.is_secret is None:
            unaudited.append(where)
        elif entry.is_secret:
            real.append(where)
        else:
            allowed += 1
    problems = [
        f"{label}: {hits[:10]}" + (f" and {len(hits) - 10} more" if len(hits) > 10 else "")
        for label, hits in (
            ("new secrets (not in the baseline)", new),
            ("unaudited baseline findings", unaudited),
            ("findings audited as real secrets", real),
        )
        if hits
    ]
    if problems:
        remedy = (
            "remove them, or if they are false positives: "
            f"`detect-secrets scan --no-verify --baseline {SECRETS_BASELINE}` "
            f"then `detect-secrets audit {SECRETS_BASELINE}`"
        )
        if not baseline_path.is_file():
            remedy = f"no {SECRETS_BASELINE} at {root}; " + remedy
        return CheckItem(name, "fail", "; ".join(problems) + f"; {remedy}")
    return CheckItem(
        name,
        "pass",
        f"{len(files)} tracked files scanned by detect-secrets {VERSION}; "
        f"{allowed} audited false positives in {SECRETS_BASELINE}",
    )


def _secret_like_value(key: str, value: str) -> list[str]:
    from detect_secrets.core.scan import scan_line

    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    return sorted({secret.type for secret in scan_line(f'{key} = "{quoted}"')})


def check_secrets_in_mlflow(client: MlflowClient) -> CheckItem:
    """No parameter of any run (deleted runs too) is named like a secret or holds one.

    Values are scanned with detect-secrets' value-pattern plugins (keys, tokens, private keys, credentials
    in URLs, ``password = ...``); its entropy plugins are off, since parameters hold digests by design.

    Args:
        client: The tracking store.

    Returns:
        The item.
    """
    from mlflow.entities import ViewType

    hits, runs = [], 0
    with _secret_scan_settings(disabled_plugins=_ENTROPY_PLUGINS):
        for experiment in client.search_experiments(view_type=ViewType.ALL):
            token = None
            while True:
                page = client.search_runs(
                    [experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token
                )
                for run in page:
                    runs += 1
                    for key, value in run.data.params.items():
                        named = SECRET_PARAM_NAMES.search(key) and value not in ("", "None", "null")
                        kinds = _secret_like_value(key, value)
                        if named or kinds:
                            hits.append(f"{run.info.run_id[:8]}:{key}" + (f" ({', '.join(kinds)})" if kinds else ""))
                token = page.token
                if not token:
                    break
    return CheckItem(
        "no secrets in MLflow params",
        "fail" if hits else "pass",
        f"secret-like params {hits[:10]}" if hits else f"{runs} runs scanned",
    )


# --- the model ------------------------------------------------------------------------------------------
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


def _paged(search, **kwargs: Any) -> Iterator[Any]:  # noqa: ANN001
    token = None
    while True:
        page = search(max_results=1000, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def _version_dp_problem(client: MlflowClient, version) -> tuple[str | None, float | None]:  # noqa: ANN001
    """Why a registered version is not DP with epsilon <= MAX_EPSILON (None when it is), and its spent epsilon."""
    from mlflow.exceptions import MlflowException

    if not version.run_id:
        return "no source run", None
    try:
        run = client.get_run(version.run_id)
    except MlflowException:
        return f"source run {version.run_id} not found", None
    params = run.data.params
    enabled, target = params.get("train.privacy.enabled"), params.get("train.privacy.target_epsilon")
    if enabled is None:
        return f"source run {version.run_id[:8]} logged no train.privacy parameters", None
    if enabled.strip().lower() != "true":
        return f"DP off (train.privacy.enabled={enabled})", None
    try:
        target_epsilon = float(target) if target is not None else math.nan
    except ValueError:
        target_epsilon = math.nan
    if not math.isfinite(target_epsilon) or target_epsilon > MAX_EPSILON:
        return f"target epsilon {target} > {MAX_EPSILON:g}", None
    history = client.get_metric_history(version.run_id, EPSILON_METRIC)
    spent = max((m.value for m in history), default=None)
    if spent is not None and not (math.isfinite(spent) and spent <= MAX_EPSILON):
        return f"spent epsilon {spent:.3g} > {MAX_EPSILON:g} (target {target})", spent
    return None, spent


def check_registered_versions_dp(client: MlflowClient) -> CheckItem:
    """Every registered model version (all registered models) was trained with DP at epsilon <= 2.

    For each version, its source run's ``train.privacy.enabled`` and ``train.privacy.target_epsilon`` and,
    where logged, the epsilon it actually spent (the highest ``train.epsilon`` value). Any registered version
    can be served, so one offending version fails the item (delete it from the registry to deploy any); with
    no registered version nothing is deployable, which fails too.

    Args:
        client: The tracking store and registry.

    Returns:
        The item, naming each offending version.
    """
    name = f"DP on with epsilon <= {MAX_EPSILON:g}"
    offending, checked, spent_all = [], 0, []
    for model in _paged(client.search_registered_models):
        quoted = model.name.replace("\\", "\\\\").replace("'", "\\'")
        for version in _paged(client.search_model_versions, filter_string=f"name = '{quoted}'"):
            checked += 1
            problem, spent = _version_dp_problem(client, version)
            if problem:
                offending.append(f"{model.name} v{version.version}: {problem}")
            elif spent is not None:
                spent_all.append(spent)
    if not checked:
        return CheckItem(name, "fail", "no registered model version in the registry: nothing is deployable")
    if offending:
        shown = offending[:20] + ([f"and {len(offending) - 20} more"] if len(offending) > 20 else [])
        return CheckItem(name, "fail", f"{len(offending)} of {checked} registered versions: " + "; ".join(shown))
    spent_text = f"; highest epsilon spent {max(spent_all):.3g}" if spent_all else ""
    return CheckItem(name, "pass", f"all {checked} registered versions trained with DP{spent_text}")


# --- dependencies ---------------------------------------------------------------------------------------
def installed_requirements(exclude: Sequence[str] = ("frugalml",)) -> list[str]:
    """Pins (``name==version``) of every distribution installed in this interpreter's environment.

    A local version label is dropped (``torch 2.13.0+cpu`` is audited as ``torch==2.13.0``: advisories are
    published for releases, and PyPI knows no ``+cpu`` release).

    Args:
        exclude: Distributions not to audit (the project itself is not on PyPI).

    Returns:
        Sorted pins.
    """
    from importlib.metadata import distributions

    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    skip = {canonicalize_name(name) for name in exclude}
    pins = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if not name or canonicalize_name(name) in skip:
            continue
        try:
            version = Version(dist.version).public
        except InvalidVersion:
            version = dist.version
        pins[canonicalize_name(name)] = f"{canonicalize_name(name)}=={version}"
    return sorted(pins.values())


def check_dependencies(
    root: Path,
    *,
    requirements: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
    timeout: float = 20,
) -> CheckItem:
    """pip-audit of the installed environment; unknown unless every package was audited.

    Runs ``pip-audit --requirement <pins> --no-deps --disable-pip`` on :func:`installed_requirements`.
    A package pip-audit skipped (not found on PyPI, or its advisory service not answering) was not audited:
    then the item is ``unknown``, never ``pass``, with the audited and skipped counts. Known vulnerabilities
    fail it.

    Args:
        root: Project root (unused; kept for the checklist's uniform signature).
        requirements: Pins to audit instead of the installed environment.
        env: Environment of the pip-audit process (default: this one's).
        cache_dir: pip-audit's HTTP cache (default: pip's).
        timeout: Seconds pip-audit waits for each answer of the advisory service.

    Returns:
        The item.
    """
    name = "dependency vulnerability scan"
    executable = shutil.which("pip-audit") or str(Path(sys.executable).with_name("pip-audit"))
    if not Path(executable).exists():
        return CheckItem(name, "unknown", "pip-audit is not installed: no package was audited")
    pins = list(installed_requirements() if requirements is None else requirements)
    if not pins:
        return CheckItem(name, "unknown", "no package to audit")
    with tempfile.TemporaryDirectory(prefix="frugalml-audit-") as scratch:
        listed = Path(scratch) / "requirements.txt"
        listed.write_text("\n".join(pins) + "\n", encoding="utf-8")
        command = [executable, "--requirement", str(listed), "--no-deps", "--disable-pip", "--format", "json",
                   "--progress-spinner", "off", "--timeout", str(int(timeout))]  # fmt: skip
        if cache_dir is not None:
            command += ["--cache-dir", str(cache_dir)]
        try:
            result = subprocess.run(  # noqa: S603
                command,
                capture_output=True,
                text=True,
                timeout=min(900, max(300, 2 * timeout * len(pins))),
                check=False,
                env=dict(os.environ if env is None else env),
            )
        except subprocess.TimeoutExpired:
            return CheckItem(name, "unknown", f"0 of {len(pins)} packages audited: pip-audit did not finish in time")
    try:
        report = json.loads(result.stdout)
        dependencies = report["dependencies"]
    except (json.JSONDecodeError, KeyError, TypeError):
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return CheckItem(
            name, "unknown", f"0 of {len(pins)} packages audited: the advisory service could not be reached ({reason})"
        )
    skipped = [d for d in dependencies if "skip_reason" in d]
    audited = [d for d in dependencies if "skip_reason" not in d]
    vulnerable = [
        f"{d['name']} {d['version']} ({', '.join(v['id'] for v in d['vulns'])})" for d in audited if d.get("vulns")
    ]
    counts = f"{len(audited)} of {len(pins)} packages audited, {len(skipped)} skipped"
    if skipped:
        reasons: dict[str, int] = {}
        for d in skipped:
            reason = d["skip_reason"].split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        names = [d["name"] for d in skipped[:10]] + (["..."] if len(skipped) > 10 else [])
        counts += f" ({'; '.join(f'{r}: {n}' for r, n in reasons.items())}: {names})"
    if vulnerable:
        return CheckItem(name, "fail", f"vulnerable: {vulnerable[:10]}; {counts}")
    if skipped or len(audited) < len(pins):
        return CheckItem(name, "unknown", f"{counts}; an unaudited dependency set is not reported as safe")
    return CheckItem(name, "pass", f"{counts}; no known vulnerability")


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
