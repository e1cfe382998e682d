"""The `distill` pipeline."""
