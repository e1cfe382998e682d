"""quality: ``emails`` -> GX gate (quarantine, Data Docs) -> schema check -> ``emails_validated``; drift against
the current model's training set; an optional suite proposal (``--params=profile=true``)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.drift import detect_drift
from frugalml.nodes.quality import enforce_quality_gate, propose_suite, validate_with_suite
from frugalml.nodes.split import validate_text_dataset


def create_pipeline(**kwargs) -> Pipeline:
    """Build the quality pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(
                func=validate_with_suite,
                inputs=["emails", "emails_suite", "params:quality", "params:data"],
                outputs=[
                    "emails_gate_passed",
                    "quality_quarantine",
                    "quality_report",
                    "quality_metrics",
                    "quality_data_docs",
                ],
                name="validate_emails_node",
            ),  # fmt: skip
            Node(
                func=enforce_quality_gate,
                inputs=["emails_gate_passed", "quality_report"],
                outputs="emails_checked",
                name="enforce_emails_gate_node",
            ),
            Node(
                func=validate_text_dataset,
                inputs=["emails_checked", "params:data"],
                outputs=["emails_validated", "validation_quarantine"],
                name="validate_text_dataset_node",
            ),
            Node(
                func=detect_drift,
                inputs=["drift_reference", "emails_validated", "params:drift", "params:data"],
                outputs=["drift_report", "drift_metrics", "drift_plot", "drift_html"],
                name="detect_drift_node",
            ),
            Node(
                func=propose_suite,
                inputs=["emails", "params:profile", "params:data"],
                outputs="proposed_suite",
                name="propose_suite_node",
            ),
        ]
    )
