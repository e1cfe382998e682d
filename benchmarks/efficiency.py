"""The model zoo side by side: the n-gram bag, the frozen pretrained encoder and the hybrid, with and without DP
(``python -m benchmarks.efficiency``).

Every run is the ``train`` pipeline's node on the same split (random, conf/base) with the encoder-feature cache of
the catalog (``data/04_feature/encoder_cache``: the first full run embeds the corpus once, about 3 minutes on 2
cores; later runs read it). Each kind has a few candidate recipes; the one with the best **dev** accuracy is the
kind's figure (test rows never choose), and the best private recipe over all kinds on dev is ``dp_acc_eps1``.
``nonprivate_acc`` is the best non-private recipe (on dev) of that same kind, ``utility_ratio_eps1`` their ratio.
``embed_emails_per_s_cpu``: e-mails per second through the encoder on this machine's CPU (fresh embeddings, 256
e-mails at the default 128 tokens; the model load is not counted).

Reported as null: adapter and full fine-tuning (built, not measured here yet), multi-task heads, the from-scratch
transformer with sliding-window attention, checkpointing and the GPU figures (issue 17 lists them).

    python -m benchmarks.efficiency [--smoke] [--no-mlflow]

``--smoke``: 400 e-mails, 32 tokens, one recipe per kind and setting, an in-memory cache (nothing written).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks._common import (
    REPO,
    emit,
    load_corpus_emails,
    log_to_mlflow,
    machine,
    parameters,
    run_slice,
    sample_size,
    split,
    validated_emails,
)

console = Console(stderr=True)
KINDS = ("ngram_bag", "pretrained", "hybrid")
#: candidate recipes per (kind, private); the first is the product's defaults. The pretrained/hybrid DP candidate
#: (batch 128, lr 0.01) came from a grid on the corpus's dev split (docs/models.md)
CANDIDATES: dict[tuple[str, bool], list[dict[str, Any]]] = {
    ("ngram_bag", False): [{}],
    ("ngram_bag", True): [{}],
    ("pretrained", False): [{}, {"epochs": 30, "patience": 3}],
    ("pretrained", True): [{}, {"batch_size": 128, "lr": 0.01}],
    ("hybrid", False): [{}],
    ("hybrid", True): [{}, {"batch_size": 128, "lr": 0.01}],
}
NOT_BUILT = (
    "full_finetune_acc", "adapter_acc", "adapter_trainable_share", "multitask_acc", "checkpointing_mem_ratio",
    "amp_speedup_gpu", "dswa_speedup_8k", "dswa_speedup_16k", "dswa_acc_delta",
)  # fmt: skip


def _accuracy(model: Any, frame: pd.DataFrame) -> float:
    predicted = np.asarray(model.labels)[model.predict_proba(frame).argmax(axis=1)]
    return round(float((predicted == frame["label"].to_numpy()).mean()), 4)


def train_one(sets: dict[str, pd.DataFrame], kind: str, private: bool, *, recipe: dict[str, Any], store: Any,
              tokens: int | None) -> dict[str, Any]:  # fmt: skip
    """One training through the train node; dev and test accuracy and epsilon spent."""
    train_params: dict[str, Any] = {"progress": False, "model": {"kind": kind}, **recipe}
    if tokens:
        train_params["model"]["pretrained"] = {"max_tokens": tokens}
    if not private:
        train_params["privacy"] = {"enabled": False}
    started = time.perf_counter()
    inputs = {"train_set_checked": sets["train_labelled"], "dev_labelled": sets["dev_labelled"], "encoder_cache": store}
    out = run_slice("train", inputs, ["text_classifier", "privacy_report"], {"train": train_params})
    model, report = out["text_classifier"], out["privacy_report"]
    return {"kind": kind, "private": private, "recipe": recipe, "dev": _accuracy(model, sets["dev_labelled"]),
            "test": _accuracy(model, sets["test_gold"]), "epsilon": round(report["epsilon"], 3) if private else None,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def embed_rate(frame: pd.DataFrame, tokens: int | None, count: int) -> float:
    """E-mails per second through the encoder, fresh (an in-memory store of its own; the load excluded)."""
    from frugalml.models.embedding_store import EmbeddingStore
    from frugalml.models.encoder import frame_texts, load_encoder
    from frugalml.models.zoo import encoder_spec

    config = parameters({"train": {"model": {"pretrained": {"max_tokens": tokens}}}} if tokens else None).train
    spec = encoder_spec(config)
    load_encoder(spec)
    texts = [f"[rate probe] {t}" for t in frame_texts(frame.iloc[:count], ["subject", "body"])]  # never cached
    started = time.perf_counter()
    EmbeddingStore(None).embed(spec, texts)
    return round(len(texts) / (time.perf_counter() - started), 1)


def _best(runs: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    chosen = [r for r in runs if all(r[k] == v for k, v in where.items())]
    return max(chosen, key=lambda r: r["dev"])  # dev chooses; the first candidate wins ties


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table and the JSON line."""
    from frugalml.models.embedding_store import EmbeddingStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="400 e-mails, 32 tokens, one recipe each")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tokens = 32 if args.smoke else None
    emails = load_corpus_emails(sample_size(args))
    sets = split(validated_emails(emails), {"split": {"gold_dev_size": 0}})
    store = EmbeddingStore(None if args.smoke else REPO / "data" / "04_feature" / "encoder_cache")
    runs = []
    for (kind, private), recipes in CANDIDATES.items():
        for recipe in recipes[:1] if args.smoke else recipes:
            runs.append(train_one(sets, kind, private, recipe=recipe, store=store, tokens=tokens))
            console.print(runs[-1])
    best_private = max((_best(runs, kind=k, private=True) for k in KINDS), key=lambda r: r["dev"])
    nonprivate = _best(runs, kind=best_private["kind"], private=False)
    table = Table(title=f"model zoo on {len(emails)} e-mails (train {len(sets['train_labelled'])}, "
                        f"test {len(sets['test_gold'])}); recipe per kind chosen on dev")  # fmt: skip
    for column in ("kind", "non-private test", "DP test (eps 1)", "DP recipe"):
        table.add_column(column)
    for kind in KINDS:
        dp = _best(runs, kind=kind, private=True)
        table.add_row(kind, str(_best(runs, kind=kind, private=False)["test"]), str(dp["test"]), str(dp["recipe"]))
    console.print(table)
    figures: dict[str, Any] = {
        "bag_acc": _best(runs, kind="ngram_bag", private=False)["test"],
        "pretrained_frozen_acc": _best(runs, kind="pretrained", private=False)["test"],
        "hybrid_acc": _best(runs, kind="hybrid", private=False)["test"],
        "dp_acc_by_kind": {k: _best(runs, kind=k, private=True)["test"] for k in KINDS},
        "dp_acc_eps1": best_private["test"],
        "dp_best_kind": best_private["kind"],
        "dp_best_recipe": best_private["recipe"],
        "nonprivate_acc": nonprivate["test"],
        "utility_ratio_eps1": round(best_private["test"] / nonprivate["test"], 4),
        "embed_emails_per_s_cpu": embed_rate(sets["test_gold"], tokens, 64 if args.smoke else 256),
        **dict.fromkeys(NOT_BUILT),
        "runs": runs,
        "smoke": args.smoke,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not (args.no_mlflow or args.smoke):
        log_to_mlflow("efficiency", figures)
    emit(figures)
    return figures


if __name__ == "__main__":
    main()
