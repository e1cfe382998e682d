"""Quality gates and drift on the real corpus, and messy inputs before the gate.

(a) the full parsed corpus through the `emails` suite (must pass); (b) 12 corrupted copies, one per bad-input
class (benchmarks/corruptions.py), each must be stopped or have exactly its corrupted rows quarantined, with no
row lost; (c) drift of the 2003 batch (`*-2` groups) against the 2002 reference (`*-1`), must be flagged;
(d) drift of a random held-out 20% of the 2002 era against the other 80%, must not be flagged; (e) 11 messy
inputs of issue 14 built from real messages (archives with stray members or unknown folders, header injection,
binary/NUL bodies, and user tables: missing text column, ragged CSV, wrong encoding, duplicates, one class, an
unlabelled row, binary cells), each must be stopped with a named error or handled with every member/row
parsed, validated or quarantined: `ingest_rows_unaccounted` (members/rows in minus parsed minus quarantined)
must be 0.

    python -m benchmarks.quality [--quick | --smoke] [--repeats 3]

`--smoke` (300 messages, one timing, no MLflow; about 30 s) is what the test suite runs.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from benchmarks._common import (
    REPO,
    corpus_archive,
    emit,
    log_to_mlflow,
    machine,
    median_time,
    parameters,
    run_slice,
)
from benchmarks.corruptions import ARCHIVE_INPUTS, CORRUPTIONS, TABLE_INPUTS, TABLE_SCHEMA, MessyInput
from frugalml.datasets.corpus import TextTableDataset, read_archive, sha256_file
from frugalml.errors import FrugalMLError
from frugalml.nodes.drift import detect_drift
from frugalml.nodes.ingest import parse_emails
from frugalml.nodes.quality import validate_with_suite

console = Console(stderr=True)
SUITES = REPO / "conf" / "base" / "expectations"
WEAK = {"progress": False, "leave_one_out": False, "label_model_epochs": 100}


def load_raw_corpus() -> pd.DataFrame:
    """The raw corpus, from the catalog's ``spam_corpus_archive`` sources (``frugalml.config``)."""
    return corpus_archive()


#: what `run_table` returns (the keys the messy inputs' checks read) <- the modelling pipeline's datasets
TABLE_OUTPUTS = {
    "frame": "emails_table_checked",
    "gate_quarantine": "emails_gate_quarantine",
    "validated": "emails_validated",
    "validation_quarantine": "validation_quarantine",
    "train": "train_labelled",
    "dev": "dev_labelled",
    "dev_gold": "dev_gold",
    "test": "test_gold",
    "pool": "unlabelled_pool",
    "weak_labels": "weak_labels",
    "weak_abstained": "weak_abstained",
}


def run_table(case: MessyInput, quality: dict[str, Any]) -> dict[str, Any]:
    """A user's table through the `modelling` pipeline up to weak labelling (a slice: `emails` -> weak labels)."""
    frame = TextTableDataset(filepath=str(case.data), load_args=case.load_args).load()
    suite = yaml.safe_load((SUITES / "text_table.yml").read_text())
    params = {"data": TABLE_SCHEMA, "quality": quality, "split": {"gold_dev_size": 20}, "weak_label": WEAK}
    out = run_slice("modelling", {"emails": frame, "emails_suite": suite}, list(TABLE_OUTPUTS.values()), params)
    return {key: out[name] for key, name in TABLE_OUTPUTS.items()}


def run_messy(case: MessyInput, quality: dict[str, Any]) -> tuple[str, int, bool, str]:
    """Run one messy input: its outcome, unaccounted rows, whether it was handled as expected, and a note."""
    try:
        if case.stage == "archive":
            raw = read_archive(case.data, layout="stdlib", archive_sha256=sha256_file(case.data))
            emails, quarantine, _ = parse_emails(raw, {})
            out = {"emails": emails, "quarantine": quarantine}
            members = case.rows_in  # written members, less the packaging files the layout declares
            unaccounted = members - len(emails) - len(quarantine)
        elif case.stage == "raw":
            emails, quarantine, _ = parse_emails(case.data, {})
            out = {"emails": emails, "quarantine": quarantine}
            unaccounted = case.rows_in - len(emails) - len(quarantine)
        else:
            out = run_table(case, quality)
            kept = len(out["validated"]) + len(out["gate_quarantine"]) + len(out["validation_quarantine"])
            pool_out = len(out["weak_labels"]) + len(out["weak_abstained"])
            unaccounted = case.rows_in - kept + (len(out["pool"]) - pool_out)
    except FrugalMLError as error:
        message = str(error)
        ok = case.expected == "stop" and bool(re.search(case.match or "", message, re.DOTALL))
        return "stop", 0, ok, type(error).__name__
    checked = case.check(out) if case.check is not None else True
    ok = case.expected == "handled" and unaccounted == 0 and checked
    return "handled", int(unaccounted), ok, "" if checked else "check failed"


def corruption_rows(table: Table, emails: pd.DataFrame, suite: dict, quality: dict, data: dict) -> tuple[int, int]:
    """The emails gate on each corrupted copy (the gate's nodes alone, on purpose: its outcome is the figure)."""
    correct, rows_lost = 0, 0
    for name, make in CORRUPTIONS.items():
        corrupted, expected, corrupted_ids = make(emails, np.random.default_rng(0))
        passed, quarantine, report, _, _ = validate_with_suite(corrupted, suite, quality, data)
        lost = len(corrupted) - len(passed) - len(quarantine)
        rows_lost += lost
        outcome = "quarantine" if report["success"] else "stop"
        ok = outcome == expected and (expected == "stop" or set(quarantine["email_id"]) == corrupted_ids)
        correct += ok
        table.add_row(name, expected, outcome, str(len(quarantine)), str(lost), str(ok))

    return correct, rows_lost


def drift_signals(emails: pd.DataFrame, drift: dict, data: dict) -> tuple[dict, dict]:
    """Drift of 2003 against 2002 and of a random 20% of 2002 against the rest (the drift node on chosen batches)."""
    era1 = emails[emails["group"].str.endswith("-1")]
    era2 = emails[emails["group"].str.endswith("-2")]
    temporal, _, _, _ = detect_drift(era1, era2, drift, data)
    held_out = np.random.default_rng(0).permutation(len(era1)) < len(era1) // 5
    random, _, _, _ = detect_drift(era1[~held_out], era1[held_out], drift, data)
    drift_table = Table(title="drift signals (effect sizes; * above threshold)")
    drift_table.add_column("signal")
    drift_table.add_column("2003 vs 2002")
    drift_table.add_column("random held-out, 2002")
    drift_table.add_column("threshold")
    for signal, value in temporal["signals"].items():
        other = random["signals"].get(signal, float("nan"))
        mark = "*" if signal in temporal["drifted"] else ""
        mark_random = "*" if signal in random["drifted"] else ""
        drift_table.add_row(signal, f"{value:.4f}{mark}", f"{other:.4f}{mark_random}",
                            f"{temporal['thresholds'][signal]:.3f}")  # fmt: skip
    console.print(drift_table)

    return temporal, random


def messy_inputs(raw_corpus: pd.DataFrame, emails: pd.DataFrame, quality: dict) -> tuple[int, int, dict]:
    """Each messy input of issue 14: stopped with a named error or handled, every row accounted for."""
    messy_table = Table(title="messy inputs before the gate (issue 14): stopped with a named error, or handled")
    for column in ("input", "expected", "outcome", "rows in", "unaccounted", "correct", "note"):
        messy_table.add_column(column)
    messy_ok, unaccounted_total = 0, 0
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="frugalml-messy-") as workdir:
        cases = {name: make(raw_corpus, rng, Path(workdir)) for name, make in ARCHIVE_INPUTS.items()}
        cases |= {name: make(emails, rng, Path(workdir)) for name, make in TABLE_INPUTS.items()}
        for name, case in cases.items():
            outcome, unaccounted, ok, note = run_messy(case, quality)
            messy_ok += ok
            unaccounted_total += unaccounted
            messy_table.add_row(name, case.expected, outcome, str(case.rows_in), str(unaccounted), str(ok), note)
    console.print(messy_table)

    return messy_ok, unaccounted_total, cases


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the tables and the JSON line.

    Args:
        argv: Command-line arguments (default: ``sys.argv``).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1,500-message sample instead of the full corpus")
    parser.add_argument("--smoke", action="store_true", help="300 messages, one timing, no MLflow (tests)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats of the full-corpus gate (median)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record the figures in mlruns/")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats, args.no_mlflow = 1, True
    started = time.perf_counter()
    params = parameters()
    quality, drift, data = params.quality.model_dump(), params.drift.model_dump(), params.data.model_dump()
    suite = yaml.safe_load(Path(SUITES / "emails.yml").read_text())
    raw_corpus = load_raw_corpus()
    sample = 300 if args.smoke else 1500 if args.quick else None
    ingest = {"ingest": {"sample": {"n": sample, "seed": 0}}} if sample else None
    emails = run_slice("ingest", {"spam_corpus_archive": raw_corpus}, ["emails"], ingest)["emails"]  # the pipeline

    cold_started = time.perf_counter()
    _, _, clean_report, _, _ = validate_with_suite(emails, suite, quality, data)  # includes importing GX
    cold_seconds = time.perf_counter() - cold_started
    gate_seconds, _ = median_time(lambda: validate_with_suite(emails, suite, quality, data), args.repeats)

    table = Table(title=f"quality gate on {len(emails)} e-mails and 12 corrupted copies")
    for column in ("batch", "expected", "outcome", "quarantined", "rows lost", "correct"):
        table.add_column(column)
    table.add_row("clean corpus", "pass", "pass" if clean_report["success"] else "STOP",
                  str(clean_report["rows_quarantined"]), "0", str(clean_report["success"]))  # fmt: skip
    correct, rows_lost = corruption_rows(table, emails, suite, quality, data)
    console.print(table)
    temporal, random = drift_signals(emails, drift, data)
    messy_ok, unaccounted_total, cases = messy_inputs(raw_corpus, emails, quality)

    figures = {
        "clean_passed": bool(clean_report["success"]),
        "corrupt_blocked": int(correct),
        "corrupt_total": len(CORRUPTIONS),
        "rows_lost": int(rows_lost),
        "messy_inputs_handled": f"{messy_ok}/{len(cases)}",
        "ingest_rows_unaccounted": int(unaccounted_total),
        "drift_temporal_flagged": bool(temporal["retrain_recommended"]),
        "drift_temporal_signals": temporal["drifted"],
        "drift_random_flagged": bool(random["retrain_recommended"]),
        "gate_seconds_full_corpus": round(gate_seconds, 3),
        "gate_seconds_first_call_with_gx_import": round(cold_seconds, 3),
        "emails": len(emails),
        "quick": args.quick,
        "smoke": args.smoke,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not args.no_mlflow:
        log_to_mlflow("quality", figures)
    emit(figures)
    return figures


if __name__ == "__main__":
    main()
