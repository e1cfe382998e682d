"""Project pipelines. Each stage runs alone on its catalog inputs; ``__default__`` chains them all."""

from kedro.pipeline import Pipeline

from frugalml.pipelines.evaluate import pipeline as evaluate
from frugalml.pipelines.ingest import pipeline as ingest
from frugalml.pipelines.quality import pipeline as quality
from frugalml.pipelines.split import pipeline as split
from frugalml.pipelines.train import pipeline as train


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        Pipeline name -> pipeline.
    """
    stages = {
        "ingest": ingest.create_pipeline(),
        "quality": quality.create_pipeline(),
        "split": split.create_pipeline(),
        "train": train.create_pipeline(),
        "evaluate": evaluate.create_pipeline(),
    }
    # everything after ingest: what a user's own CSV/Parquet table (catalog entry `emails`) runs through
    stages["modelling"] = stages["quality"] + stages["split"] + stages["train"] + stages["evaluate"]
    stages["__default__"] = stages["ingest"] + stages["modelling"]
    return stages
