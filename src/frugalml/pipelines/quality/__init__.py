"""The `quality` pipeline."""
