"""Weak labelling: an end model trained without hand labels vs the same model trained on hand labels.

Full real corpus, random split (seed 0, the project's split parameters). The training rows' labels are
hidden from everything but the final comparison: the LFs, the label model and the end model see the
training rows as an unlabelled pool; only the 200-row gold dev set (``dev_gold``) is labelled, and it is
used to check LFs, set the class balance and early-stop both end models. Side by side in one run:

- label model (Snorkel LabelModel) vs majority vote, on the pool rows with at least one LF vote;
- end model (frugalml's n-gram bag) on soft weak labels, on confidence-filtered hard weak labels, and on
  the hand labels; TF-IDF + LogisticRegression on weak and hand labels (the issue's reference recipe);
- LF application speed: Snorkel's pandas applier, the vectorised applier, and Snorkel's Dask applier.

    python -m benchmarks.weak_labels [--quick] [--no-mlflow]
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
from sklearn.metrics import accuracy_score

from benchmarks._common import REPO, emit, load_corpus_emails, log_to_mlflow, machine
from benchmarks.baseline import sklearn_reference
from frugalml.nodes.lf_library import lf_view
from frugalml.nodes.split import split_dataset, validate_text_dataset
from frugalml.nodes.train import train_text_classifier
from frugalml.nodes.weak_labels import apply_lfs, argmax_random_ties, create_lfs, majority_vote, weak_label
from frugalml.params import load_project_parameters, validate_parameters

console = Console(stderr=True)


def _test_accuracy(model: Any, test: pd.DataFrame) -> float:
    return float(accuracy_score(test["label"].astype(int), model.predict_proba(test).argmax(axis=1)))


def _apply_rate(
    pool: pd.DataFrame, context: pd.DataFrame, lfs: list, applier: str, text_columns: list[str]
) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    view = lf_view(pool, text_columns, context)
    matrix, _ = apply_lfs(view, lfs, cardinality=2, applier=applier, n_parallel=2)
    return len(pool) / (time.perf_counter() - started), matrix


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1,500-message sample instead of the full corpus")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record the figures in mlruns/")
    parser.add_argument("--min-confidence", type=float, default=0.9, help="confidence filter of the hard variant")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)
    params = validate_parameters(load_project_parameters(REPO / "conf"))
    data, seed = params.data.model_dump(), params.seed
    emails = load_corpus_emails(1500 if args.quick else None)
    validated, _ = validate_text_dataset(emails, data)
    train, _, dev_gold, test, _, _ = split_dataset(validated, params.split.model_dump(), data, seed)
    truth = train["label"].astype(int).to_numpy()
    pool = train.assign(label=pd.NA)  # the hidden labels: used below only to score

    weak_params = params.weak_label.model_dump() | {"progress": False}
    weak, abstained, summary, _, metrics = weak_label(pool, dev_gold, weak_params, data, seed)
    lfs = create_lfs(weak_params["lfs"], params.data.label_names, columns=pool.columns)
    context = pd.concat([pool, dev_gold.drop(columns=["label"])], ignore_index=True)  # as the node counts senders
    rates = {
        name: _apply_rate(pool, context, lfs, name, params.data.text_columns)
        for name in ("pandas", "vectorized", "dask")
    }
    matrix = rates["vectorized"][1]
    identical = all(np.array_equal(matrix, r[1]) for r in rates.values())
    covered = (matrix >= 0).any(axis=1)
    by_id = pd.Series(truth, index=train["email_id"].to_numpy())
    weak_truth = by_id.loc[weak["email_id"]].to_numpy()
    label_model_acc = float((weak["label"].astype(int).to_numpy() == weak_truth).mean())
    majority = argmax_random_ties(majority_vote(matrix, 2), seed)
    majority_acc = float((majority[covered] == truth[covered]).mean())

    train_params = params.train.model_dump() | {"progress": False}
    train_params["privacy"]["enabled"] = False  # the default recipe without DP (benchmarks.privacy measures DP)
    weak_model, _, _ = train_text_classifier(weak, dev_gold, train_params, data, seed)  # defaults: hard targets
    soft_model, _, _ = train_text_classifier(weak, dev_gold, train_params | {"targets": "soft"}, data, seed)
    confident = weak[weak["label_confidence"] >= args.min_confidence]
    filtered_model, _, _ = train_text_classifier(confident, dev_gold, train_params, data, seed)
    supervised_model, _, _ = train_text_classifier(train, dev_gold, train_params, data, seed)
    acc_weak = _test_accuracy(weak_model, test)
    acc_soft, acc_filtered = _test_accuracy(soft_model, test), _test_accuracy(filtered_model, test)
    acc_supervised = _test_accuracy(supervised_model, test)
    fit, text = sklearn_reference(weak.assign(label=weak["label"].astype(int)), test)
    vectorizer, classifier = fit()
    sk_weak = float(accuracy_score(test["label"].astype(int), classifier.predict(vectorizer.transform(text(test)))))
    fit, text = sklearn_reference(train, test)
    vectorizer, classifier = fit()
    y_test = test["label"].astype(int)
    sk_supervised = float(accuracy_score(y_test, classifier.predict(vectorizer.transform(text(test)))))
    end_model_acc_weak = acc_weak  # the project defaults (hard targets, no confidence filter) are what counts

    table = Table(title=f"weak labels: {len(pool)} pool rows, {len(lfs)} LFs, test {len(test)}")
    for column in ("what", "accuracy"):
        table.add_column(column)
    for name, value in (
        ("label model (covered pool rows)", label_model_acc),
        ("majority vote (covered pool rows)", majority_acc),
        ("end model, weak labels (defaults: hard targets)", acc_weak),
        ("end model, soft weak labels", acc_soft),
        (f"end model, weak labels with confidence >= {args.min_confidence} ({len(confident)} rows)", acc_filtered),
        ("end model, hand labels", acc_supervised),
        ("TF-IDF+LR, weak labels", sk_weak),
        ("TF-IDF+LR, hand labels", sk_supervised),
    ):
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    console.print(summary[["lf", "coverage", "dev_accuracy", "loo_delta", "verdict"]].round(3).to_string())
    figures = {
        "n_lfs": len(lfs),
        "coverage": round(float(covered.mean()), 4),
        "label_model_acc": round(label_model_acc, 4),
        "majority_vote_acc": round(majority_acc, 4),
        "end_model_acc_weak": round(end_model_acc_weak, 4),
        "end_model_acc_weak_soft": round(acc_soft, 4),
        "end_model_acc_weak_filtered": round(acc_filtered, 4),
        "end_model_acc_supervised": round(acc_supervised, 4),
        "weak_over_supervised": round(end_model_acc_weak / acc_supervised, 4),
        "sklearn_acc_weak": round(sk_weak, 4),
        "sklearn_acc_supervised": round(sk_supervised, 4),
        "apply_emails_per_s": round(rates["vectorized"][0], 1),
        "apply_emails_per_s_pandas": round(rates["pandas"][0], 1),
        "apply_emails_per_s_dask": round(rates["dask"][0], 1),
        "appliers_identical": identical,
        "abstained": len(abstained),
        "dev_label_model_acc": round(metrics["dev_label_model_accuracy"]["value"], 4),
        "pool_rows": len(pool),
        "quick": args.quick,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not args.no_mlflow:
        log_to_mlflow("weak_labels", figures)
    emit(figures)


if __name__ == "__main__":
    main()
