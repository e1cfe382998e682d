"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from frugalml.config import CONFIG_LOADER_ARGS, project_path  # noqa: F401  (project_path: kept importable)
from frugalml.governance.hooks import AccessControlHook, AuditHook
from frugalml.hooks import (
    DatasetLineageHook,
    LoadErrorHintHook,
    MlflowRunStackHook,
    ParameterValidationHook,
    TrainingPreflightHook,
)
from frugalml.run_names import RunNameHook

# kedro-mlflow registers its own hook through its plugin entry point (one MLflow run per `kedro run`).
HOOKS = (
    ParameterValidationHook(),
    DatasetLineageHook(),
    AccessControlHook(),
    AuditHook(),
    TrainingPreflightHook(),  # the training's batch against the data's size, before the gates run
    MlflowRunStackHook(),  # one "run closed because of an error" line, not one per node
    LoadErrorHintHook(),  # a file that is not UTF-8: which load_args to set
    RunNameHook(),  # MLflow run names: pipeline · first table's key · model kind
)


CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = dict(CONFIG_LOADER_ARGS)  # one definition, in frugalml.config
