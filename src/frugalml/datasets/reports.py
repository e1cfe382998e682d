"""Report datasets: a folder of files (GX Data Docs) and an optional read of a dataset that may not exist yet."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import parse_dataset_definition


class HtmlSiteDataset(AbstractDataset[dict[str, bytes], dict[str, bytes]]):
    """A static site (relative path -> bytes), e.g. GX Data Docs; also logged to the active MLflow run.

    A save replaces the folder's content. ``index.html`` is the entry page.
    """

    def __init__(self, *, path: str, artifact_path: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        """Configure.

        Args:
            path: Folder of the site.
            artifact_path: Where in the MLflow run to log it (``None``: not logged).
            metadata: Free-form Kedro metadata.
        """
        self._path = Path(path)
        self._artifact_path = artifact_path
        self._logging_activated = True
        self.metadata = metadata

    def load(self) -> dict[str, bytes]:
        """Read every file of the site.

        Returns:
            Relative path -> bytes.
        """
        if not self._path.is_dir():
            raise DatasetError(f"no site at {self._path}")
        return {str(p.relative_to(self._path)): p.read_bytes() for p in self._path.rglob("*") if p.is_file()}

    def save(self, data: dict[str, bytes]) -> None:
        """Write the site (replacing the folder) and log it to MLflow.

        Args:
            data: Relative path -> bytes.
        """
        self._path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".site-", dir=self._path.parent))
        for relative, content in data.items():
            target = (staging / relative).resolve()
            if staging.resolve() not in target.parents:
                raise DatasetError(f"refusing to write {relative!r} outside the site folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        if self._path.exists():
            shutil.rmtree(self._path)
        staging.rename(self._path)
        if data and self._artifact_path and self._logging_activated and mlflow.active_run() is not None:
            mlflow.log_artifacts(str(self._path), artifact_path=self._artifact_path)

    def _exists(self) -> bool:
        return (self._path / "index.html").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "artifact_path": self._artifact_path}


class OptionalDataset(AbstractDataset[Any, Any]):
    """Wraps a dataset that may not exist yet (e.g. the training set of the current model, before the first
    training): loading an absent one gives ``None`` instead of an error. Read-only unless ``writable``
    (a stage's output that later stages may also run without, e.g. ``weak_labels``)."""

    def __init__(
        self, *, dataset: dict[str, Any], writable: bool = False, metadata: dict[str, Any] | None = None
    ) -> None:
        """Build the wrapped dataset.

        Args:
            dataset: The wrapped dataset's config (``type`` and its arguments).
            writable: Let the entry save through to the wrapped dataset.
            metadata: Free-form Kedro metadata.
        """
        dataset_class, arguments = parse_dataset_definition(dict(dataset))
        self._dataset = dataset_class(**arguments)
        self._writable = writable
        self.metadata = metadata

    def load(self) -> Any:
        """The wrapped data, or ``None`` when it does not exist.

        Returns:
            The data or ``None``.
        """
        return self._dataset.load() if self._dataset.exists() else None

    def save(self, data: Any) -> None:
        """Save through to the wrapped dataset when ``writable``.

        Args:
            data: The data.

        Raises:
            DatasetError: When the entry is read-only.
        """
        if not self._writable:
            raise DatasetError("OptionalDataset is read-only (writable: false); save through the wrapped dataset")
        self._dataset.save(data)

    def _exists(self) -> bool:
        return self._dataset.exists()

    def _describe(self) -> dict[str, Any]:
        return {"dataset": self._dataset._describe(), "writable": self._writable}
