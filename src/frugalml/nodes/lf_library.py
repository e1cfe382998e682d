"""Moved to :mod:`frugalml.nodes.weak_labels.library` (the e-mail LF library); this path keeps old imports working."""

from frugalml.nodes.weak_labels.library import *  # noqa: F403
from frugalml.nodes.weak_labels.library import lf_view, rule

__all__ = ["lf_view", "rule"]
