"""Baseline: frugalml's hashed n-gram bag vs scikit-learn TF-IDF(1-2 grams) + LogisticRegression(C=10).

Side by side in one process, on the full real corpus, on two splits:
  random    stratified 80/20 (seed 0); frugalml carves its early-stopping dev set out of the 80%
  temporal  train on the *-1 groups (2002), test on the *-2 groups (2003)
Timings are medians of ``--repeats`` runs. Last line: the JSON figures named by the foundation issue.

    python -m benchmarks.baseline [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from benchmarks._common import REPO, emit, load_corpus_emails, log_to_mlflow, machine, median_time
from frugalml.nodes.split import split_dataset, validate_text_dataset
from frugalml.nodes.train import train_text_classifier
from frugalml.params import load_project_parameters, validate_parameters

console = Console(stderr=True)


def sklearn_reference(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, Any]:
    """The reference of BENCHMARKS.md: TF-IDF word 1-2 grams, sublinear, min_df 2, LogisticRegression(C=10)."""

    def text(frame: pd.DataFrame) -> list[str]:
        return (frame["subject"] + "\n" + frame["body"]).tolist()

    def fit() -> tuple[TfidfVectorizer, LogisticRegression]:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        features = vectorizer.fit_transform(text(train))
        return vectorizer, LogisticRegression(C=10, max_iter=2000).fit(features, train["label"].astype(int))

    return fit, text


def run_split(emails: pd.DataFrame, strategy: str, repeats: int) -> dict[str, Any]:
    """Train and score both models on one split."""
    params = validate_parameters(load_project_parameters(REPO / "conf"))
    train_params = params.train.model_dump() | {"progress": False}
    train_params["privacy"]["enabled"] = False  # the default recipe without DP (benchmarks.privacy measures DP)
    validated, _ = validate_text_dataset(emails, params.data.model_dump())
    split = params.split.model_dump() | {"strategy": strategy, "gold_dev_size": 0}
    train, dev, _, test, _, _ = split_dataset(validated, split, params.data.model_dump(), params.seed)
    y_test = test["label"].astype(int).to_numpy()

    ours_s, (model, _, _) = median_time(
        lambda: train_text_classifier(train, dev, train_params, params.data.model_dump(), params.seed), repeats
    )
    infer_s, probabilities = median_time(lambda: model.predict_proba(test), repeats)
    predicted = probabilities.argmax(axis=1)

    fit, text = sklearn_reference(pd.concat([train, dev]), test)
    sk_s, (vectorizer, classifier) = median_time(fit, repeats)
    sk_predicted = classifier.predict(vectorizer.transform(text(test)))
    return {
        "rows_train": len(train) + len(dev),
        "rows_test": len(test),
        "acc": accuracy_score(y_test, predicted),
        "f1": f1_score(y_test, predicted),
        "sklearn_acc": accuracy_score(y_test, sk_predicted),
        "sklearn_f1": f1_score(y_test, sk_predicted),
        "train_s": ours_s,
        "sklearn_train_s": sk_s,
        "infer_emails_per_s": len(test) / infer_s,
    }


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1,500-message sample instead of the full corpus")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (median reported)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record the figures in mlruns/")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)
    emails = load_corpus_emails(1500 if args.quick else None)
    results = {strategy: run_split(emails, strategy, args.repeats) for strategy in ("random", "temporal")}

    table = Table(title=f"baseline on {len(emails)} e-mails ({'quick sample' if args.quick else 'full corpus'})")
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
        "quick": args.quick,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not args.no_mlflow:
        log_to_mlflow("baseline", figures)
    emit(figures)


if __name__ == "__main__":
    main()
