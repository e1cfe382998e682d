"""evaluate: ``text_classifier`` on ``test_gold`` -> metrics, JSON report, ROC/reliability PNG, confusion matrix
PNG, predictions (checked by the predictions suite); then the summary and the useless-model check."""

from kedro.pipeline import Node, Pipeline, pipeline

from frugalml.nodes.evaluate import check_useful_model, evaluate_classifier, plot_confusion_matrix
from frugalml.pipelines.gates import quality_gate


def create_pipeline(**kwargs) -> Pipeline:
    """Build the evaluate pipeline.

    The useless-model check reads the predictions gate's output, so it runs last: the report, both figures,
    the predictions and the gate's evidence are saved before it stops a run.

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
                func=plot_confusion_matrix,
                inputs="evaluation_report",
                outputs="evaluation_confusion_matrix",
                name="plot_confusion_matrix_node",
            ),
            *quality_gate(
                batch="test_predictions",
                suite="predictions_suite",
                name="predictions",
                output="test_predictions_checked",
            ),
            Node(
                func=check_useful_model,
                inputs=["evaluation_report", "test_predictions_checked", "params:evaluate"],
                outputs=None,
                name="check_useful_model_node",
            ),
        ]
    )


def evaluate_derived(model: str, namespace: str) -> Pipeline:
    """The evaluate nodes on another model (a compressed model, a distilled student), under ``namespace``: the same
    test rows, suite and settings as ``evaluate``; its datasets are ``<namespace>.*`` (catalog factories).

    Args:
        model: The catalog name of the model to evaluate.
        namespace: Prefix of its datasets and nodes.

    Returns:
        The pipeline.
    """
    return pipeline(
        create_pipeline(),
        namespace=namespace,
        inputs={"text_classifier": model, "test_gold": "test_gold", "predictions_suite": "predictions_suite"},
        parameters={"params:evaluate", "params:data", "params:quality"},  # the same settings as `evaluate`
    )
