"""Quality gates and drift on the real corpus.

(a) the full parsed corpus through the `emails` suite (must pass); (b) 12 corrupted copies, one per bad-input
class (benchmarks/corruptions.py), each must be stopped or have exactly its corrupted rows quarantined, with no
row lost; (c) drift of the 2003 batch (`*-2` groups) against the 2002 reference (`*-1`), must be flagged;
(d) drift of a random held-out 20% of the 2002 era against the other 80%, must not be flagged.

    python -m benchmarks.quality [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from benchmarks._common import REPO, emit, load_corpus_emails, log_to_mlflow, machine, median_time
from benchmarks.corruptions import CORRUPTIONS
from frugalml.nodes.drift import detect_drift
from frugalml.nodes.quality import validate_with_suite
from frugalml.params import load_project_parameters, validate_parameters

console = Console(stderr=True)


def main() -> None:
    """Run the benchmark; print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1,500-message sample instead of the full corpus")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats of the full-corpus gate (median)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record the figures in mlruns/")
    args = parser.parse_args()
    started = time.perf_counter()
    params = validate_parameters(load_project_parameters(REPO / "conf"))
    quality, drift, data = params.quality.model_dump(), params.drift.model_dump(), params.data.model_dump()
    suite = yaml.safe_load(Path(REPO / "conf" / "base" / "expectations" / "emails.yml").read_text())
    emails = load_corpus_emails(1500 if args.quick else None)

    cold_started = time.perf_counter()
    _, _, clean_report, _, _ = validate_with_suite(emails, suite, quality, data)  # includes importing GX
    cold_seconds = time.perf_counter() - cold_started
    gate_seconds, _ = median_time(lambda: validate_with_suite(emails, suite, quality, data), args.repeats)

    table = Table(title=f"quality gate on {len(emails)} e-mails and 12 corrupted copies")
    for column in ("batch", "expected", "outcome", "quarantined", "rows lost", "correct"):
        table.add_column(column)
    table.add_row("clean corpus", "pass", "pass" if clean_report["success"] else "STOP",
                  str(clean_report["rows_quarantined"]), "0", str(clean_report["success"]))  # fmt: skip
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
    console.print(table)

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

    figures = {
        "clean_passed": bool(clean_report["success"]),
        "corrupt_blocked": int(correct),
        "corrupt_total": len(CORRUPTIONS),
        "rows_lost": int(rows_lost),
        "drift_temporal_flagged": bool(temporal["retrain_recommended"]),
        "drift_temporal_signals": temporal["drifted"],
        "drift_random_flagged": bool(random["retrain_recommended"]),
        "gate_seconds_full_corpus": round(gate_seconds, 3),
        "gate_seconds_first_call_with_gx_import": round(cold_seconds, 3),
        "emails": len(emails),
        "quick": args.quick,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not args.no_mlflow:
        log_to_mlflow("quality", figures)
    emit(figures)


if __name__ == "__main__":
    main()
