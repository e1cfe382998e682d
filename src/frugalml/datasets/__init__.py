"""Kedro datasets of frugalml: the only place (with hooks) that does I/O."""

from frugalml.datasets.corpus import MailCorpusDataset, TextTableDataset
from frugalml.datasets.features import EncoderCacheDataset
from frugalml.datasets.model import TextClassifierDataset
from frugalml.datasets.reports import HtmlSiteDataset, OptionalDataset

__all__ = [
    "EncoderCacheDataset",
    "HtmlSiteDataset",
    "MailCorpusDataset",
    "OptionalDataset",
    "TextClassifierDataset",
    "TextTableDataset",
]
