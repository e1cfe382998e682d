"""Where DP-SGD stops learning: the signal-to-noise bound against dev accuracy (``python -m benchmarks.dp_signal``).

Trains the default DP recipe (epsilon 1) on training subsets of N rows, binary (spam/ham) and 5-class (the
corpus groups), at the width rule's width (C - 1) and at width 1, and scores each model on the **dev split**
(never the test rows). The thresholds ``train.privacy.min_signal_to_noise`` / ``refuse_signal_to_noise`` were
chosen from these figures (docs/privacy.md, "Can DP learn here?"). The learnability check itself is turned
off here (the point is to see what happens below it).

Last line JSON: ``runs`` (one object per run: task, n, seed, width, bound, dev_accuracy, majority,
distinct_predictions), ``collapse_max_bound`` (the largest bound of a binary run that predicted one class),
``learned_min_bound`` (the smallest bound of a binary run that beat the majority by 5 points).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmarks._common import emit, load_corpus_emails, log_to_mlflow, machine, parameters, split, train_model


def _task(frame: pd.DataFrame, task: str, groups: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    if task == "binary":
        return frame, {}
    mapping = {g: k for k, g in enumerate(groups)}
    names = [g.replace("-", "_") for g in groups]
    data = {"labels": list(range(len(groups))), "label_names": names, "positive_label": 0}
    return frame.assign(label=frame["group"].map(mapping)), {"data": data}


def probe(train: pd.DataFrame, dev: pd.DataFrame, overrides: dict[str, Any], width: int, seed: int) -> dict[str, Any]:
    """One DP training of ``train``; its dev figures."""
    unchecked = {"refuse_signal_to_noise": 0, "min_signal_to_noise": 0}  # the probe looks below the thresholds
    params = overrides | {"seed": seed, "train": {"progress": False, "model": {"embedding_dim": width},
                                                  "privacy": unchecked}}  # fmt: skip
    labels = parameters(params).data.labels
    model = train_model(train, dev, params, gate=False)
    y = np.asarray([labels.index(v) for v in dev["label"]])
    predicted = model.predict_proba(dev).argmax(axis=1)
    return {"dev_accuracy": round(float((predicted == y).mean()), 4),
            "majority": round(float(np.bincount(y).max() / len(y)), 4),
            "distinct_predictions": int(len(set(predicted.tolist())))}  # fmt: skip


def main() -> None:
    """Run the probe and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two small subsets, one seed, binary only")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    emails = load_corpus_emails(600 if args.smoke else None)
    parts = split(emails)
    train_all, dev_all = parts["train_labelled"], parts["dev_labelled"]
    groups = sorted(emails["group"].unique())
    sizes = [100, 300] if args.smoke else [100, 200, 400, 800, 1600, 2400, 3200, len(train_all)]
    seeds = [0] if args.smoke else [0, 1]
    tasks = ["binary"] if args.smoke else ["binary", "groups"]
    from frugalml.nodes.train import check_training_rows

    runs = []
    plan = [(t, n, s) for t in tasks for n in sizes for s in seeds if n <= len(train_all)]
    for task, n, seed in tqdm(plan, desc="dp signal probe"):
        train, overrides = _task(train_all.sample(n=n, random_state=seed), task, groups)
        dev, _ = _task(dev_all, task, groups)
        classes = len(overrides.get("data", {}).get("labels", [0, 1]))
        for width in sorted({1, classes - 1}):
            result = probe(train, dev, overrides, width, seed)
            train_params = {"model": {"embedding_dim": width},
                            "privacy": {"refuse_signal_to_noise": 0, "min_signal_to_noise": 0}}  # fmt: skip
            estimate = check_training_rows(train_params, n, source="of the probe", data=overrides.get("data"))
            bound = round(estimate.ratio, 3) if estimate else None
            runs.append({"task": task, "n": n, "seed": seed, "width": width, "bound": bound, **result})
    binary = [r for r in runs if r["task"] == "binary"]
    collapsed = [r["bound"] for r in binary if r["distinct_predictions"] == 1]
    learned = [r["bound"] for r in binary if r["dev_accuracy"] >= r["majority"] + 0.05]
    figures = {
        "runs": runs,
        "collapse_max_bound": max(collapsed) if collapsed else None,
        "learned_min_bound": min(learned) if learned else None,
        "smoke": args.smoke,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not (args.no_mlflow or args.smoke):
        log_to_mlflow("dp_signal", figures)
    emit(figures)


if __name__ == "__main__":
    main()
