"""Project pipelines. Each stage runs alone on its catalog inputs; ``__default__`` chains them all."""

from kedro.pipeline import Pipeline

from frugalml.pipelines.clean import pipeline as clean
from frugalml.pipelines.evaluate import pipeline as evaluate
from frugalml.pipelines.ingest import pipeline as ingest
from frugalml.pipelines.quality import pipeline as quality
from frugalml.pipelines.split import pipeline as split
from frugalml.pipelines.train import pipeline as train
from frugalml.pipelines.weak_label import pipeline as weak_label


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        Pipeline name -> pipeline.
    """
    stages = {
        "ingest": ingest.create_pipeline(),
        "quality": quality.create_pipeline(),
        "split": split.create_pipeline(),
        "weak_label": weak_label.create_pipeline(),
        "clean": clean.create_pipeline(),
        "train": train.create_pipeline(),
        "evaluate": evaluate.create_pipeline(),
    }
    # everything after ingest: what a user's own CSV/Parquet table (catalog entry `emails`) runs through
    modelling = ("quality", "split", "weak_label", "clean", "train", "evaluate")
    stages["modelling"] = sum((stages[name] for name in modelling), Pipeline([]))
    stages["__default__"] = stages["ingest"] + stages["modelling"]
    return stages
