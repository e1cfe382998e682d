"""train: ``train_clean`` -> training-set gate -> ``train_set`` -> ``text_classifier`` (logged to MLflow)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.train import train_text_classifier
from frugalml.pipelines.gates import quality_gate


def create_pipeline(**kwargs) -> Pipeline:
    """Build the train pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            *quality_gate(batch="train_clean", suite="training_set_suite", name="train_set", output="train_set"),
            Node(
                func=train_text_classifier,
                inputs=["train_set", "dev_labelled", "params:train", "params:data", "params:seed"],
                outputs=["text_classifier", "training_history", "privacy_report"],
                name="train_text_classifier_node",
                tags=["model_training"],  # governance: privacy budget spend, or a disable_dp approval
            ),
        ]
    )
