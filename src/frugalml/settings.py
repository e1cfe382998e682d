"""Kedro project settings."""

from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.utils import find_kedro_project

from frugalml.governance.hooks import AccessControlHook, AuditHook
from frugalml.hooks import (
    DatasetLineageHook,
    LoadErrorHintHook,
    MlflowRunStackHook,
    ParameterValidationHook,
    TrainingPreflightHook,
)

# kedro-mlflow registers its own hook through its plugin entry point (one MLflow run per `kedro run`).
HOOKS = (
    ParameterValidationHook(),
    DatasetLineageHook(),
    AccessControlHook(),
    AuditHook(),
    TrainingPreflightHook(),  # the training's batch against the data's size, before the gates run
    MlflowRunStackHook(),  # one "run closed because of an error" line, not one per node
    LoadErrorHintHook(),  # a file that is not UTF-8: which load_args to set
)


def project_path(relative: str = ".") -> str:
    """``${frugalml.project_path:mlruns}`` in config: a path under the project root, made absolute.

    MLflow caches stores by URI, so a relative ``sqlite:///mlruns/...`` would keep pointing at the first
    project a process touched; an absolute URI names the right database every time.
    """
    root = find_kedro_project(Path.cwd()) or Path.cwd()
    return str((Path(root) / relative).resolve())


CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `conf/local/parameters.yml` may override one nested key without repeating its whole block
    "merge_strategy": {"parameters": "soft"},
    "custom_resolvers": {"frugalml.project_path": project_path},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
        "governance": ["governance*"],
    },
}
