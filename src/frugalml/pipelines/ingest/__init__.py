"""The `ingest` pipeline."""
