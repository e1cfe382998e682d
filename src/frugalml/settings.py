"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from frugalml.hooks import DatasetLineageHook, ParameterValidationHook

# kedro-mlflow registers its own hook through its plugin entry point (one MLflow run per `kedro run`).
HOOKS = (ParameterValidationHook(), DatasetLineageHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `conf/local/parameters.yml` may override one nested key without repeating its whole block
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
