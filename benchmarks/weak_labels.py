"""Weak labelling: an end model trained without hand labels vs the same model trained on hand labels.

Full real corpus, random split (seed 0, the project's split parameters). The training rows' labels are
hidden from everything but the final comparison: the LFs, the label model and the end model see the
training rows as an unlabelled pool; only the 200-row gold dev set (``dev_gold``) is labelled, and it is
used to check LFs, set the class balance and early-stop both end models. Side by side in one run:

- label model (Snorkel LabelModel) vs majority vote, on the pool rows with at least one LF vote;
- end model (frugalml's n-gram bag) on soft weak labels, on confidence-filtered hard weak labels, and on
  the hand labels; TF-IDF + LogisticRegression on weak and hand labels (the issue's reference recipe);
- LF application speed: Snorkel's pandas applier, the vectorised applier, and Snorkel's Dask applier.

    python -m benchmarks.weak_labels [--quick | --smoke] [--no-mlflow]

The weak labels, splits and end models come from slices of the real pipelines (ingest, quality, split,
weak_label, train, evaluate: ``benchmarks._common``). Called directly, on purpose: the LF appliers (their speed
and agreement are the figures; the node reports neither) and majority vote over the same vote matrix (the
baseline the label model is compared with), and the reference ``TfidfLogisticRegression``.
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

from benchmarks._common import (
    emit,
    evaluate,
    load_corpus_emails,
    log_to_mlflow,
    machine,
    parameters,
    reference_text,
    run_slice,
    sample_size,
    split,
    train_model,
    validated_emails,
)
from frugalml.models.reference import TfidfLogisticRegression
from frugalml.nodes.lf_library import lf_view
from frugalml.nodes.weak_labels import apply_lfs, argmax_random_ties, create_lfs, majority_vote

console = Console(stderr=True)
#: the default recipe without DP (benchmarks.privacy measures DP)
NO_DP = {"train": {"privacy": {"enabled": False}, "progress": False}}
WEAK_OUTPUTS = ["weak_labels", "weak_abstained", "lf_summary", "weak_label_metrics"]


def _test_accuracy(model: Any, test: pd.DataFrame) -> float:
    return float(evaluate(model, test)["accuracy"])


def _apply_rate(
    pool: pd.DataFrame, context: pd.DataFrame, lfs: list, applier: str, text_columns: list[str]
) -> tuple[float, np.ndarray]:
    # the LF appliers timed in isolation on purpose: the figure is their speed, which the node does not report
    started = time.perf_counter()
    view = lf_view(pool, text_columns, context)
    matrix, _ = apply_lfs(view, lfs, cardinality=2, applier=applier, n_parallel=2)
    return len(pool) / (time.perf_counter() - started), matrix


def _reference_accuracy(train: pd.DataFrame, test: pd.DataFrame) -> float:
    model = TfidfLogisticRegression().fit(reference_text(train), train["label"].astype(int))
    return float(accuracy_score(test["label"].astype(int), model.predict(reference_text(test))))


def lf_figures(params: Any, pool: pd.DataFrame, dev_gold: pd.DataFrame, truth: np.ndarray) -> dict[str, Any]:
    """Appliers' speed and agreement, coverage and majority vote (the vote matrix, outside the node on purpose)."""
    lfs = create_lfs(params.weak_label.model_dump()["lfs"], params.data.label_names, columns=pool.columns)
    context = pd.concat([pool, dev_gold.drop(columns=["label"])], ignore_index=True)  # as the node counts senders
    rates = {
        name: _apply_rate(pool, context, lfs, name, params.data.text_columns)
        for name in ("pandas", "vectorized", "dask")
    }
    matrix = rates["vectorized"][1]
    covered = (matrix >= 0).any(axis=1)
    majority = argmax_random_ties(majority_vote(matrix, 2), params.seed)
    return {
        "n_lfs": len(lfs),
        "coverage": float(covered.mean()),
        "majority_vote_acc": float((majority[covered] == truth[covered]).mean()),
        "rates": {name: rate for name, (rate, _) in rates.items()},
        "appliers_identical": all(np.array_equal(matrix, r[1]) for r in rates.values()),
    }


def end_models(weak: pd.DataFrame, train: pd.DataFrame, dev_gold: pd.DataFrame, test: pd.DataFrame,
               min_confidence: float) -> dict[str, float]:  # fmt: skip
    """The train pipeline on weak labels (hard, soft, confident) and on hand labels; the reference on both."""
    soft = {"train": NO_DP["train"] | {"targets": "soft"}}
    confident = weak[weak["label_confidence"] >= min_confidence]
    return {
        "weak": _test_accuracy(train_model(weak, dev_gold, NO_DP), test),  # defaults: hard targets
        "soft": _test_accuracy(train_model(weak, dev_gold, soft), test),
        "filtered": _test_accuracy(train_model(confident, dev_gold, NO_DP), test),
        "filtered_rows": len(confident),
        "supervised": _test_accuracy(train_model(train, dev_gold, NO_DP), test),
        "sklearn_weak": _reference_accuracy(weak.assign(label=weak["label"].astype(int)), test),
        "sklearn_supervised": _reference_accuracy(train, test),
    }


def print_table(lf: dict[str, Any], label_model_acc: float, acc: dict[str, float], *, min_confidence: float,
                summary: pd.DataFrame, rows: tuple[int, int]) -> None:  # fmt: skip
    """The readable table (stderr)."""
    table = Table(title=f"weak labels: {rows[0]} pool rows, {lf['n_lfs']} LFs, test {rows[1]}")
    for column in ("what", "accuracy"):
        table.add_column(column)
    for name, value in (
        ("label model (covered pool rows)", label_model_acc),
        ("majority vote (covered pool rows)", lf["majority_vote_acc"]),
        ("end model, weak labels (defaults: hard targets)", acc["weak"]),
        ("end model, soft weak labels", acc["soft"]),
        (f"end model, weak labels with confidence >= {min_confidence} ({acc['filtered_rows']} rows)", acc["filtered"]),
        ("end model, hand labels", acc["supervised"]),
        ("TF-IDF+LR, weak labels", acc["sklearn_weak"]),
        ("TF-IDF+LR, hand labels", acc["sklearn_supervised"]),
    ):
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    console.print(summary[["lf", "coverage", "dev_accuracy", "loo_delta", "verdict"]].round(3).to_string())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1,500-message sample instead of the full corpus")
    parser.add_argument("--smoke", action="store_true", help="a small real sample, no MLflow")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record the figures in mlruns/")
    parser.add_argument("--min-confidence", type=float, default=0.9, help="confidence filter of the hard variant")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(0)
    params = parameters()
    emails = load_corpus_emails(sample_size(args))
    sets = split(validated_emails(emails))
    train, dev_gold, test = sets["train_labelled"], sets["dev_gold"], sets["test_gold"]
    truth = train["label"].astype(int).to_numpy()
    pool = train.assign(label=pd.NA)  # the hidden labels: used below only to score

    inputs = {"unlabelled_pool": pool, "dev_gold": dev_gold}
    out = run_slice("weak_label", inputs, WEAK_OUTPUTS, {"weak_label": {"progress": False}})
    weak, summary, metrics = out["weak_labels"], out["lf_summary"], out["weak_label_metrics"]
    lf = lf_figures(params, pool, dev_gold, truth)
    by_id = pd.Series(truth, index=train["email_id"].to_numpy())
    label_model_acc = float((weak["label"].astype(int).to_numpy() == by_id.loc[weak["email_id"]].to_numpy()).mean())
    acc = end_models(weak, train, dev_gold, test, args.min_confidence)
    print_table(lf, label_model_acc, acc, min_confidence=args.min_confidence, summary=summary,
                rows=(len(pool), len(test)))  # fmt: skip
    figures = {
        "n_lfs": lf["n_lfs"],
        "coverage": round(lf["coverage"], 4),
        "label_model_acc": round(label_model_acc, 4),
        "majority_vote_acc": round(lf["majority_vote_acc"], 4),
        "end_model_acc_weak": round(acc["weak"], 4),  # the project defaults (hard targets, no filter) count
        "end_model_acc_weak_soft": round(acc["soft"], 4),
        "end_model_acc_weak_filtered": round(acc["filtered"], 4),
        "end_model_acc_supervised": round(acc["supervised"], 4),
        "weak_over_supervised": round(acc["weak"] / acc["supervised"], 4),
        "sklearn_acc_weak": round(acc["sklearn_weak"], 4),
        "sklearn_acc_supervised": round(acc["sklearn_supervised"], 4),
        "apply_emails_per_s": round(lf["rates"]["vectorized"], 1),
        "apply_emails_per_s_pandas": round(lf["rates"]["pandas"], 1),
        "apply_emails_per_s_dask": round(lf["rates"]["dask"], 1),
        "appliers_identical": lf["appliers_identical"],
        "weak_rows": len(weak),
        "abstained": len(out["weak_abstained"]),
        "dev_label_model_acc": round(metrics["dev_label_model_accuracy"]["value"], 4),
        "pool_rows": len(pool),
        "quick": args.quick,
        "smoke": args.smoke,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not (args.no_mlflow or args.smoke):
        log_to_mlflow("weak_labels", figures)
    emit(figures)
    return figures


if __name__ == "__main__":
    main()
