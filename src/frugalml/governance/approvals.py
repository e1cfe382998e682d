"""Two-person rule: a sensitive operation needs an approval by a different user with the approver role.

Requests, approvals, refusals and uses are audit events, so the tamper-evident chain *is* the approvals
store: state is derived from it, and a forged approval breaks the chain.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from frugalml.errors import AccessDenied, ApprovalError
from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import GovernanceConfig, Identity, check_operation


@dataclass
class Request:
    """A two-person request and its state."""

    request_id: str
    operation: str
    requested_by: str
    details: dict[str, Any] = field(default_factory=dict)
    approved_by: str | None = None
    used: bool = False

    @property
    def state(self) -> str:
        """``pending``, ``approved`` or ``used``."""
        return "used" if self.used else "approved" if self.approved_by else "pending"


def requests(log: AuditLog) -> dict[str, Request]:
    """Every request, from the audit trail (which must be intact).

    Args:
        log: The audit trail.

    Returns:
        Request id -> request.
    """
    log.require_intact()
    out: dict[str, Request] = {}
    for record in log.records():
        data = record.get("data", {})
        if record["kind"] == "approval.requested":
            out[data["request_id"]] = Request(
                data["request_id"], data["operation"], record["actor"], data.get("details", {})
            )
        elif record["kind"] == "approval.granted" and data.get("request_id") in out:
            out[data["request_id"]].approved_by = record["actor"]
        elif record["kind"] == "approval.used" and data.get("request_id") in out:
            out[data["request_id"]].used = True
    return out


def _refuse(log: AuditLog, actor: str, request_id: str, reason: str) -> ApprovalError:
    log.append("approval.refused", actor=actor, request_id=request_id, reason=reason)
    return ApprovalError(reason)


def request_operation(
    log: AuditLog, config: GovernanceConfig, identity: Identity, operation: str, details: dict[str, Any] | None = None
) -> Request:
    """Ask for a two-person operation.

    Args:
        log: The audit trail.
        config: Governance config.
        identity: Who asks.
        operation: One of ``two_person_operations``.
        details: What exactly (model, version, new budget, ...).

    Returns:
        The pending request.

    Raises:
        ApprovalError: For an operation that is not a two-person operation.
        AccessDenied: When the user may not request.
    """
    try:
        check_operation(config, identity, "request")
    except AccessDenied as error:
        log.append("rbac.refused", actor=identity.user, operation="request", reason=str(error))
        raise
    if operation not in config.two_person_operations:
        raise _refuse(
            log, identity.user, "-", f"{operation!r} is not a two-person operation: {config.two_person_operations}"
        )
    request_id = uuid.uuid4().hex[:12]
    log.append(
        "approval.requested", actor=identity.user, request_id=request_id, operation=operation, details=details or {}
    )
    return Request(request_id, operation, identity.user, details or {})


def approve(log: AuditLog, config: GovernanceConfig, identity: Identity, request_id: str) -> Request:
    """Approve someone else's pending request.

    Args:
        log: The audit trail.
        config: Governance config.
        identity: The approver.
        request_id: The request.

    Returns:
        The approved request.

    Raises:
        ApprovalError: Unknown, already approved or used request; self-approval.
        AccessDenied: The user lacks the approver role (audited).
    """
    try:
        check_operation(config, identity, "approve")
    except AccessDenied as error:
        raise _refuse(log, identity.user, request_id, str(error)) from None
    pending = requests(log).get(request_id)
    if pending is None:
        raise _refuse(log, identity.user, request_id, f"no request {request_id!r}")
    if pending.state != "pending":
        raise _refuse(log, identity.user, request_id, f"request {request_id!r} is already {pending.state}")
    if pending.requested_by == identity.user:
        raise _refuse(
            log, identity.user, request_id, f"user {identity.user!r} cannot approve their own request {request_id!r}"
        )
    log.append("approval.granted", actor=identity.user, request_id=request_id, operation=pending.operation)
    pending.approved_by = identity.user
    return pending


def consume(log: AuditLog, identity: Identity, request_id: str, operation: str) -> Request:
    """Use an approved request for its operation (once).

    Args:
        log: The audit trail.
        identity: Who performs the operation (must be the requester).
        request_id: The request.
        operation: The operation being performed.

    Returns:
        The used request.

    Raises:
        ApprovalError: Missing, unapproved, used, or for another operation or user.
    """
    found = requests(log).get(request_id)
    if found is None:
        raise _refuse(log, identity.user, request_id, f"no request {request_id!r}")
    if found.operation != operation:
        raise _refuse(
            log, identity.user, request_id, f"request {request_id!r} is for {found.operation!r}, not {operation!r}"
        )
    if found.state != "approved":
        raise _refuse(log, identity.user, request_id, f"request {request_id!r} is {found.state}, not approved")
    if found.requested_by != identity.user:
        raise _refuse(log, identity.user, request_id, f"request {request_id!r} belongs to {found.requested_by!r}")
    log.append("approval.used", actor=identity.user, request_id=request_id, operation=operation)
    found.used = True
    return found
