"""Baseline: frugalml's hashed n-gram bag vs scikit-learn TF-IDF(1-2 grams) + LogisticRegression(C=10).

Side by side in one process, on the full real corpus, on two splits:
  random    stratified 80/20 (seed 0); frugalml carves its early-stopping dev set out of the 80%
  temporal  train on the *-1 groups (2002), test on the *-2 groups (2003)
Timings are medians of ``--repeats`` runs. Last line: the JSON figures named by the foundation issue.

    python -m benchmarks.baseline [--quick | --smoke] [--repeats 3] [--no-mlflow]

frugalml's side runs slices of the real pipelines (ingest, quality, split, train, evaluate: ``benchmarks._common``).
Called directly, on purpose: the reference (``frugalml.models.reference.TfidfLogisticRegression``) and the model's
``predict_proba`` for the inference speed (the evaluate node adds a report and plots to it).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table
from sklearn.metrics import accuracy_score, f1_score

from benchmarks._common import (
    emit,
    evaluate,
    load_corpus_emails,
    log_to_mlflow,
    machine,
    median_time,
    reference_text,
    run_slice,
    sample_size,
    split,
    train_model,
    validated_emails,
)
from frugalml.models.reference import TfidfLogisticRegression

console = Console(stderr=True)
#: the default recipe without DP (benchmarks.privacy measures DP)
NO_DP = {"train": {"privacy": {"enabled": False}, "progress": False}}


def run_split(validated: pd.DataFrame, strategy: str, repeats: int) -> dict[str, Any]:
    """Train and score both models on one split: the split, train and evaluate pipelines vs the reference."""
    sets = split(validated, {"split": {"strategy": strategy, "gold_dev_size": 0}})
    train, dev, test = sets["train_labelled"], sets["dev_labelled"], sets["test_gold"]
    y_test = test["label"].astype(int).to_numpy()
    # the training-set gate once, untimed; `train_s` times the train node from the gate's output, as before
    checked = run_slice("train", {"train_clean": train}, ["train_set_checked"], NO_DP)["train_set_checked"]
    ours_s, model = median_time(lambda: train_model(checked, dev, NO_DP, gate=False), repeats)
    report = evaluate(model, test)
    # inference speed: the model's own predict_proba in isolation (the evaluate node adds plots and a report)
    infer_s, _ = median_time(lambda: model.predict_proba(test), repeats)

    reference_train = pd.concat([train, dev])  # scikit-learn has no early stopping: it fits on all of the 80%
    sk_s, reference = median_time(
        lambda: TfidfLogisticRegression().fit(reference_text(reference_train), reference_train["label"].astype(int)),
        repeats,
    )
    sk_predicted = reference.predict(reference_text(test))
    return {
        "rows_train": len(train) + len(dev),
        "rows_test": len(test),
        "acc": report["accuracy"],
        "f1": report["f1"],
        "sklearn_acc": accuracy_score(y_test, sk_predicted),
        "sklearn_f1": f1_score(y_test, sk_predicted),
        "train_s": ours_s,
        "sklearn_train_s": sk_s,
        "infer_emails_per_s": len(test) / infer_s,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1,500-message sample instead of the full corpus")
    parser.add_argument("--smoke", action="store_true", help="a small real sample, one timing, no MLflow")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (median reported)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record the figures in mlruns/")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(0)
    emails = load_corpus_emails(sample_size(args))
    validated = validated_emails(emails)
    repeats = 1 if args.smoke else args.repeats
    results = {strategy: run_split(validated, strategy, repeats) for strategy in ("random", "temporal")}

    kind = "smoke sample" if args.smoke else "quick sample" if args.quick else "full corpus"
    table = Table(title=f"baseline on {len(emails)} e-mails ({kind})")
    for column in ("split", "model", "accuracy", "spam F1", "train s (median)"):
        table.add_column(column)
    for strategy, r in results.items():
        table.add_row(strategy, "frugalml ngram-bag", f"{r['acc']:.4f}", f"{r['f1']:.4f}", f"{r['train_s']:.2f}")
        table.add_row("", "sklearn tfidf+LR", f"{r['sklearn_acc']:.4f}", f"{r['sklearn_f1']:.4f}",
                      f"{r['sklearn_train_s']:.2f}")  # fmt: skip
    console.print(table)
    random, temporal = results["random"], results["temporal"]
    figures = {
        "random_acc": round(random["acc"], 4),
        "random_f1": round(random["f1"], 4),
        "random_sklearn_acc": round(random["sklearn_acc"], 4),
        "random_sklearn_f1": round(random["sklearn_f1"], 4),
        "temporal_acc": round(temporal["acc"], 4),
        "temporal_f1": round(temporal["f1"], 4),
        "temporal_sklearn_acc": round(temporal["sklearn_acc"], 4),
        "train_s": round(random["train_s"], 3),
        "sklearn_train_s": round(random["sklearn_train_s"], 3),
        "train_ratio": round(random["train_s"] / random["sklearn_train_s"], 3),
        "infer_emails_per_s": round(random["infer_emails_per_s"], 1),
        "emails": len(emails),
        "rows_train": random["rows_train"],
        "rows_test": random["rows_test"],
        "quick": args.quick,
        "smoke": args.smoke,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not (args.no_mlflow or args.smoke):
        log_to_mlflow("baseline", figures)
    emit(figures)
    return figures


if __name__ == "__main__":
    main()
