"""The model's checks: its artifacts are in safe formats, and every registered version was trained with DP at
epsilon <= :data:`MAX_EPSILON`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from frugalml.governance.checklist.items import CheckItem

UNSAFE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt"}
SAFE_SUFFIXES = {".safetensors", ".onnx"}
#: Highest epsilon a deployable model may have been trained with.
MAX_EPSILON = 2.0
#: The MLflow metric training logs per epoch with the epsilon spent so far (``train.`` + ``epsilon``).
EPSILON_METRIC = "train.epsilon"


def check_model_formats(client: MlflowClient, run) -> CheckItem:  # noqa: ANN001
    """The model's files are safetensors/ONNX; nothing a loader would unpickle."""
    if run is None:
        return CheckItem("model artifacts in safe formats", "fail", "no finished training run found")
    import mlflow.artifacts

    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    if not logged:
        return CheckItem("model artifacts in safe formats", "fail", f"run {run.info.run_id} logged no model")
    files, local = [], Path()
    for model in logged:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model.artifact_location, tracking_uri=client._tracking_client.tracking_uri
            )
        )
        files += [p for p in local.rglob("*") if p.is_file()]
    unsafe = [p.name for p in files if p.suffix in UNSAFE_SUFFIXES]
    safe = [p.name for p in files if p.suffix in SAFE_SUFFIXES]
    if unsafe or not safe:
        return CheckItem(
            "model artifacts in safe formats",
            "fail",
            f"pickle-like files {unsafe}" if unsafe else "no safetensors/ONNX weights in the model",
        )
    return CheckItem("model artifacts in safe formats", "pass", f"weights {safe}; no pickle files")


def _paged(search, **kwargs: Any) -> Iterator[Any]:  # noqa: ANN001
    token = None
    while True:
        page = search(max_results=1000, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def _version_dp_problem(client: MlflowClient, version) -> tuple[str | None, float | None]:  # noqa: ANN001
    """Why a registered version is not DP with epsilon <= MAX_EPSILON (None when it is), and its spent epsilon."""
    from mlflow.exceptions import MlflowException

    if not version.run_id:
        return "no source run", None
    try:
        run = client.get_run(version.run_id)
    except MlflowException:
        return f"source run {version.run_id} not found", None
    params = run.data.params
    enabled, target = params.get("train.privacy.enabled"), params.get("train.privacy.target_epsilon")
    if enabled is None:
        return f"source run {version.run_id[:8]} logged no train.privacy parameters", None
    if enabled.strip().lower() != "true":
        return f"DP off (train.privacy.enabled={enabled})", None
    try:
        target_epsilon = float(target) if target is not None else math.nan
    except ValueError:
        target_epsilon = math.nan
    if not math.isfinite(target_epsilon) or target_epsilon > MAX_EPSILON:
        return f"target epsilon {target} > {MAX_EPSILON:g}", None
    history = client.get_metric_history(version.run_id, EPSILON_METRIC)
    spent = max((m.value for m in history), default=None)
    if spent is not None and not (math.isfinite(spent) and spent <= MAX_EPSILON):
        return f"spent epsilon {spent:.3g} > {MAX_EPSILON:g} (target {target})", spent
    return None, spent


def check_registered_versions_dp(client: MlflowClient) -> CheckItem:
    """Every registered model version (all registered models) was trained with DP at epsilon <= 2.

    For each version, its source run's ``train.privacy.enabled`` and ``train.privacy.target_epsilon`` and,
    where logged, the epsilon it actually spent (the highest ``train.epsilon`` value). Any registered version
    can be served, so one offending version fails the item (delete it from the registry to deploy any); with
    no registered version nothing is deployable, which fails too.

    Args:
        client: The tracking store and registry.

    Returns:
        The item, naming each offending version.
    """
    name = f"DP on with epsilon <= {MAX_EPSILON:g}"
    offending, checked, spent_all = [], 0, []
    for model in _paged(client.search_registered_models):
        quoted = model.name.replace("\\", "\\\\").replace("'", "\\'")
        for version in _paged(client.search_model_versions, filter_string=f"name = '{quoted}'"):
            checked += 1
            problem, spent = _version_dp_problem(client, version)
            if problem:
                offending.append(f"{model.name} v{version.version}: {problem}")
            elif spent is not None:
                spent_all.append(spent)
    if not checked:
        return CheckItem(name, "fail", "no registered model version in the registry: nothing is deployable")
    if offending:
        shown = offending[:20] + ([f"and {len(offending) - 20} more"] if len(offending) > 20 else [])
        return CheckItem(name, "fail", f"{len(offending)} of {checked} registered versions: " + "; ".join(shown))
    spent_text = f"; highest epsilon spent {max(spent_all):.3g}" if spent_all else ""
    return CheckItem(name, "pass", f"all {checked} registered versions trained with DP{spent_text}")
