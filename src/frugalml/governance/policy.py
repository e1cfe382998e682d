"""Settings that weaken governance are refused unless a second person approved them.

The *baseline* is the governance of record: the governance server's copy (read when it started) when there is
one, else ``conf/base/governance.yml`` as committed in git (``HEAD``), else that file on disk. The *effective*
governance is what a run or command would use (``conf/base`` with ``conf/<env>`` over it, uncommitted edits
included). Every way the effective config is weaker than the baseline is listed by :func:`weakenings`: audit
off or moved to another file (a fresh ledger), shorter retention, DP not required, larger budgets or budget
ceiling, another or no governance server, more roles for local users, roles or users granted more, a role given
a higher MLflow permission (``mlflow_permissions``), fewer two-person operations or protected aliases. A weaker
config runs only under an approved ``change_governance`` request for its digest (:func:`governance_digest`); the
refusal is audited in the baseline's audit trail.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from frugalml.errors import GovernanceError
from frugalml.governance.rbac import (
    PERMISSION_RANK,
    SETUP_HINT,
    GovernanceConfig,
    parse_governance,
    parse_governance_text,
)


def governance_digest(config: GovernanceConfig) -> str:
    """SHA-256 of the canonical effective governance (what a ``change_governance`` approval names).

    Args:
        config: Governance config.

    Returns:
        Hex digest.
    """
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True,
                                     separators=(",", ":")).encode()).hexdigest()  # fmt: skip


def _grants(config: GovernanceConfig, role: str) -> set[tuple[str, str]]:
    spec = config.roles.get(role)
    if spec is None:
        return set()
    return {("pipeline", p) for p in spec.pipelines} | {("operation", o) for o in spec.operations}


def _union(config: GovernanceConfig, roles: list[str]) -> set[tuple[str, str]]:
    return set().union(*(_grants(config, role) for role in roles)) if roles else set()


def _shown(grants: set[tuple[str, str]]) -> list[str]:
    return sorted(f"{kind} {name}" for kind, name in grants)


def weakenings(baseline: GovernanceConfig, effective: GovernanceConfig) -> list[str]:
    """Every way ``effective`` is weaker than ``baseline``.

    Args:
        baseline: The governance of record.
        effective: The governance a run would use.

    Returns:
        Human-readable findings (empty when nothing is weaker).
    """
    checks = (_audit_weakenings, _privacy_weakenings, _identity_weakenings, _grant_weakenings,
              _permission_weakenings, _protection_weakenings)  # fmt: skip
    return [finding for check in checks for finding in check(baseline, effective)]


def _audit_weakenings(baseline: GovernanceConfig, effective: GovernanceConfig) -> list[str]:
    """Audit off, moved to another file (a fresh ledger), shorter retention, no dataset hashes."""
    out: list[str] = []
    a, b = baseline.audit, effective.audit
    if a.enabled and not b.enabled:
        out.append("audit.enabled: true -> false (nothing would be recorded)")
    if Path(a.path) != Path(b.path):
        out.append(f"audit.path: {a.path} -> {b.path} (a fresh, empty ledger)")
    if b.retention_days < a.retention_days:
        out.append(f"audit.retention_days: {a.retention_days} -> {b.retention_days}")
    if a.hash_datasets and not b.hash_datasets:
        out.append("audit.hash_datasets: true -> false (no lineage evidence)")
    return out


def _privacy_weakenings(baseline: GovernanceConfig, effective: GovernanceConfig) -> list[str]:
    """DP not required, a larger default budget, budget ceiling or per-dataset budget."""
    out: list[str] = []
    p, q = baseline.privacy, effective.privacy
    if p.require_dp and not q.require_dp:
        out.append("privacy.require_dp: true -> false (training without DP with no approval)")
    if q.default_budget_epsilon > p.default_budget_epsilon:
        out.append(f"privacy.default_budget_epsilon: {p.default_budget_epsilon} -> {q.default_budget_epsilon}")
    if q.max_budget_epsilon > p.max_budget_epsilon:
        out.append(f"privacy.max_budget_epsilon: {p.max_budget_epsilon} -> {q.max_budget_epsilon}")
    for key in set(p.budgets) | set(q.budgets):
        before = p.budgets.get(key, p.default_budget_epsilon)
        after = q.budgets.get(key, q.default_budget_epsilon)
        if after > before:
            out.append(f"privacy.budgets[{key}]: {before} -> {after}")
    return out


def _identity_weakenings(baseline: GovernanceConfig, effective: GovernanceConfig) -> list[str]:
    """Another or no governance server, another witness key, more grants for unauthenticated local users."""
    out: list[str] = []
    if effective.identity.server != baseline.identity.server:
        out.append(f"identity.server: {baseline.identity.server} -> {effective.identity.server} (identities "
                   "authenticated by a server that is not the governance of record's)")  # fmt: skip
    if (baseline.identity.server_fingerprint
            and effective.identity.server_fingerprint != baseline.identity.server_fingerprint):  # fmt: skip
        out.append(
            f"identity.server_fingerprint: {baseline.identity.server_fingerprint} -> "
            f"{effective.identity.server_fingerprint} (another witness key)"
        )
    gained = _union(effective, effective.identity.local_user_roles) - _union(
        baseline, baseline.identity.local_user_roles
    )
    if gained:
        out.append(f"identity.local_user_roles: unauthenticated users gain {_shown(gained)}")
    return out


def _grant_weakenings(baseline: GovernanceConfig, effective: GovernanceConfig) -> list[str]:
    """Roles that may run more, users with more roles (the admin role included)."""
    out: list[str] = []
    for role in effective.roles:
        gained = _grants(effective, role) - _grants(baseline, role)
        if gained:
            out.append(f"roles.{role}: gains {_shown(gained)}")
    for user, roles in effective.users.items():
        gained = _union(effective, roles) - _union(baseline, baseline.users.get(user, []))
        if gained or ("admin" in roles and "admin" not in baseline.users.get(user, [])):
            out.append(f"users.{user}: gains {_shown(gained) or ['the admin role']}")
    return out


def _permission_weakenings(baseline: GovernanceConfig, effective: GovernanceConfig) -> list[str]:
    """A role given a higher MLflow permission than the record's (a role the record does not map has none)."""
    out: list[str] = []
    for role, after in effective.mlflow_permissions.items():
        before = baseline.mlflow_permissions.get(role, "NO_PERMISSIONS")
        if PERMISSION_RANK[after] > PERMISSION_RANK[before]:
            out.append(f"mlflow_permissions.{role}: {before} -> {after} (more on the MLflow experiment and models)")
    return out


def _protection_weakenings(baseline: GovernanceConfig, effective: GovernanceConfig) -> list[str]:
    """Fewer two-person operations or protected registry aliases."""
    out: list[str] = []
    dropped = set(baseline.two_person_operations) - set(effective.two_person_operations)
    if dropped:
        out.append(f"two_person_operations: {sorted(dropped)} no longer need a second person")
    unprotected = set(baseline.registry.protected_aliases) - set(effective.registry.protected_aliases)
    if unprotected:
        out.append(f"registry.protected_aliases: {sorted(unprotected)} no longer protected")
    return out


def local_baseline(root: Path) -> GovernanceConfig:
    """The governance of record without a server: ``conf/base/governance.yml`` at git ``HEAD``, else on disk.

    Args:
        root: Project root.

    Returns:
        The baseline (the defaults when there is no base file at all).

    Raises:
        ParameterError: The baseline file itself is invalid.
    """
    relative = "conf/base/governance.yml"
    text: str | None = None
    try:
        shown = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), "show", f"HEAD:./{relative}"], capture_output=True, text=True, timeout=10,
            check=False,
        )  # fmt: skip
        if shown.returncode == 0:
            text = shown.stdout
    except (OSError, subprocess.SubprocessError):
        text = None
    if text is None and (root / relative).is_file():
        text = (root / relative).read_text()
    return parse_governance_text(text or "", relative)


def server_baseline(client: Any) -> tuple[GovernanceConfig, list[str]]:
    """The server's governance of record and the digests approved by ``change_governance``.

    Args:
        client: The governance client.

    Returns:
        ``(baseline, accepted digests)``.
    """
    answer = client.governance()
    return parse_governance(answer["config"]), list(answer.get("accepted") or [])


def enforce(effective: GovernanceConfig, baseline: GovernanceConfig, *, client: Any, accepted: list[str],
            identity: Any, refusal_log: Any) -> list[str]:  # fmt: skip
    """Refuse a weaker effective governance unless ``change_governance`` approved its digest.

    Args:
        effective: What the run or command would use.
        baseline: The governance of record.
        client: The governance client (None: no approval is possible).
        accepted: Digests already accepted on the server.
        identity: The acting user.
        refusal_log: The baseline's audit trail (where a refusal is recorded).

    Returns:
        The weakenings that were accepted (empty when nothing is weaker).

    Raises:
        GovernanceError: Weaker, with no accepted approval (audited in ``refusal_log``).
    """
    from frugalml.governance.approvals import approved_for

    found = weakenings(baseline, effective)
    if not found:
        return []
    digest = governance_digest(effective)
    if client is not None and digest not in accepted:
        for request in approved_for(client, identity, "change_governance", digest=digest):
            client.accept_governance(request["id"], digest)
            accepted = [*accepted, digest]
            break
    if client is not None and digest in accepted:
        refusal_log.append("governance.accepted", actor=identity.user, digest=digest, weakenings=found)
        return found
    how = (
        f"ask for `frugalml request change_governance --detail digest={digest}` and a second person's approval"
        if client is not None
        else f"that needs a second person's approval: {SETUP_HINT}"
    )
    message = "this configuration weakens governance: " + "; ".join(found) + f". Refused; {how}"
    refusal_log.append("governance.refused", actor=identity.user, digest=digest, weakenings=found)
    try:  # a refusal is anchored at once: deleting it from the end of the trail is detected
        refusal_log.anchor(actor=identity.user)
    except GovernanceError:
        pass  # the refusal stands; anchoring problems surface at the next verification
    raise GovernanceError(message)
