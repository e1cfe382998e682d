"""weak_label: ``unlabelled_pool`` (+ ``dev_gold`` to check the LFs) -> ``weak_labels`` + LF report."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.weak_labels import weak_label


def create_pipeline(**kwargs) -> Pipeline:
    """Build the weak-labelling pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(
                func=weak_label,
                inputs=["unlabelled_pool", "dev_gold", "params:weak_label", "params:data", "params:seed"],
                outputs=["weak_labels", "weak_abstained", "lf_summary", "lf_summary_plot", "weak_label_metrics"],
                name="weak_label_node",
            ),
        ]
    )
