"""frugalml: raw, noisy, partly labelled, private text data -> small, accurate, private, audited models."""

__version__ = "0.1.0"
