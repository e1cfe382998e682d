"""Label cleaning: injected label noise, found and fixed by the clean stage, against the reference recipe.

Full real corpus, random stratified split (conf/base, seed 0; no gold dev set). Noise is injected into the
training labels only (``train_labelled``; dev and test keep their labels), seeded: symmetric 10/20/30% (that
share of each class flipped) and asymmetric 20% (that share of ham flipped to spam, nothing else). For each:

  ours       frugalml's model (the train node without DP; by default with the fold models' non-private recipe,
             ``clean.fold_train``; ``--end-model train``: the released recipe) trained on clean, noisy and
             cleaned labels; cleaning
             is the clean stage's library with conf/base parameters (K-fold out-of-fold probabilities from
             ngram_bag + naive_bayes, 2 rounds, cleanlab prune_by_noise_rate; ``--clean KEY=VALUE`` overrides
             them, e.g. the full-corpus setting of docs/cleaning.md) and policy ``remove``; the
             ``relabel`` policy is measured on the same issues
  reference  TF-IDF (word 1-2-grams, sublinear, min_df 2) + LogisticRegression(C=10): 5-fold out-of-fold
             probabilities, plain ``cleanlab.filter.find_label_issues``, removal, refit

``recovered`` = (acc_cleaned - acc_noisy) / (acc_clean - acc_noisy); precision and recall of the flagged rows
against the injected flips. Then the clean stage on the real labels lists the top suspected label errors of
the corpus itself. Last line: the JSON figures of issue 7.

    python -m benchmarks.cleaning [--quick | --smoke] [--threads N] [--no-mlflow]

Every model, split and cleaning outcome comes from slices of the real pipelines (split, clean, train,
evaluate: ``benchmarks._common``). Called directly, on purpose: the noise injection (it is the experiment, not
a product step) and the reference recipe (scikit-learn, ``frugalml.models.reference``, with plain cleanlab).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from rich.console import Console
from rich.table import Table
from sklearn.model_selection import StratifiedKFold

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
from frugalml.nodes.cleaning import fold_train_params

console = Console(stderr=True, width=150)
SETTINGS = {"sym10": ("sym", 0.1), "sym20": ("sym", 0.2), "sym30": ("sym", 0.3), "asym20": ("asym", 0.2)}


def inject_noise(labels: np.ndarray, kind: str, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``rate`` of each class (sym) or of ham only, to spam (asym); exactly that many rows, seeded."""
    rng = np.random.default_rng([seed, round(rate * 100), kind == "asym"])
    flipped = np.zeros(len(labels), dtype=bool)
    for value in (0, 1) if kind == "sym" else (0,):
        rows = np.flatnonzero(labels == value)
        flipped[rng.choice(rows, size=round(rate * len(rows)), replace=False)] = True
    return np.where(flipped, 1 - labels, labels), flipped


def reference_fit(frame: pd.DataFrame, labels: np.ndarray) -> Any:
    """TF-IDF + LogisticRegression(C=10) (``frugalml.models.reference``), fitted; returns predict_proba."""
    model = TfidfLogisticRegression().fit(reference_text(frame), labels)
    return lambda other: model.predict_proba(reference_text(other))


def reference_recipe(train: pd.DataFrame, noisy: np.ndarray, test: pd.DataFrame, seed: int) -> dict[str, Any]:
    """5-fold TF-IDF+LR probabilities, plain find_label_issues, removal, refit."""
    from cleanlab.filter import find_label_issues

    pred_probs = np.zeros((len(train), 2))
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(noisy)), noisy):
        pred_probs[held] = reference_fit(train.iloc[fit], noisy[fit])(train.iloc[held])
    flagged = find_label_issues(noisy, pred_probs)
    predict = reference_fit(train[~flagged], noisy[~flagged])
    return {"flagged": flagged, "acc_cleaned": accuracy(predict(test), test)}


def accuracy(probabilities: np.ndarray, test: pd.DataFrame) -> float:
    """Accuracy of the argmax against the test labels."""
    return float((probabilities.argmax(axis=1) == test["label"].astype(int).to_numpy()).mean())


def ours_fit(frame: pd.DataFrame, dev: pd.DataFrame, test: pd.DataFrame, params: dict[str, Any]) -> float:
    """The train pipeline (``params``: the overrides of :func:`main`) on ``frame``; the evaluate pipeline's accuracy."""
    return float(evaluate(train_model(frame, dev, params), test)["accuracy"])


def clean_stage(train: pd.DataFrame, dev: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """The clean pipeline up to issue finding, on hand labels only (no weak labels)."""
    inputs = {"train_labelled": train, "weak_labels": None, "dev_labelled": dev}
    return run_slice("clean", inputs, ["labelled_for_cleaning", "weak_labels_rejected", "label_quality"], params)


def cleaning_policy(stage: dict[str, Any], policy: str, params: dict[str, Any]) -> dict[str, Any]:
    """The clean pipeline's policy step on the issues found (``remove`` or ``relabel``)."""
    overrides = params | {"clean": params["clean"] | {"policy": policy}}
    return run_slice("clean", stage, ["train_clean", "cleaning_outcome"], overrides)


def recovered(cleaned: float, noisy: float, clean: float) -> float | None:
    """Share of the accuracy lost to noise that cleaning won back (None when noise cost nothing)."""
    return round((cleaned - noisy) / (clean - noisy), 4) if clean - noisy > 1e-9 else None


def precision_recall(flagged: np.ndarray, flipped: np.ndarray) -> tuple[float, float]:
    """Of the flagged rows, the share that were flipped; of the flipped rows, the share flagged."""
    hits = int((flagged & flipped).sum())
    return round(hits / max(int(flagged.sum()), 1), 4), round(hits / max(int(flipped.sum()), 1), 4)


def run_setting(
    kind: str, rate: float, sets: tuple, params: dict, *, clean_acc: dict, noise_seed: int
) -> dict[str, Any]:
    """One noise setting: ours (remove and relabel) and the reference, side by side."""
    train, dev, test = sets
    started = time.perf_counter()
    truth = train["label"].astype(int).to_numpy()
    noisy_labels, flipped = inject_noise(truth, kind, rate, noise_seed)
    noisy = train.assign(label=noisy_labels)
    acc_noisy = ours_fit(noisy, dev, test, params)
    stage = clean_stage(noisy, dev, params)
    flagged = stage["label_quality"]["is_label_issue"].to_numpy(dtype=bool)
    removed = cleaning_policy(stage, "remove", params)["train_clean"]
    relabel = cleaning_policy(stage, "relabel", params)
    relabelled, outcome = relabel["train_clean"], relabel["cleaning_outcome"]
    acc_cleaned, acc_relabelled = ours_fit(removed, dev, test, params), ours_fit(relabelled, dev, test, params)
    precision, recall = precision_recall(flagged, flipped)
    ours_seconds = time.perf_counter() - started

    reference_noisy = accuracy(reference_fit(noisy, noisy_labels)(test), test)
    reference = reference_recipe(train, noisy_labels, test, parameters().seed)
    reference_precision, reference_recall = precision_recall(reference["flagged"], flipped)
    return {
        "noise": rate,
        "kind": kind,
        "noise_seed": noise_seed,
        "flipped": int(flipped.sum()),
        "flagged": int(flagged.sum()),
        "acc_clean": round(clean_acc["ours"], 4),
        "acc_noisy": round(acc_noisy, 4),
        "acc_cleaned": round(acc_cleaned, 4),
        "recovered": recovered(acc_cleaned, acc_noisy, clean_acc["ours"]),
        "precision": precision,
        "recall": recall,
        "acc_relabelled": round(acc_relabelled, 4),
        "recovered_relabelled": recovered(acc_relabelled, acc_noisy, clean_acc["ours"]),
        "relabelled_rows": outcome["relabelled"],
        "seconds": round(ours_seconds, 1),
        "reference": {
            "acc_clean": round(clean_acc["reference"], 4),
            "acc_noisy": round(reference_noisy, 4),
            "acc_cleaned": round(reference["acc_cleaned"], 4),
            "recovered": recovered(reference["acc_cleaned"], reference_noisy, clean_acc["reference"]),
            "precision": reference_precision,
            "recall": reference_recall,
            "flagged": int(reference["flagged"].sum()),
        },
    }


def real_label_suspects(train: pd.DataFrame, dev: pd.DataFrame, params: dict, top: int) -> list[dict[str, Any]]:
    """The clean stage on the corpus's own labels: the most suspicious label issues."""
    quality = clean_stage(train, dev, params)["label_quality"]
    issues = quality[quality["is_label_issue"]].sort_values("label_quality").head(top)
    data = parameters().data
    rows = train.set_index(data.id_column).loc[issues[data.id_column]]
    names = data.label_names
    return [
        {"email_id": email_id, "group": row["group"], "subject": str(row["subject"])[:80],
         "given": names[int(q["given_label"])], "suggested": names[int(q["suggested_label"])],
         "p_suggested": round(float(q["suggested_confidence"]), 3), "flagged_of": int(quality["is_label_issue"].sum())}
        for (email_id, row), (_, q) in zip(rows.iterrows(), issues.iterrows(), strict=True)
    ]  # fmt: skip


def print_tables(results: list[dict[str, Any]], suspects: list[dict[str, Any]], rows: int) -> None:
    """The readable tables (stderr)."""
    table = Table(title=f"label cleaning on {rows} training rows (noise in training labels only)")
    for column in ("noise", "recipe", "acc clean", "acc noisy", "acc cleaned", "recovered", "precision", "recall"):
        table.add_column(column)
    for r in results:
        ref = r["reference"]
        table.add_row(f"{r['kind']} {r['noise']:.0%}", "frugalml clean (remove)", f"{r['acc_clean']:.4f}",
                      f"{r['acc_noisy']:.4f}", f"{r['acc_cleaned']:.4f}", str(r["recovered"]), f"{r['precision']:.4f}",
                      f"{r['recall']:.4f}")  # fmt: skip
        table.add_row("", "frugalml clean (relabel)", "", "", f"{r['acc_relabelled']:.4f}",
                      str(r["recovered_relabelled"]), "", "")  # fmt: skip
        table.add_row("", "reference tfidf+LR", f"{ref['acc_clean']:.4f}", f"{ref['acc_noisy']:.4f}",
                      f"{ref['acc_cleaned']:.4f}", str(ref["recovered"]), f"{ref['precision']:.4f}",
                      f"{ref['recall']:.4f}")  # fmt: skip
    console.print(table)
    real = Table(title="top suspected label errors in the corpus itself (real labels, no injected noise)")
    for column in ("email_id", "group", "given", "suggested", "p", "subject"):
        real.add_column(column)
    for s in suspects:
        real.add_row(s["email_id"], s["group"], s["given"], s["suggested"], f"{s['p_suggested']:.3f}", s["subject"])
    console.print(real)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print the tables and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1,500-message sample, sym 20%% and asym 20%% only")
    parser.add_argument("--smoke", action="store_true", help="a small real sample, sym 20%% and asym 20%%, no MLflow")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: conf/base)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {list(SETTINGS)}")
    parser.add_argument("--noise-seed", type=int, default=None, help="seed of the injected noise (default: seed)")
    parser.add_argument("--skip-real", action="store_true", help="skip the suspects on the corpus's own labels")
    parser.add_argument("--clean", action="append", default=[], metavar="KEY=VALUE",
                        help="override a clean parameter (YAML value), e.g. --clean rounds=3")  # fmt: skip
    parser.add_argument("--end-model", choices=["fold", "train"], default="fold",
                        help="the model trained on clean/noisy/cleaned labels: fold (clean.fold_train, the default) "
                             "or train (params:train, DP off)")  # fmt: skip
    parser.add_argument("--no-mlflow", action="store_true", help="do not record the figures in mlruns/")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(0)
    params = benchmark_parameters(args)
    emails = load_corpus_emails(sample_size(args))
    sets = split(validated_emails(emails), {"split": {"strategy": "random", "gold_dev_size": 0}})
    train, dev, test = sets["train_labelled"], sets["dev_labelled"], sets["test_gold"]
    truth = train["label"].astype(int).to_numpy()
    clean_acc = {"ours": ours_fit(train, dev, test, params),
                 "reference": accuracy(reference_fit(train, truth)(test), test)}  # fmt: skip
    names = ["sym20", "asym20"] if args.quick or args.smoke else args.settings.split(",")
    seed = parameters().seed
    noise_seed = seed if args.noise_seed is None else args.noise_seed
    results = []
    for name in names:
        results.append(run_setting(*SETTINGS[name], (train, dev, test), params, clean_acc=clean_acc,
                                   noise_seed=noise_seed))  # fmt: skip
        console.print(f"{name}: {results[-1]}")
    suspects = [] if args.skip_real else real_label_suspects(train, dev, params, top=10)
    print_tables(results, suspects, len(train))
    figures = summary_figures(results, args, params) | {
        "real_label_suspects": suspects,
        "noise_seed": noise_seed,
        "train_rows": len(train),
        "test_rows": len(test),
        "quick": args.quick,
        "smoke": args.smoke,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not (args.no_mlflow or args.smoke):
        log_to_mlflow("cleaning", {k: v for k, v in figures.items() if k != "results"} | {"results": results})
    emit(figures)
    return figures


def benchmark_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The overrides every slice of this benchmark runs with (over conf/base)."""
    config = parameters()
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.clean)}
    end_model = config.clean if args.end_model == "fold" else config.clean.model_copy(update={"fold_train": {}})
    return {
        "clean": {"progress": False} | overrides,
        # without DP: cleaning is measured on its own (benchmarks.privacy measures DP). "fold": the non-private
        # recipe of the clean stage's fold models (clean.fold_train over params:train); "train": the released
        # recipe (tuned for DP) with DP off
        "train": fold_train_params(config.train, end_model) | {"threads": args.threads},
    }


def summary_figures(results: list[dict[str, Any]], args: argparse.Namespace, params: dict[str, Any]) -> dict:
    """The issue's named figures, from the per-setting results."""
    clean, train = parameters(params).clean.model_dump(), parameters(params).train.model_dump()
    by_key = {f"{r['kind']}{round(r['noise'] * 100)}": r for r in results}
    figures: dict[str, Any] = {"results": results}
    for key in ("sym20", "asym20"):
        if key in by_key:
            figures[f"recovered_{key}"] = by_key[key]["recovered"]
            figures[f"reference_recovered_{key}"] = by_key[key]["reference"]["recovered"]
    for key in ("precision", "recall"):
        if "sym20" in by_key:
            figures[f"{key}_sym20"] = by_key["sym20"][key]
            figures[f"reference_{key}_sym20"] = by_key["sym20"]["reference"][key]
    figures |= {
        "clean_params": {
            k: clean[k] for k in ("folds", "rounds", "models", "filter_by", "exclude_by", "naive_bayes_temperature")
        },
        "end_model": args.end_model,
        "end_model_recipe": {k: train[k] for k in ("epochs", "batch_size", "lr")}
        | {"embedding_dim": train["model"]["embedding_dim"], "idf": train["features"]["idf"]},
    }
    return figures


if __name__ == "__main__":
    main()
