"""MLflow ``pyfunc`` wrapper: the registered model takes a frame of text columns, returns labels and
probabilities. Weights travel as safetensors + JSON artifacts (no pickled tensors)."""

import json
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from safetensors.torch import load_file

from frugalml.errors import ModelArtifactError
from frugalml.models.encoder import sha256_of
from frugalml.models.multitask import model_tasks, predict_all_proba, with_tasks
from frugalml.models.zoo import Classifier, load_classifier

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"


def load_text_classifier(directory: "str | Path") -> Classifier:
    """Load a classifier of any model kind saved by :func:`save_text_classifier`.

    Args:
        directory: Folder with ``model.safetensors`` and ``model.json``.

    Returns:
        The classifier on CPU, in eval mode.
    """
    directory = Path(directory)
    metadata = json.loads((directory / METADATA_FILE).read_text())
    verify_files(directory, metadata.get("files") or {})
    return load_classifier(metadata, load_file(str(directory / WEIGHTS_FILE)), directory)  # type: ignore[no-any-return]  # kinds' loaders


def verify_files(directory: Path, digests: dict[str, str]) -> None:
    """Check every file a saved model lists against its recorded sha256 (before anything reads it).

    Raises:
        ModelArtifactError: Naming the file, and both digests.
    """
    for relative, expected in sorted(digests.items()):
        path = directory / relative
        if not path.is_file():
            raise ModelArtifactError(f"model folder {directory} lacks {relative}, which model.json lists")
        actual = sha256_of(path)
        if actual != expected:
            raise ModelArtifactError(
                f"{path} has sha256 {actual}, but model.json records {expected}: the file was changed or "
                "corrupted after the model was saved - refusing to load it"
            )


def save_text_classifier(model: Classifier, directory: str | Path) -> None:
    """Write weights (safetensors) and metadata (JSON).

    Args:
        model: The classifier.
        directory: Target folder (created).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(model.tensors(), str(directory / WEIGHTS_FILE))
    write_extra = getattr(model, "write_extra", None)
    if write_extra is not None:
        write_extra(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != METADATA_FILE)
    metadata = {**with_tasks(model.metadata(), model),
                "files": {p.relative_to(directory).as_posix(): sha256_of(p) for p in files}}  # fmt: skip
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2))


class TextClassifierPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]  # mlflow.pyfunc is lazy
    """``predict(frame) -> frame(label, probability_<name>...)``."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:  # type: ignore[name-defined]
        """Load weights from the ``model_dir`` artifact.

        Args:
            context: MLflow's context with artifact paths.
        """
        self.model = load_text_classifier(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:  # noqa: ANN001
        """Predict labels.

        Args:
            context: Unused.
            model_input: Rows with the model's text columns.
            params: Unused.

        Returns:
            ``label`` and one ``probability_<label name>`` column per class (a multi-task model adds
            ``<task>_label`` and ``<task>_probability_<name>`` per task).
        """
        return predict_frame(self.model, model_input)


def predict_frame(model: Classifier, frame: pd.DataFrame) -> pd.DataFrame:
    """Labels and class probabilities as a frame (the pyfunc output schema).

    Args:
        model: The classifier.
        frame: Rows with its text columns.

    Returns:
        ``label`` plus ``probability_<name>`` per class.
    """
    tasks = model_tasks(model)
    # a multi-task model: every head in one pass, then <task>_label and <task>_probability_<name> per task
    probabilities, *per_task = predict_all_proba(model, frame) if tasks else [model.predict_proba(frame)]
    names = model.label_names or [str(label) for label in model.labels]
    out = pd.DataFrame({f"probability_{name}": probabilities[:, k] for k, name in enumerate(names)})
    out.insert(0, "label", [model.labels[k] for k in probabilities.argmax(axis=1)])
    for task, task_probabilities in zip(tasks, per_task, strict=True):
        out[f"{task.name}_label"] = [task.labels[k] for k in task_probabilities.argmax(axis=1)]
        for k, name in enumerate(task.names):
            out[f"{task.name}_probability_{name}"] = task_probabilities[:, k]
    return out
