"""The `clean` pipeline."""
