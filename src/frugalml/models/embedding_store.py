"""The encoder-feature cache: embeddings keyed by (encoder digest, max tokens, pooling) and the text's sha256.

Layout: ``<root>/<EncoderSpec.cache_key()>/shard-<digest>.safetensors``, each shard holding ``digests`` (n, 32)
uint8 (sha256 of each text) and ``embeddings`` (n, H) float32. Shards are only ever added (written to a temporary
name, then renamed), so two runs can share a cache and a crash leaves no half shard. A changed text, encoder,
truncation or pooling is a different key: a stale embedding can never be served. ``root = None`` keeps the
cache in memory only (a pyfunc model outside a project).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from frugalml.models.encoder import EncoderSpec, load_encoder

logger = logging.getLogger(__name__)


def text_digests(texts: list[str]) -> np.ndarray:
    """(N, 32) uint8 sha256 of each text's UTF-8 bytes."""
    out = np.zeros((len(texts), 32), dtype=np.uint8)
    for i, text in enumerate(texts):
        out[i] = np.frombuffer(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), dtype=np.uint8)
    return out


class EmbeddingStore:
    """Get-or-compute encoder embeddings, persisted as append-only safetensors shards."""

    def __init__(self, root: str | Path | None) -> None:
        """Point at a cache folder (created on first write), or none.

        Args:
            root: The cache folder, or ``None`` for an in-memory cache.
        """
        self.root = Path(root) if root is not None else None
        self._memory: dict[str, dict[bytes, np.ndarray]] = {}
        self.hits = 0
        self.misses = 0

    def _namespace(self, spec: EncoderSpec) -> dict[bytes, np.ndarray]:
        key = spec.cache_key()
        if key not in self._memory:
            table: dict[bytes, np.ndarray] = {}
            folder = self.root / key if self.root is not None else None
            for shard in sorted(folder.glob("shard-*.safetensors")) if folder is not None and folder.is_dir() else []:
                tensors = load_file(str(shard))
                for digest, row in zip(tensors["digests"].numpy(), tensors["embeddings"].numpy(), strict=True):
                    table[digest.tobytes()] = row
            self._memory[key] = table
        return self._memory[key]

    def embed(self, spec: EncoderSpec, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Embeddings of ``texts``: cached rows as they are, the others computed, stored, then returned.

        Args:
            spec: The encoder and its settings.
            texts: N texts.
            progress: Show the encoder's progress bar.

        Returns:
            (N, H) float32.
        """
        table = self._namespace(spec)
        digests = text_digests(texts)
        keys = [d.tobytes() for d in digests]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in table}.values())
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            logger.info("embedding %d text(s) (%d from the cache)", len(todo), len(keys) - len(todo))
            fresh = load_encoder(spec).embed([texts[i] for i in todo], progress=progress)
            for i, row in zip(todo, fresh, strict=True):
                table[keys[i]] = row
            self._write(spec, digests[todo], fresh)
        if not keys:
            return np.zeros((0, load_encoder(spec).dim), dtype=np.float32)
        return np.stack([table[k] for k in keys]).astype(np.float32, copy=False)

    def _write(self, spec: EncoderSpec, digests: np.ndarray, embeddings: np.ndarray) -> None:
        if self.root is None:
            return
        folder = self.root / spec.cache_key()
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(digests.tobytes()).hexdigest()[:24]
        handle, temporary = tempfile.mkstemp(prefix=".shard-", suffix=".tmp", dir=folder)
        os.close(handle)
        try:
            save_file({"digests": torch.from_numpy(np.ascontiguousarray(digests)),
                       "embeddings": torch.from_numpy(np.ascontiguousarray(embeddings))}, temporary)  # fmt: skip
            os.replace(temporary, folder / f"shard-{name}.safetensors")
        finally:
            Path(temporary).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.root) if self.root else 'memory'})"


_SHARED = EmbeddingStore(None)


def shared_memory_store() -> EmbeddingStore:
    """The process's in-memory store (used where no cache folder is given: a texts' embedding is made once)."""
    return _SHARED
