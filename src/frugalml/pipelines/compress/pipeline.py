"""compress: ``text_classifier`` + ``dev_labelled`` -> ``compressed_classifier`` (logged to MLflow) +
``compression_report`` / ``compression_metrics`` / ``compression_frontier``; then the evaluate nodes on the
compressed model (``compressed.*`` datasets: test metrics, report, figures, predictions through the predictions
gate, the useless-model check)."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.compress import (
    check_compression,
    compress_classifier,
    export_compressed_onnx,
    plot_compression_frontier,
)
from frugalml.pipelines.evaluate import pipeline as evaluate


def create_pipeline(**kwargs) -> Pipeline:
    """Build the compress pipeline.

    Returns:
        The pipeline.
    """
    compress = Pipeline(
        [
            Node(
                func=compress_classifier,
                inputs=["text_classifier", "dev_labelled", "params:compress", "params:data"],
                outputs=["compressed_candidate", "compression_metrics", "compression_report"],
                name="compress_classifier_node",
            ),
            Node(
                func=plot_compression_frontier,
                inputs="compression_report",
                outputs="compression_frontier",
                name="plot_compression_frontier_node",
            ),
            Node(
                func=check_compression,
                inputs=["compressed_candidate", "compression_report", "params:compress"],
                outputs="compressed_classifier",
                name="check_compression_node",
            ),
            Node(
                func=export_compressed_onnx,
                inputs=["compressed_classifier", "dev_labelled", "params:compress"],
                outputs=["compressed_onnx", "compression_onnx_metrics"],
                name="export_compressed_onnx_node",
            ),
        ]
    )
    evaluate_compressed = evaluate.evaluate_derived("compressed_classifier", namespace="compressed")
    return compress + evaluate_compressed
