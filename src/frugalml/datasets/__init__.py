"""Kedro datasets of frugalml: the only place (with hooks) that does I/O."""

from frugalml.datasets.corpus import MailCorpusDataset
from frugalml.datasets.model import TextClassifierDataset

__all__ = ["MailCorpusDataset", "TextClassifierDataset"]
