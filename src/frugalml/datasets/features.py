"""The encoder-feature cache as a Kedro dataset: ``load`` gives the append-only store the train node embeds
through (``frugalml.models.embedding_store``); the store writes its own shards, so ``save`` is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from frugalml.models.embedding_store import EmbeddingStore


class EncoderCacheDataset(AbstractDataset[None, EmbeddingStore]):
    """Embeddings keyed by (encoder sha256, max tokens, pooling, text sha256), under ``path``.

    The key is the version: a changed encoder, truncation, pooling or text is a new entry, so no cached
    embedding is ever stale. Delete the folder to reclaim the space; the next run re-embeds.
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        """Configure.

        Args:
            path: The cache folder (created on first write).
            metadata: Kedro's free-form dataset metadata.
        """
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> EmbeddingStore:
        """The store (reads nothing until the first lookup)."""
        return EmbeddingStore(self._path)

    def save(self, data: None) -> None:
        """Refused: the store is written by its own lookups.

        Raises:
            DatasetError: Always.
        """
        raise DatasetError(f"encoder_cache ({self._path}) is written by its store, not saved as a dataset")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
