"""evaluate: ``text_classifier`` on ``test_gold`` -> metrics, JSON report, ROC/reliability PNG, predictions
(checked by the predictions suite)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.evaluate import evaluate_classifier
from frugalml.nodes.quality import enforce_quality_gate, validate_with_suite


def create_pipeline(**kwargs) -> Pipeline:
    """Build the evaluate pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(
                func=evaluate_classifier,
                inputs=["text_classifier", "test_gold", "params:evaluate", "params:data"],
                outputs=["evaluation_metrics", "evaluation_report", "evaluation_plot", "test_predictions"],
                name="evaluate_classifier_node",
            ),
            Node(
                func=validate_with_suite,
                inputs=["test_predictions", "predictions_suite", "params:quality", "params:data"],
                outputs=[
                    "predictions_gate_passed",
                    "predictions_quarantine",
                    "predictions_quality_report",
                    "predictions_quality_metrics",
                    "predictions_data_docs",
                ],
                name="validate_predictions_node",
            ),  # fmt: skip
            Node(
                func=enforce_quality_gate,
                inputs=["predictions_gate_passed", "predictions_quality_report"],
                outputs="test_predictions_checked",
                name="enforce_predictions_gate_node",
            ),
        ]
    )
