"""quality: ``emails`` -> schema check -> GX gate (quarantine, Data Docs) -> text checks -> ``emails_validated``;
drift against the current model's training set; an optional suite proposal (``--params=profile=true``)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.drift import detect_drift
from frugalml.nodes.quality import propose_suite
from frugalml.nodes.split import check_table, validate_text_dataset
from frugalml.pipelines.gates import quality_gate


def create_pipeline(**kwargs) -> Pipeline:
    """Build the quality pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(  # cheap: a missing declared column or a ragged CSV is named before any gate runs
                func=check_table,
                inputs=["emails", "params:data"],
                outputs="emails_table_checked",
                name="check_table_node",
            ),
            *quality_gate(batch="emails_table_checked", suite="emails_suite", name="emails", output="emails_checked"),
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
