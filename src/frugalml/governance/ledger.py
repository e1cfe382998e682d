"""Lifetime privacy ledger: every DP training spends (epsilon, delta) of the datasets it touched.

The ledger is the audit trail's ``privacy.spend`` events (tamper-evident). Datasets are keyed by the raw
archive digests their rows descend from (``archive:<sha256>``), or by the table's content digest when the data
has no archive column. Composition across runs is basic sequential composition (epsilons and deltas add up): a
conservative upper bound. A run that would exceed a dataset's lifetime budget is refused before training starts,
unless an approved ``raise_privacy_budget`` request for that dataset (``--detail dataset=KEY
--detail epsilon=NEW_BUDGET``) is consumed. Under ``privacy.require_dp`` (the default), a training with DP
turned off is refused unless an approved ``disable_dp`` request for that dataset (``--detail dataset=KEY``) is
consumed: one approval, one non-private run.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from frugalml.errors import GovernanceError
from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import GovernanceConfig, Identity


def dataset_keys(frame: pd.DataFrame) -> list[str]:
    """The ledger keys of a training frame.

    Args:
        frame: Training rows.

    Returns:
        ``archive:<sha256>`` per raw archive, else ``table:<content digest>``.
    """
    if "archive_sha256" in frame.columns and frame["archive_sha256"].notna().any():
        return [f"archive:{digest}" for digest in sorted(frame["archive_sha256"].dropna().unique())]
    from frugalml.hooks import frame_digest

    return [f"table:{frame_digest(frame)}"]


def spent(log: AuditLog) -> dict[str, dict[str, float]]:
    """Epsilon and delta spent per dataset key, from the (intact) audit trail.

    Args:
        log: The audit trail.

    Returns:
        Key -> ``{"epsilon", "delta", "runs"}``.
    """
    log.require_intact()
    totals: dict[str, dict[str, float]] = {}
    for record in log.records():
        if record["kind"] == "privacy.spend":
            entry = totals.setdefault(record["data"]["dataset"], {"epsilon": 0.0, "delta": 0.0, "runs": 0})
            entry["epsilon"] += float(record["data"]["epsilon"])
            entry["delta"] += float(record["data"]["delta"])
            entry["runs"] += 1
    return totals


def budget_of(config: GovernanceConfig, key: str, log: AuditLog) -> float:
    """The lifetime budget of a dataset: configured, or raised by a used approval.

    Args:
        config: Governance config.
        key: Ledger key.
        log: The audit trail (raised budgets are ``approval.used`` events).

    Returns:
        Epsilon budget.
    """
    budget = config.privacy.budgets.get(key, config.privacy.default_budget_epsilon)
    from frugalml.governance.approvals import requests

    for request in requests(log).values():
        if request.operation == "raise_privacy_budget" and request.used and request.details.get("dataset") == key:
            budget = max(budget, float(request.details.get("epsilon", budget)))
    return budget


def _approved(log: AuditLog, operation: str, key: str, identity: Identity, accept: Any = None) -> Any:
    """An approved, unused request of ``identity`` for ``operation`` on dataset ``key`` (and ``accept``), or None."""
    from frugalml.governance.approvals import requests

    return next(
        (r for r in requests(log).values()
         if r.operation == operation and r.state == "approved" and r.details.get("dataset") == key
         and r.requested_by == identity.user and (accept is None or accept(r))),
        None,
    )  # fmt: skip


def authorise_spend(
    log: AuditLog, config: GovernanceConfig, identity: Identity, keys: list[str], epsilon: float
) -> None:
    """Refuse a DP training that would exceed a budget (consuming an approved raise if there is one).

    Args:
        log: The audit trail.
        config: Governance config.
        identity: Who trains.
        keys: Datasets the training touches.
        epsilon: The epsilon it will spend (its target).

    Raises:
        GovernanceError: Over budget without an approved raise (audited).
    """
    from frugalml.governance.approvals import consume

    totals = spent(log)
    for key in keys:
        already = totals.get(key, {}).get("epsilon", 0.0)
        if already + epsilon <= budget_of(config, key, log) + 1e-9:
            continue
        raise_request = _approved(
            log, "raise_privacy_budget", key, identity,
            lambda r, needed=already + epsilon: float(r.details.get("epsilon", 0)) >= needed,
        )  # fmt: skip
        if raise_request is not None:
            consume(log, identity, raise_request.request_id, "raise_privacy_budget")
            continue
        message = (
            f"privacy budget of {key} would be exceeded: spent {already:.3f} + this run {epsilon:.3f} > "
            f"budget {budget_of(config, key, log):.3f}; ask for `frugalml request raise_privacy_budget "
            f"--detail dataset={key} --detail epsilon=<new budget>` and a second person's approval"
        )
        log.append("rbac.refused", actor=identity.user, operation="privacy.spend", dataset=key, reason=message)
        raise GovernanceError(message)


def authorise_nonprivate(log: AuditLog, config: GovernanceConfig, identity: Identity, keys: list[str]) -> None:
    """Refuse a training with DP off on these datasets, unless DP is not required or a second person approved.

    Args:
        log: The audit trail.
        config: Governance config (``privacy.require_dp``).
        identity: Who trains.
        keys: Datasets the training touches.

    Raises:
        GovernanceError: DP is required and no approved ``disable_dp`` request of this user covers a dataset
            (audited).
    """
    if not config.privacy.require_dp:
        return
    from frugalml.governance.approvals import consume

    approvals = {key: _approved(log, "disable_dp", key, identity) for key in keys}
    missing = [key for key, approval in approvals.items() if approval is None]
    if missing:  # nothing is consumed unless every dataset is covered
        message = (
            f"training {', '.join(missing)} without differential privacy needs a second person: governance "
            f"privacy.require_dp is on and train.privacy.enabled is false; ask for `frugalml request disable_dp "
            f"--detail dataset={missing[0]}` and an approval, or train with DP"
        )
        log.append("rbac.refused", actor=identity.user, operation="disable_dp", dataset=missing[0], reason=message)
        raise GovernanceError(message)
    for approval in approvals.values():
        assert approval is not None
        consume(log, identity, approval.request_id, "disable_dp")


def status(log: AuditLog, config: GovernanceConfig) -> list[dict[str, Any]]:
    """Spent and remaining budget per dataset that has a spend or a configured budget.

    Args:
        log: The audit trail.
        config: Governance config.

    Returns:
        One row per dataset key.
    """
    totals = spent(log)
    keys = sorted(set(totals) | set(config.privacy.budgets))
    return [
        {"dataset": key, "budget": (b := budget_of(config, key, log)), "spent": totals.get(key, {}).get("epsilon", 0.0),
         "remaining": b - totals.get(key, {}).get("epsilon", 0.0), "runs": int(totals.get(key, {}).get("runs", 0))}
        for key in keys
    ]  # fmt: skip
