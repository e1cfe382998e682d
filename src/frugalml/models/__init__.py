"""Torch model zoo. Every model is DP-compatible by construction: no BatchNorm, per-sample-gradient-friendly
layers only (Embedding/EmbeddingBag, Linear, LayerNorm)."""

from frugalml.models.hashing import HashingFeaturizer
from frugalml.models.ngram_bag import NgramBagClassifier

__all__ = ["HashingFeaturizer", "NgramBagClassifier"]
