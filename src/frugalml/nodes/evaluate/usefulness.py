"""The useless-model check (predictions collapsed to one class, or too small a gain over the majority-class
baseline) and the short summary an evaluation ends with."""

from __future__ import annotations

from typing import Any

import numpy as np

from frugalml.nodes.evaluate.tasks import task_summary

#: what to try when a model is no better than the majority class (the useless-model check's message)
REMEDIES = (
    "more labelled data; a larger train.privacy.target_epsilon with an approved raise_privacy_budget request; "
    "a wider model (train.model.hidden_dim, train.model.embedding_dim); the pretrained encoder "
    "(train.model.kind: pretrained or hybrid: a frozen public encoder, only a small head learns)"
)


def useless_model_problems(report: dict[str, Any], min_error_reduction: float, min_macro_f1_gain: float) -> list[str]:
    """Why a model is no better than the majority class or chance: predictions collapsed to one class, too small
    a gain over the majority baseline's accuracy, or a macro-F1 too close to chance (1 / K). A test set of one
    class has no baseline to beat: nothing is checked.

    Args:
        report: From :func:`classification_metrics` (with ``label_names``).
        min_error_reduction: ``evaluate.min_error_reduction_over_majority``.
        min_macro_f1_gain: ``evaluate.min_macro_f1_gain_over_chance``.

    Returns:
        One sentence per problem, naming the numbers (empty: the model is useful).
    """
    if report["test_classes"] < 2:
        return []
    problems = []
    if report["predicted_classes"] < 2:
        only = int(np.flatnonzero(np.asarray(report["confusion_matrix"]).sum(axis=0))[0])
        problems.append(
            f"its predictions collapse to one class: all {report['rows']} test rows are predicted "
            f"'{report['label_names'][only]}', although the test set holds {report['test_classes']} classes"
        )
    reduction = report["error_reduction_over_majority"]
    if not reduction >= min_error_reduction:
        problems.append(
            f"test accuracy {report['accuracy']:.4f} is not above the majority-class baseline "
            f"{report['majority_baseline_accuracy']:.4f} (always '{report['majority_class']}', the test set's "
            f"majority share) by the margin: it fixes {reduction:.1%} of the baseline's errors, "
            f"evaluate.min_error_reduction_over_majority asks for {min_error_reduction:.1%}"
        )
    gain = report["macro_f1_gain_over_chance"]
    if not gain >= min_macro_f1_gain:
        problems.append(
            f"macro-F1 {report['macro_f1']:.4f} is not above chance {report['chance_macro_f1']:.4f} (1 / "
            f"{report['test_classes']} classes: guessing at the class shares) by the margin: it goes {gain:.1%} "
            f"of the way from chance to 1, evaluate.min_macro_f1_gain_over_chance asks for {min_macro_f1_gain:.1%}"
        )
    return problems


def useless_model_message(report: dict[str, Any], problems: list[str]) -> str:
    """The useless-model check's message: the problems with their numbers, what to try, how to only warn."""
    return (
        f"the model is not useful on the test set ({report['rows']} rows, {report['classes']} classes): "
        + "; ".join(problems)
        + f". Try: {REMEDIES}. (evaluate.useless_model: warn turns this stop into a warning.)"
    )


def headline(report: dict[str, Any]) -> str:
    """The headline figure as words and value: ``F1 of 'spam' 0.9700`` (binary) or ``macro-F1 0.8100``."""
    if report["headline"] == "f1":
        return f"F1 of '{report['positive_class']}' {report['f1']:.4f}"
    return f"macro-F1 {report['macro_f1']:.4f}"


def evaluation_summary(report: dict[str, Any]) -> str:
    """A short text summary of the test figures: accuracy vs the majority baseline, macro-F1, per-class F1.

    Args:
        report: From :func:`evaluate_classifier`.

    Returns:
        A few lines, the per-class figures as a table.
    """
    auc = report.get("roc_auc", report.get("roc_auc_macro"))
    reduction = report["error_reduction_over_majority"]
    gain = "one class only: no baseline to beat" if np.isnan(reduction) else f"{reduction:.1%} of its errors fixed"
    width = max([5, *(len(entry["name"]) for entry in report["per_class"])])
    lines = [
        f"evaluation on {report['rows']} test rows, {report['classes']} classes: {headline(report)} (headline)",
        f"  accuracy {report['accuracy']:.4f} vs majority baseline {report['majority_baseline_accuracy']:.4f} "
        f"(always '{report['majority_class']}'; the test set's majority share), {gain}",
        f"  macro-F1 {report['macro_f1']:.4f}   weighted-F1 {report['weighted_f1']:.4f}   ECE {report['ece']:.4f}"
        + (f"   ROC-AUC {auc:.4f}" if auc is not None else ""),
        f"  {'class':<{width}}  precision  recall      f1  support",
    ]
    lines += [
        f"  {e['name']:<{width}}  {e['precision']:9.4f}  {e['recall']:6.4f}  {e['f1']:6.4f}  {e['support']:7d}"
        for e in report["per_class"]
    ]
    return "\n".join(lines + task_summary(report))
