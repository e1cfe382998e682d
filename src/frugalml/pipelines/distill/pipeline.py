"""distill: ``text_classifier`` (the teacher) labels ``train_set`` + ``unlabelled_pool`` -> the student trained on
those soft labels (DP per ``train.privacy``, a ``model_training`` node: the ledger records its spend) -> the gate
-> ``distilled_classifier`` (logged to MLflow) + ``distillation_report`` / ``distill.*`` metrics; then the
evaluate nodes on the student (``distilled.*`` datasets)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.distill import check_distillation, distill_classifier, distillation_set, report_distillation
from frugalml.pipelines.evaluate import pipeline as evaluate
from frugalml.tags import MODEL_TRAINING_TAG


def create_pipeline(**kwargs) -> Pipeline:
    """Build the distill pipeline.

    Returns:
        The pipeline.
    """
    distill = Pipeline(
        [
            Node(
                func=distillation_set,
                inputs=["text_classifier", "train_set", "unlabelled_pool", "params:distill", "params:data"],
                outputs="distillation_set",
                name="distillation_set_node",
            ),
            Node(
                func=distill_classifier,
                inputs=[
                    "distillation_set",
                    "dev_labelled",
                    "params:train",
                    "params:distill",
                    "params:data",
                    "params:seed",
                    "encoder_cache",
                ],  # fmt: skip
                outputs=["distilled_candidate", "distill_history", "distill_privacy_report"],
                name="distill_classifier_node",
                tags=[MODEL_TRAINING_TAG],  # governance: the student's privacy spend on the rows it reads
            ),
            Node(
                func=report_distillation,
                inputs=[
                    "distilled_candidate",
                    "text_classifier",
                    "dev_labelled",
                    "distillation_set",
                    "distill_privacy_report",
                    "privacy_report",
                    "params:data",
                ],  # fmt: skip
                outputs=["distillation_report", "distillation_metrics"],
                name="report_distillation_node",
            ),
            Node(
                func=check_distillation,
                inputs=["distilled_candidate", "distillation_report", "params:distill"],
                outputs="distilled_classifier",
                name="check_distillation_node",
            ),
        ]
    )
    evaluate_student = evaluate.evaluate_derived("distilled_classifier", namespace="distilled")
    return distill + evaluate_student
