"""train: ``train_labelled`` + ``dev_labelled`` -> ``text_classifier`` (logged to MLflow as a model)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.train import train_text_classifier


def create_pipeline(**kwargs) -> Pipeline:
    """Build the train pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(
                func=train_text_classifier,
                inputs=["train_labelled", "dev_labelled", "params:train", "params:data", "params:seed"],
                outputs=["text_classifier", "training_history"],
                name="train_text_classifier_node",
            )
        ]
    )
