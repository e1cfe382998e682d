"""evaluate: ``text_classifier`` on ``test_gold`` -> metrics, JSON report, ROC/reliability PNG, predictions
(checked by the predictions suite)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.evaluate import evaluate_classifier
from frugalml.pipelines.gates import quality_gate


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
            *quality_gate(
                batch="test_predictions",
                suite="predictions_suite",
                name="predictions",
                output="test_predictions_checked",
            ),
        ]
    )
