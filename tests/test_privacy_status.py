"""`frugalml privacy status --dataset`: a table's ledger key and budget before a run, in a real project."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from frugalml.commands import main
from frugalml.governance.audit import AuditLog
from frugalml.governance.context import local_key
from frugalml.governance.rbac import load_governance
from tests.helpers import SMALL, make_project, run, train_only_project

pytestmark = pytest.mark.slow

#: a DP training on the real e-mails fast enough for a CLI test (DP on: the run spends budget)
DP_TRAIN = {**SMALL, "train": {**SMALL["train"], "epochs": 2, "features": {"buckets": 4096}}}


def _status(capsys, dataset: str) -> tuple[int, str]:
    code = main(["privacy", "status", "--dataset", dataset])
    return code, " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal width


def test_dataset_key_and_budget_before_and_after_a_dp_training(
    tmp_path, corpus_path, sample_emails, monkeypatch, capsys
):
    project, train = train_only_project(tmp_path, corpus_path, sample_emails, DP_TRAIN)
    monkeypatch.chdir(project)
    table = "data/03_primary/train_clean.parquet"
    code, before = _status(capsys, table)
    assert code == 0 and f"{len(train)} rows of {table}" in before
    budget = load_governance(project / "conf", "local").privacy.default_budget_epsilon
    keys = re.findall(r"\brows:[0-9a-f]+\b", before)  # (log lines of earlier sessions may share stdout)
    assert keys and len(set(keys)) == 1, before
    key = keys[0]
    assert len(key) == len("rows:") + 16
    assert f"spent 0.000 of {budget:.3f} (remaining {budget:.3f}" in before and f"--detail dataset={key}" in before

    run(project, "train", monkeypatch)
    capsys.readouterr()  # the run's own log
    log = AuditLog(project / "data" / "audit" / "audit.jsonl", signer=local_key(project, create=False))
    (spend,) = [r["data"] for r in log.records() if r["kind"] == "privacy.spend"]
    assert spend["dataset"] == key  # the key the ledger charged is the one told before the run
    code, after = _status(capsys, table)
    assert code == 0 and f"{key} " in after
    spent = float(spend["epsilon"])
    assert (
        f"spent {spent:.3f} of {budget:.3f} (remaining {budget - spent:.3f}" in after
        and f"{len(train)} rows spent" in after
    )
    # the same rows by their catalog name, and a subset of them: its own key, charged by the rows it shares
    code, by_name = _status(capsys, "train_clean")
    assert code == 0 and f"{key} {len(train)} rows of catalog entry train_clean" in by_name
    subset = tmp_path / "subset.csv"
    train.iloc[:50].to_csv(subset, index=False)
    code, part = _status(capsys, str(subset))
    assert code == 0 and f"rows of {subset}" in part and key not in part and f"spent {spent:.3f}" in part


@pytest.fixture
def fresh_project(tmp_path, corpus_path, monkeypatch):
    """A project without any run (no ledger spends), the working directory."""
    project = make_project(tmp_path, corpus_path, SMALL)
    monkeypatch.chdir(project)
    return project


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent.csv", "absent.csv: no such file"),
        (lambda d: _write(d / "junk.parquet", b"not a parquet file"), "cannot be read as a .parquet table"),
        (lambda d: _write(d / "notes.txt", b"hello"), "not a table frugalml reads"),
        (lambda d: "no_such_table", "no such file, and no catalog entry of that name"),
        (lambda d: _frame(d / "numbers.csv", pd.DataFrame({"x": [1, 2]})), "cannot identify the training rows"),
        (lambda d: _frame(d / "empty.csv", pd.DataFrame({"body": []})), "the table has no rows"),
        (lambda d: "test_gold", "its file data/03_primary/test_gold.parquet does not exist yet"),
    ],
)
def test_bad_datasets_are_refused_with_what_is_wrong(fresh_project, tmp_path, capsys, make, message):
    dataset = str(make(tmp_path))
    code, out = _status(capsys, dataset)
    assert code == 2 and f"refused: --dataset {dataset}: " in out and message in out, out


def _write(path, content: bytes):
    path.write_bytes(content)
    return path


def _frame(path, frame: pd.DataFrame):
    frame.to_csv(path, index=False)
    return path
