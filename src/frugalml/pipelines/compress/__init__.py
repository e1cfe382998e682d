"""The `compress` pipeline."""
