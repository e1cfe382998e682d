"""MLflow "models from code" entry point: the logged model is this file plus frugalml's source, so loading
it unpickles nothing (weights are safetensors, metadata JSON)."""

from mlflow.models import set_model

from frugalml.models.pyfunc import TextClassifierPyfunc

set_model(TextClassifierPyfunc())
