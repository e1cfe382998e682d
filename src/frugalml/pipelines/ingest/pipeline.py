"""ingest: raw corpus archive -> parsed ``emails`` + ``emails_quarantine``."""

from kedro.pipeline import Node, Pipeline

from frugalml.nodes.ingest import parse_emails


def create_pipeline(**kwargs) -> Pipeline:
    """Build the ingest pipeline.

    Returns:
        The pipeline.
    """
    return Pipeline(
        [
            Node(
                func=parse_emails,
                inputs=["spam_corpus_archive", "params:ingest"],
                outputs=["emails", "emails_quarantine", "ingest_metrics"],
                name="parse_emails_node",
            )
        ]
    )
