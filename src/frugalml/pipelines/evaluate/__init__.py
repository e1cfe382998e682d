"""The `evaluate` pipeline."""
