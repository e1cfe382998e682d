"""train: ``train_clean`` -> training-set gate -> ``text_classifier`` (logged to MLflow) -> ``train_set``.

``train_set`` (the rows the model saw, the next run's drift reference) is written only after training has
succeeded: the gate's rows travel in memory (``train_set_checked``) and a last node records them.
"""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.train import record_training_set, train_text_classifier
from frugalml.pipelines.gates import quality_gate
from frugalml.tags import MODEL_TRAINING_TAG


def create_pipeline(**kwargs) -> Pipeline:
    """Build the train pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            *quality_gate(
                batch="train_clean", suite="training_set_suite", name="train_set", output="train_set_checked"
            ),  # fmt: skip
            Node(
                func=train_text_classifier,
                inputs=[
                    "train_set_checked",
                    "dev_labelled",
                    "params:train",
                    "params:data",
                    "params:seed",
                    "encoder_cache",
                ],  # fmt: skip
                outputs=["text_classifier", "training_history", "privacy_report"],
                name="train_text_classifier_node",
                tags=[MODEL_TRAINING_TAG],  # governance: privacy budget spend, or a disable_dp approval
            ),
            Node(
                func=record_training_set,
                inputs=["train_set_checked", "privacy_report"],
                outputs="train_set",
                name="record_train_set_node",
            ),
        ]
    )
