"""Evaluate a classifier on held-out gold rows, for two classes or K.

Figures (:mod:`.metrics`): accuracy beside the majority-class baseline, macro- and weighted-F1, per-class
precision/recall/F1, the positive class's P/R/F1/ROC-AUC/AP (binary, or when asked), one-vs-rest ROC-AUC for
K > 2, log loss and ECE. Figures (:mod:`.plots`): ROC and reliability curves, the confusion matrix. The
useless-model check (:mod:`.usefulness`): predictions collapsed to one class, or accuracy not above the
majority baseline by a margin, stop the run or warn (``evaluate.useless_model``). Privacy audits
(:mod:`.membership`): loss-threshold and LiRA-lite membership inference.
"""

from frugalml.nodes.evaluate.membership import lira_membership_inference, membership_inference
from frugalml.nodes.evaluate.metrics import (
    classification_metrics,
    expected_calibration_error,
    metric_keys,
    one_vs_rest_auc,
    predict_classes,
    report_metrics,
)
from frugalml.nodes.evaluate.nodes import check_useful_model, evaluate_classifier
from frugalml.nodes.evaluate.plots import plot_confusion_matrix, plot_roc_and_reliability
from frugalml.nodes.evaluate.usefulness import (
    REMEDIES,
    evaluation_summary,
    useless_model_message,
    useless_model_problems,
)

__all__ = [
    "REMEDIES",
    "check_useful_model",
    "classification_metrics",
    "evaluate_classifier",
    "evaluation_summary",
    "expected_calibration_error",
    "lira_membership_inference",
    "membership_inference",
    "metric_keys",
    "one_vs_rest_auc",
    "plot_confusion_matrix",
    "plot_roc_and_reliability",
    "predict_classes",
    "report_metrics",
    "useless_model_message",
    "useless_model_problems",
]
