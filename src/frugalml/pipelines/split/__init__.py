"""The `split` pipeline."""
