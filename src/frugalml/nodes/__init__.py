"""The frugalml library: pure, typed functions, one module per capability (no I/O, no MLflow calls)."""
