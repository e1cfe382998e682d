"""evaluate: ``text_classifier`` on ``test_gold`` -> metrics, JSON report, ROC/reliability PNG, predictions."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.evaluate import evaluate_classifier


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
            )
        ]
    )
