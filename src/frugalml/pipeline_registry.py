"""Project pipelines. Each stage runs alone on its catalog inputs; ``__default__`` chains them all."""

from kedro.pipeline import Pipeline

from frugalml.pipelines.clean import pipeline as clean
from frugalml.pipelines.compress import pipeline as compress
from frugalml.pipelines.distill import pipeline as distill
from frugalml.pipelines.evaluate import pipeline as evaluate
from frugalml.pipelines.ingest import pipeline as ingest
from frugalml.pipelines.quality import pipeline as quality
from frugalml.pipelines.split import pipeline as split
from frugalml.pipelines.train import pipeline as train
from frugalml.pipelines.weak_label import pipeline as weak_label


def _enabled(stage: str) -> bool:
    """``<stage>.enabled`` in the project's parameters (base, then the ``KEDRO_ENV`` / ``local`` layer)."""
    import os
    from pathlib import Path

    from frugalml.params.core import load_project_parameters

    conf = Path.cwd() / "conf"
    if not conf.is_dir():
        return False
    try:
        params = load_project_parameters(conf, os.environ.get("KEDRO_ENV", "local"))
    except Exception:  # noqa: BLE001  # unreadable parameters are reported by the run's own validation
        return False
    block = params.get(stage)
    return bool(isinstance(block, dict) and block.get("enabled") is True)


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
        "compress": compress.create_pipeline(),
        "distill": distill.create_pipeline(),
    }
    # everything after ingest: what a user's own CSV/Parquet table (catalog entry `emails`) runs through
    modelling: tuple[str, ...] = ("quality", "split", "weak_label", "clean", "train", "evaluate")
    modelling += tuple(stage for stage in ("compress", "distill") if _enabled(stage))
    stages["modelling"] = sum((stages[name] for name in modelling), Pipeline([]))
    stages["__default__"] = stages["ingest"] + stages["modelling"]
    return stages
