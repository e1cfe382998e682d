"""Generality: frugalml on three public text tables that are not e-mail, side by side with TF-IDF+LR.

The tables (``benchmarks.text_tables``: pinned npm/Debian packages, SHA-256 checked, cached in data/01_raw):
  sotu      State of the Union passages      binary: Democratic / Republican   multiclass: 5 eras
  fortunes  fortune cookies                  binary: computers / people        multiclass: 6 fortune files
  wordnet   WordNet 3.0 noun glosses         binary: artifact / person         multiclass: 8 supersenses

Each table and task runs the README's "own data" steps — the registered pipelines, only parameters changed:
``data`` describes the table (text_columns [text], label_column label, labels 0..K-1, label_names,
positive_label, id_column null, group_column null), ``emails_suite`` is conf/base/expectations/text_table.yml,
``clean.policy: none`` (``review``, the default, trains on the same rows and only adds a K-fold report) and
``split.gold_dev_size: 0`` (as benchmarks.baseline). ``modelling`` from ``emails`` to ``train_clean`` once per
task (quality gate, split, weak labels, clean), then per run ``train`` (training-set gate, training) and the
whole ``evaluate`` pipeline (report, predictions gate, useless-model check) — non-private
(``train.privacy.enabled: false``) and DP at the default epsilon (conf/base). TF-IDF+LR
(``frugalml.models.reference``) fits train + dev of the same split.

Macro-F1 is computed here with scikit-learn from each model's test predictions (the product's own predicted
labels), so it does not depend on the evaluation report's keys. A run that raises is not ok; its error is in
``errors`` and its macro-F1 is the one of the trained model's predictions when there is a model (the
predictions gate or the useless-model check refused it), else null (a non-private null counts 0 in
worst_ratio). ``dp_collapsed_passed``: DP runs whose test predictions are all one class and that the product
let through (predictions gate and useless-model check passed); ``dp_collapsed``: all collapsed DP runs.

    python -m benchmarks.generality [--smoke] [--max-rows N] [--tables sotu fortunes] [--no-mlflow]

``--smoke``: 400 rows of each table, one task each, in the smoke parameters of benchmarks._common. The full
run takes every row (about 2.5 minutes on 2 cores); ``--max-rows N`` samples each task to N rows (seeded).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from rich.console import Console
from rich.table import Table
from sklearn.metrics import f1_score

from benchmarks._common import CONF, REPO, emit, log_to_mlflow, machine, parameters, pipelines, run_slice, sample_size
from benchmarks.text_tables import CACHE_DIR, TASKS, TextTable, build
from frugalml.errors import ModelError
from frugalml.models.reference import TfidfLogisticRegression
from frugalml.runner import catalog_inputs, run_in_memory

console = Console(stderr=True)
TABLES = ("sotu", "fortunes", "wordnet")
#: the one task of each table in a ``--smoke`` run (both kinds are exercised)
SMOKE_TASKS = {"sotu": "binary", "fortunes": "multiclass", "wordnet": "multiclass"}
SUITE = REPO / "conf" / "base" / "expectations" / "text_table.yml"
RUNS = ("nonprivate", "dp")
PREPARED = ["train_clean", "dev_labelled", "test_gold"]


def sample(table: TextTable, rows: int | None) -> pd.DataFrame:
    """At most ``rows`` rows of the table (seeded, in the table's order), or all of it."""
    frame = table.frame
    if rows is None or len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=0).sort_index().reset_index(drop=True)


def table_parameters(table: TextTable, frame: pd.DataFrame) -> dict[str, Any]:
    """What a user writes in conf/local/parameters.yml for this table (README, "Your own data")."""
    counts = frame["label"].value_counts()
    # binary: the second class; K > 2: the largest, so the generic suite's positive share (5%..95%) holds
    positive = 1 if table.task == "binary" else int(counts.idxmax())
    return {
        "data": {
            "text_columns": ["text"],
            "label_column": "label",
            "id_column": None,
            "group_column": None,
            "labels": table.labels,
            "label_names": table.label_names,
            "positive_label": positive,
        },
        "split": {"gold_dev_size": 0},
        "clean": {"policy": "none", "progress": False},
        "weak_label": {"progress": False},
        "train": {"progress": False},
    }


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip()[:500]}"


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int]) -> float:
    """Macro-F1 over the declared labels (a class never predicted scores 0)."""
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def product_predictions(model: Any, test: pd.DataFrame, params: dict[str, Any]) -> np.ndarray:
    """The labels the evaluate node predicts (argmax; a binary task: p(positive) >= evaluate.threshold = 0.5)."""
    probabilities = model.predict_proba(test)
    if probabilities.shape[1] == 2:
        positive = params["data"]["positive_label"]
        return np.where(probabilities[:, positive] >= 0.5, positive, 1 - positive)
    return probabilities.argmax(axis=1)


def run_whole(name: str, inputs: dict[str, Any], outputs: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """A registered pipeline whole, in memory, as :func:`benchmarks._common.run_slice` runs a slice: a slice ends at
    the datasets it returns, so it would leave out a node with no output (evaluate's useless-model check)."""
    whole = pipelines()[name]
    given = dict(inputs) | catalog_inputs(whole, inputs, CONF)  # the predictions suite, from the catalog
    with contextlib.chdir(REPO):
        return run_in_memory(whole, given, params=parameters(params).model_dump(), conf_source=CONF, outputs=outputs)


def run_ours(prepared: dict[str, pd.DataFrame], params: dict[str, Any], private: bool) -> dict[str, Any]:
    """``train`` then ``evaluate`` on the prepared split; what happened, never raising."""
    params = params | {"train": params["train"] | {"privacy": {"enabled": private}}}
    test = prepared["test_gold"]
    labels = params["data"]["labels"]
    result: dict[str, Any] = {"ok": False, "error": None, "macro_f1": None, "collapsed": None, "gate_passed": False}
    started = time.perf_counter()
    try:
        trained = run_slice(
            "train",
            {"train_clean": prepared["train_clean"], "dev_labelled": prepared["dev_labelled"]},
            ["text_classifier", "privacy_report"],
            params,
        )
    except Exception as error:  # noqa: BLE001 - a failed run is a result of this benchmark, recorded
        return result | {"error": _error(error), "stage": "train", "seconds": time.perf_counter() - started}
    model, privacy = trained["text_classifier"], trained["privacy_report"] or {}
    result["epsilon"] = privacy.get("epsilon") if private else None
    result["train_s"] = time.perf_counter() - started
    try:
        evaluated = run_whole("evaluate", {"text_classifier": model, "test_gold": test}, ["test_predictions"], params)
        predicted = evaluated["test_predictions"]["predicted"].astype(int).to_numpy()
        result |= {"ok": True, "gate_passed": True}
    except Exception as error:  # noqa: BLE001 - the predictions gate or the useless-model check refused it
        predicted = product_predictions(model, test, params)
        # the useless-model check (ModelError) runs after the predictions gate: the gate had passed
        result |= {"error": _error(error), "stage": "evaluate", "gate_passed": isinstance(error, ModelError)}
    y_true = test["label"].astype(int).to_numpy()
    result["macro_f1"] = macro_f1(y_true, predicted, labels)
    result["collapsed"] = bool(len(np.unique(predicted)) == 1)
    result["seconds"] = time.perf_counter() - started
    return result


def run_reference(prepared: dict[str, pd.DataFrame], labels: list[int]) -> float:
    """TF-IDF+LR fitted on train + dev (no early stopping to feed), scored on the same test rows."""
    fit = pd.concat([prepared["train_clean"], prepared["dev_labelled"]])
    reference = TfidfLogisticRegression().fit(fit["text"].tolist(), fit["label"].astype(int).to_numpy())
    test = prepared["test_gold"]
    return macro_f1(test["label"].astype(int).to_numpy(), reference.predict(test["text"].tolist()), labels)


def run_task(table: TextTable, rows: int | None, suite: dict[str, Any]) -> dict[str, Any]:
    """One table and task: prepare once (quality, split, weak labels, clean), then both runs and the reference."""
    frame = sample(table, rows)
    params = table_parameters(table, frame)
    out: dict[str, Any] = {"rows": len(frame), "classes": len(table.label_names), "label_names": table.label_names}
    try:
        prepared = run_slice("modelling", {"emails": frame, "emails_suite": suite}, PREPARED, params)
    except Exception as error:  # noqa: BLE001 - recorded: neither run nor the reference has a split
        failed = {"ok": False, "error": _error(error), "stage": "prepare", "macro_f1": None, "collapsed": None}
        return out | {"sklearn_macro_f1": None, "runs": dict.fromkeys(RUNS, failed)}
    out |= {"rows_train": len(prepared["train_clean"]) + len(prepared["dev_labelled"]),
            "rows_test": len(prepared["test_gold"])}  # fmt: skip
    out["sklearn_macro_f1"] = run_reference(prepared, table.labels)
    out["runs"] = {run: run_ours(prepared, params, run == "dp") for run in RUNS}
    return out


def _by_table(results: dict[str, dict[str, Any]], pick) -> dict[str, dict[str, Any]]:
    nested: dict[str, dict[str, Any]] = {}
    for (name, task), result in results.items():
        value = pick(result)
        nested.setdefault(name, {})[task] = None if value is None else round(value, 4)
    return nested


def summarise(results: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The JSON figures: macro-F1 by table/task, runs ok, the worst ratio, DP collapses that passed the gate."""
    runs = [(key, run, result["runs"][run]) for key, result in results.items() for run in RUNS]
    ratios = []
    for result in results.values():
        ours, reference = result["runs"]["nonprivate"]["macro_f1"], result["sklearn_macro_f1"]
        if reference:
            ratios.append((ours or 0.0) / reference)  # no model at all: the product gave nothing, ratio 0
    dp = [r for _, run, r in runs if run == "dp"]
    return {
        "tables": sorted({name for name, _ in results}),
        "runs_ok": f"{sum(r['ok'] for _, _, r in runs)}/{len(runs)}",
        "macro_f1": _by_table(results, lambda r: r["runs"]["nonprivate"]["macro_f1"]),
        "dp_macro_f1": _by_table(results, lambda r: r["runs"]["dp"]["macro_f1"]),
        "sklearn_macro_f1": _by_table(results, lambda r: r["sklearn_macro_f1"]),
        "worst_ratio": round(min(ratios), 4) if ratios else None,
        "dp_collapsed": sum(bool(r["collapsed"]) for r in dp),
        "dp_collapsed_passed": sum(bool(r["collapsed"]) and r["ok"] for r in dp),
        "dp_epsilon": _by_table(results, lambda r: r["runs"]["dp"].get("epsilon")),
        "rows": {name: {task: r["rows"] for (n, task), r in results.items() if n == name} for name, _ in results},
        "errors": [
            {"table": name, "task": task, "run": run, "stage": r.get("stage"), "error": r["error"]}
            for (name, task), run, r in runs
            if r["error"]
        ],
    }


def show(results: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The table of figures, on stderr."""
    view = Table(title="generality: macro-F1 on the test split (frugalml vs TF-IDF+LR)")
    for column in ("table", "task", "K", "rows", "frugalml", "frugalml DP (eps)", "sklearn", "runs (no DP / DP)"):
        view.add_column(column)
    for (name, task), r in results.items():
        ours, dp = r["runs"]["nonprivate"], r["runs"]["dp"]

        def cell(value: float | None) -> str:
            return "-" if value is None else f"{value:.4f}"

        eps = f" ({dp['epsilon']:.2f})" if dp.get("epsilon") is not None else ""
        collapsed = " collapsed" if dp["collapsed"] else ""
        ok = " / ".join("ok" if r["runs"][run]["ok"] else f"✗ {r['runs'][run].get('stage')}" for run in RUNS)
        view.add_row(name, task, str(r["classes"]), str(r["rows"]), cell(ours["macro_f1"]),
                     cell(dp["macro_f1"]) + eps + collapsed, cell(r["sklearn_macro_f1"]), ok)  # fmt: skip
    console.print(view)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="400 rows of each table, one task each, no MLflow")
    parser.add_argument("--max-rows", type=int, default=None, help="sample each task's table to this many rows")
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="where the pinned archives are kept")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record the figures in mlruns/")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(0)
    rows = sample_size(args) or args.max_rows  # --smoke: SMOKE_SAMPLE rows, and the smoke parameters
    suite = yaml.safe_load(SUITE.read_text())
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for name in args.tables:
        for task in (SMOKE_TASKS[name],) if args.smoke else TASKS:
            began = time.perf_counter()
            table = build(name, task, args.cache_dir)  # a missing or wrong archive stops the benchmark
            results[(name, task)] = result = run_task(table, rows, suite)
            states = ", ".join(f"{run} {'ok' if result['runs'][run]['ok'] else 'failed'}" for run in RUNS)
            console.print(f"[bold]{name}/{task}[/]: {result['rows']} rows, K={result['classes']}: {states} "
                          f"({time.perf_counter() - began:.1f} s)")  # fmt: skip
    show(results)
    figures = summarise(results) | {
        "max_rows": rows,
        "smoke": args.smoke,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not (args.no_mlflow or args.smoke):
        log_to_mlflow("generality", figures)
    emit(figures)
    return figures


if __name__ == "__main__":
    main()
