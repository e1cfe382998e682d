"""Kedro hooks: access control before a run, and the audit trail of everything the run does.

Two hook objects so that ordering is explicit: :class:`AccessControlHook` runs *first* before a pipeline (a
refused user never opens an MLflow run), :class:`AuditHook` runs *last* (after kedro-mlflow opened the run,
so events carry its id) and anchors the chain head into the run before kedro-mlflow closes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from kedro.framework.hooks import hook_impl

from frugalml.errors import AccessDenied, AuditIntegrityError
from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import GovernanceConfig, Identity, check_pipelines, load_governance
from frugalml.tags import MODEL_TRAINING_TAG  # noqa: F401  (nodes that train a released model; kept importable here)

logger = logging.getLogger(__name__)


def _run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def _git_commit(path: Path) -> str | None:
    try:
        result = subprocess.run(  # noqa: S603
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _digest_of(data: Any) -> tuple[str | None, int | None]:
    """(content hash, rows) of a dataset's data, cheap enough for every load and save."""
    from frugalml.hooks import frame_digest

    if isinstance(data, pd.DataFrame):
        return frame_digest(data), len(data)
    if isinstance(data, dict | list | str | int | float | bool) or data is None:
        try:
            return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16], None
        except (TypeError, ValueError):
            return None, None
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()[:16], None
    tensors = getattr(data, "tensors", None)
    if callable(tensors):  # a model of the zoo: hash its weights (and the digest of a referenced encoder)
        digest = hashlib.sha256()
        for name, tensor in sorted(tensors().items()):
            digest.update(name.encode())
            digest.update(tensor.numpy().tobytes())
        encoder = getattr(data, "encoder", None)
        if encoder is not None:  # the frozen encoder's weights are part of the model, referenced by digest
            digest.update(f"encoder:{encoder.sha256}:{encoder.max_tokens}:{encoder.pooling}".encode())
        return digest.hexdigest()[:16], None
    return None, None


def _layer(catalog: Any, name: str) -> str | None:
    try:
        described = catalog[name]._describe()
    except Exception:  # noqa: BLE001 - best effort
        return None
    path = str(described.get("filepath") or described.get("path") or "")
    for part in Path(path).parts:
        if part[:2].isdigit() and "_" in part:
            return part
    return None


def _privacy_of(node: Any, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The privacy settings (``params:train.privacy``) of a node tagged ``model_training``, else None."""
    if MODEL_TRAINING_TAG not in node.tags:
        return None
    from frugalml.params import PrivacyParams, parse_params

    train = inputs.get("params:train")
    privacy = train.get("privacy") if isinstance(train, dict) else None
    # validated as the node will validate it: "false" from `--params` is False here too, and a missing block is on
    return parse_params(PrivacyParams, privacy if isinstance(privacy, dict) else {}, name="train.privacy").model_dump()


def _training_frame(node: Any, inputs: dict[str, Any]) -> pd.DataFrame:
    """The first DataFrame input of a training node (its training rows)."""
    return next(value for name in node.inputs if isinstance(value := inputs.get(name), pd.DataFrame))


def _text_columns(params: dict[str, Any]) -> list[str]:
    from frugalml.params import DataSchema

    data = params.get("data")
    if not isinstance(data, dict):
        data = {}
    return list(data.get("text_columns") or DataSchema().text_columns)


class GovernanceState:
    """What both hooks share for one session: config, identity, the audit log."""

    def __init__(self) -> None:
        self.config: GovernanceConfig | None = None
        self.identity: Identity | None = None
        self.log: AuditLog | None = None
        self.project_path: Path = Path.cwd()
        self.env: str | None = None
        self.conf_digests: dict[str, str] = {}
        self.params: dict[str, Any] = {}
        self.experiments: list[str] = ["frugalml"]
        self.governed: Any = None


STATE = GovernanceState()


class AccessControlHook:
    """Checks the acting user against ``governance.yml`` before any pipeline runs."""

    def __init__(self, state: GovernanceState = STATE) -> None:
        self.state = state

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Load the governance config, open the audit log, and authenticate against a configured server
        (before kedro-mlflow first talks to it, so a missing login is refused with a clear message).

        Args:
            context: The Kedro context.
        """
        from kedro.config import MissingConfigException

        from frugalml.governance.context import open_log

        loader = context.config_loader
        state = self.state
        # the session's conf folder and env, read by the one governance loader (no governance.yml: the defaults)
        state.config = load_governance(loader.conf_source, loader.env or loader.default_run_env)
        state.project_path = Path(context.project_path)
        state.env = context.env
        state.params = dict(context.params)
        state.governed = None
        try:
            experiment = context.config_loader["mlflow"]["tracking"]["experiment"]["name"]
            state.experiments = [str(experiment)]
        except (MissingConfigException, KeyError, TypeError):
            state.experiments = ["frugalml"]
        # until the identity is known (before_pipeline_run), refusals go to the local, unwitnessed trail
        state.log = open_log(state.project_path, state.config, None, None)
        from frugalml.governance.policy import local_baseline
        from frugalml.governance.rbac import current_identity, server_uri

        baseline = local_baseline(state.project_path)
        uri = server_uri(baseline) or server_uri(state.config)
        if uri:
            from frugalml.governance.client import GovernanceClient

            pinned = (baseline if server_uri(baseline) else state.config).identity.server_fingerprint
            try:
                GovernanceClient(uri, fingerprint=pinned).check_pin()
                current_identity(state.config.model_copy(update={"identity": state.config.identity.model_copy(
                    update={"server": uri})}))  # fmt: skip
            except AccessDenied as error:
                state.log.append("rbac.refused", actor="<unauthenticated>", reason=str(error))
                raise
        conf = state.project_path / "conf"
        state.conf_digests = {
            str(p.relative_to(conf)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(conf.rglob("*.yml"))
            if "credentials" not in p.name
        }

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Refuse the run when the user may not run these pipelines (the refusal is audited).

        Args:
            run_params: Kedro's run parameters.
            pipeline: The pipeline.
            catalog: The catalog.

        Raises:
            AccessDenied: Unknown user, missing role, or bad server credentials.
        """
        state = self.state
        if state.config is None or state.log is None:
            return
        names = run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"]
        names = [names] if isinstance(names, str) else list(names)
        from frugalml.governance.context import open_governed

        state.identity = None
        try:
            governed = open_governed(state.project_path, state.config, tracking_uri=mlflow.get_tracking_uri(),
                                     experiments=state.experiments)  # fmt: skip
        except AccessDenied as error:
            state.log.append("rbac.refused", actor="<unauthenticated>", pipelines=names, reason=str(error))
            raise
        state.governed, state.identity, state.log = governed, governed.identity, governed.log
        governed.enforce_policy()  # a config weaker than the baseline: refused (audited) unless approved
        try:
            roles = check_pipelines(state.config, state.identity, names)
        except AccessDenied as error:
            if state.config.audit.enabled:
                state.log.append("rbac.refused", actor=state.identity.user, pipelines=names, reason=str(error))
            raise
        if state.config.audit.enabled:
            try:
                state.log.require_intact()  # never run on top of a forged, truncated or unanchored trail
            except AuditIntegrityError as error:
                raise AuditIntegrityError(
                    f"{error}. Runs are refused while the audit trail fails verification: restore "
                    f"{state.log.path.parent} (and conf/local/audit_signing.key, without a server) from a backup; "
                    "`frugalml audit verify` names what is wrong (docs/governance.md)"
                ) from None
            state.log.append(
                "rbac.allowed",
                actor=state.identity.user,
                pipelines=names,
                roles=roles,
                identity_source=state.identity.source,
                authenticated=state.identity.authenticated,
            )


class AuditHook:
    """Records pipeline, node and dataset events with content hashes into the hash-chained audit trail."""

    def __init__(self, state: GovernanceState = STATE) -> None:
        self.state = state
        self._digests: dict[int, tuple[Any, tuple[str | None, int | None]]] = {}
        self._catalog: Any = None
        self._ledger_rows: np.ndarray | None = None  # row hashes of the DP training node now running

    @property
    def _on(self) -> bool:
        return bool(self.state.config and self.state.config.audit.enabled and self.state.log and self.state.identity)

    def _append(self, kind: str, **data: Any) -> None:
        assert self.state.log is not None and self.state.identity is not None
        self.state.log.append(kind, actor=self.state.identity.user, run_id=_run_id(), **data)

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Record the start: who, what command, which commit, which parameters; and config changes.

        Args:
            run_params: Kedro's run parameters.
            pipeline: The pipeline.
            catalog: The catalog.
        """
        self._catalog = catalog
        self._digests = {}
        if not self._on:
            return
        state = self.state
        params_digest = hashlib.sha256(json.dumps(state.params, sort_keys=True, default=str).encode()).hexdigest()
        self._append(
            "pipeline.start",
            pipelines=run_params.get("pipeline_names") or run_params.get("pipeline_name"),
            command=" ".join(sys.argv),
            env=state.env,
            git_commit=_git_commit(state.project_path),
            params_digest=params_digest[:16],
            conf_digests=state.conf_digests,
        )
        self._append("params.snapshot", params=state.params)
        previous = self._previous_conf_digests()
        if previous is not None:
            changed = {
                name: {"before": previous.get(name), "after": digest}
                for name, digest in {**dict.fromkeys(previous), **state.conf_digests}.items()
                if previous.get(name) != digest
            }
            if changed:
                self._append("config.change", files=changed)

    def _previous_conf_digests(self) -> dict[str, str] | None:
        log = self.state.log
        assert log is not None
        starts = [r for r in log.records()[:-2] if r["kind"] == "pipeline.start"] if log.path.exists() else []
        return starts[-1]["data"].get("conf_digests") if starts else None

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        """Record a node start; refuse a DP training that would exceed a privacy budget.

        Args:
            node: The node.
            inputs: Its inputs.
        """
        if not self._on:
            return
        self._append("node.start", node=node.name)
        privacy = _privacy_of(node, inputs)
        if privacy is not None:
            from frugalml.governance.ledger import authorise_nonprivate, authorise_spend, row_hashes

            state = self.state
            assert state.log is not None and state.config is not None and state.identity is not None
            self._ledger_rows = row_hashes(_training_frame(node, inputs), _text_columns(state.params))
            client = state.governed.client if state.governed is not None else None
            if not privacy.get("enabled"):
                authorise_nonprivate(state.log, client, state.config, state.identity, self._ledger_rows)
                return
            authorise_spend(state.log, client, state.config, state.identity, self._ledger_rows,
                            epsilon=float(privacy["target_epsilon"]))  # fmt: skip

    @hook_impl
    def after_node_run(self, node: Any, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Record a node end, and the privacy budget a DP training spent.

        Args:
            node: The node.
            inputs: Its inputs.
            outputs: Its outputs.
        """
        if not self._on:
            return
        self._append("node.end", node=node.name)
        report = next((v for v in outputs.values() if isinstance(v, dict) and v.get("enabled") is True
                       and "epsilon" in v and "noise_multiplier" in v), None)  # fmt: skip
        rows = self._ledger_rows
        if report is not None and rows is not None and (_privacy_of(node, inputs) or {}).get("enabled"):
            from frugalml.governance.ledger import record_spend

            assert self.state.log is not None and self.state.identity is not None
            record_spend(self.state.log, self.state.identity, _run_id(), rows, report)
            self.state.log.anchor(actor=self.state.identity.user, run_id=_run_id())  # a spend is anchored at once
            self._ledger_rows = None

    @hook_impl
    def on_node_error(self, error: Exception, node: Any) -> None:
        """Record a node error.

        Args:
            error: What it raised.
            node: The node.
        """
        if self._on:
            self._append("node.error", node=node.name, error=f"{type(error).__name__}: {error}"[:2000])

    def _dataset_event(self, kind: str, name: str, data: Any) -> None:
        if not self._on or name.startswith("params:") or name == "parameters":
            return
        digest, rows = None, None
        if self.state.config and self.state.config.audit.hash_datasets:
            cached = self._digests.get(id(data))
            if cached is not None and cached[0] is data:
                digest, rows = cached[1]
            else:
                digest, rows = _digest_of(data)
                self._digests[id(data)] = (data, (digest, rows))
        self._append(kind, dataset=name, layer=_layer(self._catalog, name), content_hash=digest, rows=rows)
        if kind == "dataset.save":
            registered = getattr(self._dataset(name), "last_registration", None)
            if registered:
                self._append("registry.register", model=registered[0], version=registered[1], content_hash=digest)

    def _dataset(self, name: str) -> Any:
        try:
            return self._catalog[name]
        except Exception:  # noqa: BLE001 - best effort
            return None

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        """Record a dataset read with its content hash.

        Args:
            dataset_name: Catalog name.
            data: The data.
        """
        self._dataset_event("dataset.load", dataset_name, data)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        """Record a dataset write with its content hash.

        Args:
            dataset_name: Catalog name.
            data: The data.
        """
        self._dataset_event("dataset.save", dataset_name, data)

    def _close(self, kind: str, **data: Any) -> None:
        self._append(kind, **data)
        assert self.state.log is not None and self.state.identity is not None
        anchor = self.state.log.anchor(actor=self.state.identity.user, run_id=_run_id())
        if mlflow.active_run() is not None:  # the signed head, checked by `audit verify` like the anchors file
            from mlflow.exceptions import MlflowException

            try:
                mlflow.set_tag("audit.head", json.dumps(anchor, sort_keys=True, separators=(",", ":")))
            except MlflowException as error:  # a governance server takes only heads its witness signed
                logger.warning("the audit head stays in %s only: the tracking server refused it as a run tag (%s); "
                               "name that server in identity.server so that it witnesses the trail",
                               self.state.log.anchors_path, error.message)  # fmt: skip
        self._digests = {}

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        """Record the end and anchor the chain head into the MLflow run.

        Args:
            run_params: Kedro's run parameters.
        """
        if self._on:
            self._close("pipeline.end")

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any]) -> None:
        """Record the failure and anchor the head.

        Args:
            error: What stopped the run.
            run_params: Kedro's run parameters.
        """
        if self._on:
            self._close("pipeline.error", error=f"{type(error).__name__}: {error}"[:2000])
