"""The `weak_label` pipeline."""
