"""Secrets: none in any tracked file beyond the audited false positives of ``.secrets.baseline``, none in any
MLflow parameter; both scanned by detect-secrets with settings fixed in code (:func:`secret_scan_config`)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from frugalml.governance.checklist.items import CheckItem

SECRET_PARAM_NAMES = re.compile(
    r"(?i)(^|[._-])(password|passwd|secret|secret[_-]?key|api[_-]?key|access[_-]?token|auth[_-]?token|token|"
    r"watermark[_-]?key|private[_-]?key)$"
)
#: The committed detect-secrets baseline, at the repository root.
SECRETS_BASELINE = ".secrets.baseline"
#: detect-secrets plugins that flag any high-entropy string: right for source files, wrong for MLflow
#: parameters, which legitimately carry digests (git commits, content hashes).
_ENTROPY_PLUGINS = ("Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector")
#: Honouring inline ``pragma: allowlist secret`` comments would let a line hide itself from review: every
#: false positive must be audited in the baseline instead.
_INLINE_ALLOWLIST_FILTER = "detect_secrets.filters.allowlist.is_line_allowlisted"


def secret_scan_config() -> dict[str, Any]:
    """The detect-secrets settings of the checklist, fixed in code so a baseline cannot weaken them.

    Every plugin detect-secrets ships, at its default limits; its default heuristic filters; no network
    verification of found secrets (nothing found is ever sent anywhere); inline allowlist comments not honoured.

    Returns:
        A ``plugins_used``/``filters_used`` mapping, as in a baseline file.
    """
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import BasePlugin
    from detect_secrets.settings import Settings

    plugin_classes: Mapping[str, type[BasePlugin]] = get_mapping_from_secret_type_to_class()
    plugins = sorted(plugin.__name__ for plugin in plugin_classes.values())
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
