"""weak_label: ``unlabelled_pool`` (+ ``dev_gold`` to check the LFs) -> ``weak_labels`` + LF report.

Three nodes: apply the LFs (``lf_votes``) -> fit the label model (``weak_labels``, ``weak_abstained``) ->
summarise (``lf_summary``, its plot, metrics). The two hand-offs stay in memory.
"""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.weak_labels import apply_labelling_functions, fit_weak_label_model, summarise_weak_labels

_PARAMS = ["params:weak_label", "params:data"]


def create_pipeline(**kwargs) -> Pipeline:
    """Build the weak-labelling pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(
                func=apply_labelling_functions,
                inputs=["unlabelled_pool", "dev_gold", *_PARAMS],
                outputs="lf_votes",
                name="apply_labelling_functions_node",
            ),
            Node(
                func=fit_weak_label_model,
                inputs=["unlabelled_pool", "lf_votes", *_PARAMS, "params:seed"],
                outputs=["weak_labels", "weak_abstained", "weak_label_model"],
                name="fit_label_model_node",
            ),
            Node(
                func=summarise_weak_labels,
                inputs=["lf_votes", "weak_label_model", *_PARAMS, "params:seed"],
                outputs=["lf_summary", "lf_summary_plot", "weak_label_metrics"],
                name="summarise_weak_labels_node",
            ),
        ]
    )
