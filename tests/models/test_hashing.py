"""The vectorised featuriser against a slow, obviously-correct pure-Python reference of the same hash."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from frugalml.models.hashing import HashingConfig, HashingFeaturizer

MASK = (1 << 64) - 1
P = 0x100000001B3


def mix(h: int) -> int:
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & MASK
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & MASK
    return h ^ (h >> 31)


def span_hash(data: bytes) -> int:
    return sum((b + 1) * pow(P, j, 1 << 64) for j, b in enumerate(data)) & MASK


def reference(fields: list[list[str]], config: HashingConfig) -> list[Counter]:
    docs = [Counter() for _ in fields[0]]
    for index, texts in enumerate(fields):
        salt = mix(index + 1)
        for doc, text in zip(docs, texts):
            text = re.sub(r"\s+", " ", text).lower()
            if config.word_ngrams:
                data = text.encode()
                tokens = [
                    mix(span_hash(m.group().encode("latin-1")))
                    for m in re.finditer(rb"[0-9a-z\x80-\xff]+".decode("latin-1"), data.decode("latin-1"))
                ]
                for n in range(config.word_ngrams[0], config.word_ngrams[1] + 1):
                    for i in range(len(tokens) - n + 1):
                        h = 0
                        for k in range(n):
                            h = (h * P + tokens[i + k]) & MASK
                        doc[mix(h ^ ((salt + n) & MASK)) % config.buckets] += 1
            if config.char_ngrams:
                data = text[: config.char_max_chars].encode()
                for n in range(config.char_ngrams[0], config.char_ngrams[1] + 1):
                    for i in range(len(data) - n + 1):
                        h = span_hash(data[i : i + n]) ^ ((salt + 1000 + n) & MASK)
                        doc[mix(h) % config.buckets] += 1
    return docs


TEXTS = [
    ["Re: New Sequences Window", "FREE money!!! Click http://x.example/now", "", "Café crème — naïve"],
    ["I can't reproduce this error.\n\nFor me it is very repeatable", "a", "only body", "déjà vu  déjà vu"],
]


@pytest.mark.parametrize(
    "config",
    [
        HashingConfig(buckets=1 << 12, word_ngrams=(1, 2), char_ngrams=(3, 4)),
        HashingConfig(buckets=97, word_ngrams=(1, 3), char_ngrams=None),
        HashingConfig(buckets=1 << 16, word_ngrams=None, char_ngrams=(2, 5), char_max_chars=10),
    ],
)
def test_fast_featuriser_matches_reference(config):
    matrix = HashingFeaturizer(config).transform(TEXTS)
    expected = reference(TEXTS, config)
    for row, counts in enumerate(expected):
        got = {int(c): float(v) for c, v in zip(matrix[row].indices, matrix[row].data)}
        assert got == {k: float(v) for k, v in counts.items()}


def test_features_are_deterministic_and_field_salted():
    featurizer = HashingFeaturizer(HashingConfig(buckets=1 << 16))
    first = featurizer.transform([["free money"], [""]])
    again = featurizer.transform([["free money"], [""]])
    swapped = featurizer.transform([[""], ["free money"]])
    assert (first != again).nnz == 0
    assert set(first.indices).isdisjoint(set(swapped.indices))


def test_fields_must_have_the_same_length():
    with pytest.raises(ValueError, match="same number of rows"):
        HashingFeaturizer(HashingConfig()).transform([["a", "b"], ["c"]])


def test_some_ngram_kind_is_required():
    with pytest.raises(ValueError, match="enable"):
        HashingFeaturizer(HashingConfig(word_ngrams=None, char_ngrams=None))


def test_real_emails_featurise_quickly_into_bounded_buckets(sample_emails):
    config = HashingConfig(buckets=1 << 14)
    matrix = HashingFeaturizer(config).transform([sample_emails["subject"], sample_emails["body"]])
    assert matrix.shape == (len(sample_emails), 1 << 14)
    assert matrix.indices.max() < (1 << 14)
    assert np.all(np.diff(matrix.indptr) > 0)
