"""Run ``python -m benchmarks.<name> --smoke`` as a user would: in a fresh copy of the repository, in a subprocess.

The copy holds the git-tracked files (plus files not yet committed that git does not ignore), never ``data/``
or ``mlruns/`` left by earlier runs, so a benchmark that reads an output of ``make run`` fails here. The real
corpus is found as in CI: ``../shared`` next to the copy is a link to this checkout's ``../shared``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def fresh_copy(tmp_path: Path) -> Path:
    """Copy the repository's tracked (and untracked, not ignored) files to ``tmp_path/repo``; link ``../shared``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    repo = tmp_path / "repo"
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            target = repo / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (tmp_path / "shared").symlink_to(SHARED.resolve(), target_is_directory=True)
    return repo


def run_benchmark_smoke(name: str, tmp_path: Path, *args: str, timeout: int = 300) -> dict[str, Any]:
    """``python -m benchmarks.<name> --smoke`` in a fresh copy; the figures of its last line (JSON)."""
    repo = fresh_copy(tmp_path)
    env = os.environ | {"PYTHONPATH": str(repo), "KEDRO_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    process = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--smoke", *args],
        cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert process.returncode == 0, f"benchmarks.{name} --smoke failed:\n{process.stderr[-6000:]}"
    written = [p for p in (repo / "data").rglob("*") if p.is_file() and p.name != ".gitkeep"]
    assert not written, f"benchmarks.{name} --smoke wrote pipeline data: {written[:5]}"  # slices stay in memory
    lines = process.stdout.strip().splitlines()
    assert lines, f"benchmarks.{name} --smoke printed nothing on stdout:\n{process.stderr[-3000:]}"
    figures = json.loads(lines[-1])
    assert figures["smoke"] is True, figures
    assert figures["seconds"] > 0 and figures["machine"]["cpus"] >= 1, figures
    return figures


def is_fraction(value: Any) -> bool:
    """A share, an accuracy or an AUC: a number in [0, 1]."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0
