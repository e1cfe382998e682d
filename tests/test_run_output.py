"""What a user sees when `kedro` runs from a terminal: a failed run says so once, its traceback uses the terminal's
width, and `kedro` itself sends no telemetry and leaves the tracked pyproject.toml alone.

Each test runs the real `kedro` command in a subprocess, in a throwaway project made like the repository
(``make_project`` copies ``conf/logging.yml`` and ``.telemetry`` with ``conf/base``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import SMALL, bad_soft_labels, make_project, train_only_project

pytestmark = pytest.mark.slow

KEDRO = str(Path(sys.executable).parent / "kedro")
CLOSED = "was closed because of an error in the pipeline"


def kedro(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run `kedro ARGS` in ``project`` as a user would (no telemetry switches unless given in ``env``)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    return subprocess.run([KEDRO, *args], cwd=project, env={**environ, **env}, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


@pytest.mark.parametrize("failure", ["in_a_node", "before_the_first_gate"])
def test_a_failed_run_reports_the_closed_run_once_and_the_traceback_at_terminal_width(
    tmp_path, corpus_path, sample_emails, failure
):
    if failure == "in_a_node":  # the gate's two nodes pass, then training refuses the soft labels
        params = {**SMALL, "train": {**SMALL["train"], "targets": "soft", "features": {"buckets": 4096}}}
        project, train = train_only_project(tmp_path, corpus_path, sample_emails, params)
        bad_soft_labels(train).to_parquet(project / "data" / "03_primary" / "train_clean.parquet")
        args, message = ("run", "--pipelines=train"), "SchemaError: soft labels in ['label_prob_0', 'label_prob_1']"
    else:  # the preflight refuses the fixed DP batch after ingest, before the e-mail gate
        params = {**SMALL, "ingest": {"sample": {"n": 120, "seed": 0}}, "train": {"batch_size": 256}}
        project = make_project(tmp_path, corpus_path, params)
        args, message = ("run",), "ParameterError: train.batch_size 256 is larger than the at most"
    done = kedro(project, *args, COLUMNS="200", KEDRO_DISABLE_TELEMETRY="true")
    out = done.stdout + done.stderr
    assert done.returncode != 0 and message in out
    assert out.count(CLOSED) == 1, out.count(CLOSED)  # not once per node the run had started
    error_line = next(line for line in out.splitlines() if message in line)
    assert len(error_line) > 100  # the error message is not cut at rich's default 100 (or 80) columns
    border = next(line for line in out.splitlines() if "Traceback (most recent call last)" in line)
    assert len(border) == 200  # the traceback panel spans the terminal (COLUMNS), not a fixed 100


def test_kedro_run_directly_sends_no_telemetry_and_leaves_pyproject_alone(tmp_path, corpus_path):
    project = make_project(tmp_path, corpus_path, SMALL)
    assert (project / ".telemetry").read_text() == (Path(__file__).parents[1] / ".telemetry").read_text()
    pyproject = (project / "pyproject.toml").read_bytes()
    attempts: list[bytes] = []
    proxy = socket.create_server(("127.0.0.1", 0))  # every HTTP(S) request of the subprocess goes through here

    def record() -> None:
        while True:
            try:
                connection, _ = proxy.accept()
            except OSError:
                return
            with connection:
                attempts.append(connection.recv(200))

    threading.Thread(target=record, daemon=True).start()
    address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    network = {"HTTPS_PROXY": address, "HTTP_PROXY": address, "https_proxy": address, "http_proxy": address,
               "NO_PROXY": "", "no_proxy": "", "XDG_CONFIG_HOME": str(tmp_path / "config")}  # fmt: skip
    try:
        done = kedro(project, "catalog", "describe-datasets", **network)  # a session: CLI and project hooks
        assert done.returncode == 0, done.stderr[-2000:]
        assert (project / "pyproject.toml").read_bytes() == pyproject  # no [tool.kedro_telemetry] project_id
        assert attempts == [] and not (tmp_path / "config" / "kedro").exists()  # no request, no user id
        assert "sending anonymous usage data" not in done.stdout + done.stderr

        (project / ".telemetry").unlink()  # control: without the file, the same command does try
        kedro(project, "catalog", "describe-datasets", **network)
        assert b"kedro_telemetry" in (project / "pyproject.toml").read_bytes()
        assert attempts and b"heapanalytics.com" in b"".join(attempts)
    finally:
        proxy.close()
