"""Dependencies: pip-audit of the installed environment, ``unknown`` unless every package was audited."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from frugalml.governance.checklist.items import CheckItem


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
