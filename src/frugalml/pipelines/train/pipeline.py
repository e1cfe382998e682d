"""train: ``train_labelled`` -> training-set gate -> ``train_set`` -> ``text_classifier`` (logged to MLflow)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.quality import enforce_quality_gate, validate_with_suite
from frugalml.nodes.train import train_text_classifier


def create_pipeline(**kwargs) -> Pipeline:
    """Build the train pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(
                func=validate_with_suite,
                inputs=["train_labelled", "training_set_suite", "params:quality", "params:data"],
                outputs=[
                    "train_gate_passed",
                    "train_set_quarantine",
                    "train_set_quality_report",
                    "train_set_quality_metrics",
                    "train_set_data_docs",
                ],
                name="validate_train_set_node",
            ),  # fmt: skip
            Node(
                func=enforce_quality_gate,
                inputs=["train_gate_passed", "train_set_quality_report"],
                outputs="train_set",
                name="enforce_train_set_gate_node",
            ),
            Node(
                func=train_text_classifier,
                inputs=["train_set", "dev_labelled", "params:train", "params:data", "params:seed"],
                outputs=["text_classifier", "training_history"],
                name="train_text_classifier_node",
            ),
        ]
    )
