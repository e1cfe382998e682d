"""One way to open governance for a run or a command: config, baseline, identity, server, audit trail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import GovernanceConfig, Identity, current_identity, server_uri

LOCAL_KEY = Path("conf") / "local" / "audit_signing.key"


def mlflow_anchor_source(tracking_uri: str, experiment_names: list[str]) -> Callable[[], list[tuple[str, str]]]:
    """A function returning the ``audit.head`` tag of every run, deleted runs included, of the project's
    experiments (other experiments are not this log's: a viewer's own experiment cannot switch the check off).

    Args:
        tracking_uri: The MLflow store.
        experiment_names: The project's experiments (``mlflow.yml``).

    Returns:
        The source, for :class:`AuditLog`'s ``mlflow_anchors``.
    """

    def anchors() -> list[tuple[str, str]]:
        from mlflow.entities import ViewType
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        from frugalml.errors import GovernanceError

        out = []
        try:
            client = MlflowClient(tracking_uri=tracking_uri)
            for name in experiment_names:
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    continue
                token = None
                while True:
                    page = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL,
                                              max_results=1000, page_token=token)  # fmt: skip
                    out += [(f"MLflow run {r.info.run_id} tag audit.head", r.data.tags["audit.head"])
                            for r in page if "audit.head" in r.data.tags]  # fmt: skip
                    token = page.token
                    if not token:
                        break
        except MlflowException as error:
            raise GovernanceError(f"MLflow store {tracking_uri}: {error.message}") from None
        return out

    return anchors


@dataclass
class Governed:
    """Everything a governed run or command needs."""

    root: Path
    config: GovernanceConfig
    baseline: GovernanceConfig
    identity: Identity
    client: Any
    log: AuditLog
    accepted: list[str] = field(default_factory=list)

    def baseline_log(self) -> AuditLog:
        """The audit trail of the baseline (where refusals of a weakened config go).

        Returns:
            The log at the baseline's ``audit.path`` with the same keys.
        """
        return open_log(self.root, self.baseline, self.client, self.log.mlflow_anchors)

    def enforce_policy(self) -> list[str]:
        """Refuse a config weaker than the baseline (unless approved); see :mod:`frugalml.governance.policy`.

        Returns:
            Accepted weakenings.
        """
        from frugalml.governance.policy import enforce

        return enforce(self.config, self.baseline, client=self.client, accepted=self.accepted,
                       identity=self.identity, refusal_log=self.baseline_log())  # fmt: skip


def local_key(root: Path, *, create: bool) -> Any:
    """The project's local signing key (``conf/local/audit_signing.key``).

    Args:
        root: Project root.
        create: Create it when missing.

    Returns:
        The key, or None.
    """
    from frugalml.governance.signing import SigningKey

    path = root / LOCAL_KEY
    if not path.exists() and not create:
        return None
    return SigningKey.load_or_create(path, "local")


def open_log(root: Path, config: GovernanceConfig, client: Any,
             mlflow_anchors: Callable[[], list[tuple[str, str]]] | None) -> AuditLog:  # fmt: skip
    """The audit trail of ``config``, signed by the witness (server) or the local key.

    Args:
        root: Project root.
        config: Governance config.
        client: The governance client, or None.
        mlflow_anchors: Source of MLflow run anchors.

    Returns:
        The log.
    """
    path = Path(config.audit.path)
    return AuditLog(path if path.is_absolute() else root / path, retention_days=config.audit.retention_days,
                    signer=local_key(root, create=client is None), witness=client,
                    mlflow_anchors=mlflow_anchors)  # fmt: skip


def open_governed(root: Path, config: GovernanceConfig, *, tracking_uri: str | None,
                  experiments: list[str] | None = None) -> Governed:  # fmt: skip
    """Resolve the baseline, the server, the identity and the audit trail.

    Args:
        root: Project root.
        config: The effective governance.
        tracking_uri: The MLflow tracking URI in use.
        experiments: The project's experiment names (for the MLflow anchors).

    Returns:
        The governed context (identity authenticated when there is a server).

    Raises:
        AccessDenied: Bad or missing credentials for the server.
    """
    from frugalml.governance.client import GovernanceClient
    from frugalml.governance.policy import local_baseline, server_baseline

    baseline = local_baseline(root)
    # the server of the governance of record: deleting or replacing `identity.server` in conf/local neither
    # leaves it nor trusts another one (the policy then refuses the weaker config)
    uri = server_uri(baseline) or server_uri(config)
    pinned = baseline.identity.server_fingerprint if server_uri(baseline) else config.identity.server_fingerprint
    client = GovernanceClient(uri, fingerprint=pinned) if uri else None
    if client is not None:
        client.check_pin()  # before any password goes to whatever answers on that port
    identity = current_identity(config.model_copy(update={"identity": config.identity.model_copy(
        update={"server": uri})}), tracking_uri)  # fmt: skip
    accepted: list[str] = []
    if client is not None:
        baseline, accepted = server_baseline(client)
    anchors = mlflow_anchor_source(tracking_uri, experiments or ["frugalml"]) if tracking_uri else None
    log = open_log(root, config, client, anchors)
    return Governed(root, config, baseline, identity, client, log, accepted)
