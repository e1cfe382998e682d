"""clean: ``train_labelled`` (+ ``weak_labels``) -> out-of-fold ``train_pred_probs`` -> cleanlab label and data
issues -> policy -> ``train_clean`` (+ ``clean_quarantine``, review queue, ``label_issues`` report in MLflow)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.cleaning import (
    apply_cleaning_policy,
    cross_validate_pred_probs,
    find_label_issues,
    merge_label_sources,
    report_label_issues,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Build the clean pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(
                func=merge_label_sources,
                inputs=["train_labelled", "weak_labels", "params:data"],
                outputs=["labelled_for_cleaning", "weak_labels_rejected"],
                name="merge_label_sources_node",
            ),
            Node(
                func=cross_validate_pred_probs,
                inputs=[
                    "labelled_for_cleaning",
                    "dev_labelled",
                    "params:clean",
                    "params:train",
                    "params:data",
                    "params:seed",
                ],
                outputs=["train_pred_probs", "clean_cv_metrics"],
                name="cross_validate_pred_probs_node",
            ),  # fmt: skip
            Node(
                func=find_label_issues,
                inputs=[
                    "labelled_for_cleaning",
                    "train_pred_probs",
                    "params:clean",
                    "params:train",
                    "params:data",
                    "params:seed",
                ],
                outputs=["label_quality", "data_issues_summary"],
                name="find_label_issues_node",
            ),  # fmt: skip
            Node(
                func=apply_cleaning_policy,
                inputs=[
                    "labelled_for_cleaning",
                    "label_quality",
                    "weak_labels_rejected",
                    "params:clean",
                    "params:data",
                ],
                outputs=["train_clean", "clean_quarantine", "label_review_queue", "cleaning_outcome"],
                name="apply_cleaning_policy_node",
            ),  # fmt: skip
            Node(
                func=report_label_issues,
                inputs=[
                    "label_quality",
                    "label_review_queue",
                    "data_issues_summary",
                    "cleaning_outcome",
                    "params:clean",
                    "params:data",
                ],
                outputs=["label_issues", "label_issues_summary", "label_review_queue_json", "clean_metrics"],
                name="report_label_issues_node",
            ),  # fmt: skip
        ]
    )
