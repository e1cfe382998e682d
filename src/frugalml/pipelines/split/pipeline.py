"""split: ``emails_validated`` -> train / dev / gold dev / test / unlabelled pool."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.split import split_dataset


def create_pipeline(**kwargs) -> Pipeline:
    """Build the split pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(
                func=split_dataset,
                inputs=["emails_validated", "params:split", "params:data", "params:seed"],
                outputs=["train_labelled", "dev_labelled", "dev_gold", "test_gold", "unlabelled_pool", "split_metrics"],
                name="split_dataset_node",
            ),  # fmt: skip
        ]
    )
