"""Vectorised hashed n-gram features (word and character n-grams), in numpy, no vocabulary.

Notation: D documents, B hash buckets, T total bytes of text. Every step is a numpy array operation over
the whole batch (O(T) work, no Python loop per token), so featurising the full corpus takes about a second.
Hashes are polynomial rolling hashes modulo 2^64 (numpy's wrapping uint64 arithmetic) followed by a
mixing finaliser; they are stable across processes, machines and Python versions (unlike ``hash``).

Tokens are maximal runs of ASCII letters/digits and non-ASCII bytes (so UTF-8 words stay whole) in the
lower-cased UTF-8 text. Character n-grams run over the raw bytes with whitespace collapsed. Each text field
(e.g. subject, body) has its own salt, so "free" in a subject and "free" in a body are different features.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

_P = np.uint64(0x100000001B3)  # FNV-64 prime (odd, so invertible modulo 2^64)
_P_INV = np.uint64(pow(int(_P), -1, 1 << 64))
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_WS = re.compile(r"\s+")


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the rolling hash over all 64 bits (uint64 in, uint64 out)."""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


@dataclass(frozen=True)
class HashingConfig:
    """What to hash. Stored with every model so inference featurises exactly like training."""

    buckets: int = 2**18
    word_ngrams: tuple[int, int] | None = (1, 2)
    char_ngrams: tuple[int, int] | None = (3, 5)
    char_max_chars: int = 3000
    lowercase: bool = True


class HashingFeaturizer:
    """Texts (one or more fields per row) -> sparse count matrix (D, B) of hashed n-grams."""

    def __init__(self, config: HashingConfig) -> None:
        """Keep the config.

        Args:
            config: Bucket count and n-gram ranges.

        Raises:
            ValueError: When no n-gram kind is enabled.
        """
        if config.word_ngrams is None and config.char_ngrams is None:
            raise ValueError("enable word_ngrams or char_ngrams (or both)")
        self.config = config

    def to_dict(self) -> dict:
        """The config as plain data (JSON-serialisable)."""
        return asdict(self.config)

    def _encode(self, texts: Sequence[str], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Concatenate documents as bytes with a 0x00 separator after each.

        Returns:
            ``data`` (T,) uint8 and ``doc_of_byte`` (T,) int64.
        """
        chunks = []
        for text in texts:
            text = text or ""
            if self.config.lowercase:
                text = text.lower()
            if limit is not None:
                text = text[:limit]
            chunks.append(text.encode("utf-8", errors="replace").replace(b"\x00", b" ") + b"\x00")
        joined = b"".join(chunks)
        data = np.frombuffer(joined, dtype=np.uint8)
        lengths = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
        doc = np.repeat(np.arange(len(chunks), dtype=np.int64), lengths)
        return data, doc

    @staticmethod
    def _prefix_hash(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prefix sums H[i] = sum_{j<i} (byte_j + 1) * P^j and the inverse powers P^-i, both mod 2^64."""
        n = len(data)
        powers = np.empty(n + 1, dtype=np.uint64)
        powers[0] = 1
        inv_powers = np.empty(n + 1, dtype=np.uint64)
        inv_powers[0] = 1
        if n:
            with np.errstate(over="ignore"):
                powers[1:] = np.cumprod(np.full(n, _P, dtype=np.uint64), dtype=np.uint64)
                inv_powers[1:] = np.cumprod(np.full(n, _P_INV, dtype=np.uint64), dtype=np.uint64)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum((data.astype(np.uint64) + np.uint64(1)) * powers[:-1], out=prefix[1:])
        return prefix, inv_powers

    @staticmethod
    def _span_hash(prefix: np.ndarray, inv_powers: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Position-independent hash of bytes [start, end) for many spans at once."""
        return (prefix[end] - prefix[start]) * inv_powers[start]

    def _char_grams(self, field_salt: np.uint64) -> tuple[list[np.ndarray], list[np.ndarray]]:
        low, high = self.config.char_ngrams  # type: ignore[misc]
        data, doc = self._char_data
        prefix, inv = self._prefix_hash(data)
        rows, hashes = [], []
        for n in range(low, high + 1):
            if len(data) < n:
                continue
            start = np.arange(len(data) - n + 1)
            last = start + n - 1
            ok = (doc[start] == doc[last]) & (data[last] != 0)
            start = start[ok]
            h = self._span_hash(prefix, inv, start, start + n) ^ (field_salt + np.uint64(1000 + n))
            rows.append(doc[start])
            hashes.append(h)
        return rows, hashes

    def _word_grams(self, field_salt: np.uint64) -> tuple[list[np.ndarray], list[np.ndarray]]:
        low, high = self.config.word_ngrams  # type: ignore[misc]
        data, doc = self._word_data
        is_word = ((data >= 48) & (data <= 57)) | ((data >= 97) & (data <= 122)) | (data >= 128)
        if not self.config.lowercase:
            is_word |= (data >= 65) & (data <= 90)
        edges = np.diff(np.concatenate(([0], is_word.view(np.int8), [0])))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        prefix, inv = self._prefix_hash(data)
        token = _mix(self._span_hash(prefix, inv, starts, ends))
        token_doc = doc[starts]
        rows, hashes = [], []
        for n in range(low, high + 1):
            if len(token) < n:
                continue
            h = np.zeros(len(token) - n + 1, dtype=np.uint64)
            with np.errstate(over="ignore"):
                for k in range(n):
                    h = h * _P + token[k : len(token) - n + 1 + k]
            ok = token_doc[: len(h)] == token_doc[n - 1 :]
            rows.append(token_doc[: len(h)][ok])
            hashes.append(h[ok] ^ (field_salt + np.uint64(n)))
        return rows, hashes

    def transform(self, fields: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """Hash every field of every document into one count matrix.

        Args:
            fields: One sequence of texts per field, all of length D (e.g. ``[subjects, bodies]``).

        Returns:
            A (D, B) CSR matrix of float32 n-gram counts.

        Raises:
            ValueError: When fields have different lengths.
        """
        lengths = {len(texts) for texts in fields}
        if len(lengths) != 1:
            raise ValueError(f"all text fields need the same number of rows, got {sorted(lengths)}")
        n_docs = lengths.pop()
        rows, hashes = [], []
        with np.errstate(over="ignore"):
            for index, texts in enumerate(fields):
                salt = _mix(np.array([index + 1], dtype=np.uint64))[0]
                cleaned = [_WS.sub(" ", t) if isinstance(t, str) else "" for t in texts]
                if self.config.word_ngrams is not None:
                    self._word_data = self._encode(cleaned, None)
                    r, h = self._word_grams(salt)
                    rows += r
                    hashes += h
                if self.config.char_ngrams is not None:
                    self._char_data = self._encode(cleaned, self.config.char_max_chars)
                    r, h = self._char_grams(salt)
                    rows += r
                    hashes += h
            all_rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
            all_cols = (
                (_mix(np.concatenate(hashes)) % np.uint64(self.config.buckets)).astype(np.int64)
                if hashes
                else np.zeros(0, dtype=np.int64)
            )
        self._word_data = self._char_data = None  # type: ignore[assignment]
        matrix = sp.coo_matrix(
            (np.ones(len(all_rows), dtype=np.float32), (all_rows, all_cols)),
            shape=(n_docs, self.config.buckets),
        ).tocsr()
        matrix.sum_duplicates()
        return matrix
