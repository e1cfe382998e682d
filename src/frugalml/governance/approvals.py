"""Two-person rule: a sensitive operation needs an approval by a different, authenticated user.

The approvals authority is the governance server (:mod:`frugalml.governance.service`): it authenticates both
people, keeps requests and approvals where the acting user cannot write, and consumes an approval in one
transaction, so two processes never use one approval. Each operation declares its required details, validated
on both sides (:data:`OPERATION_DETAILS`): a request is never a blank cheque. The approver is shown the details
and approves their digest; the server records who approved what and for which target it was used. Every step
is also written to the local audit chain with the server's signed answer, for lineage.

Without a server there is no authenticated second person, so two-person operations are refused (with how to
start one).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from frugalml.errors import AccessDenied, ApprovalError
from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import SETUP_HINT, GovernanceConfig, Identity, check_operation

LEDGER_KEY = r"^rows:[0-9a-f]{16}$"
RUN_ID = r"^[0-9a-f]{32}$"


class _Details(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _printable(cls, values: Any) -> Any:
        """No control or formatting characters: an approver must see exactly what they approve."""
        import unicodedata

        for key, value in (values or {}).items() if isinstance(values, dict) else []:
            if isinstance(value, str) and any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
                raise ValueError(f"{key} holds control or formatting characters (line breaks, escapes)")
        return values


class PromoteDetails(_Details):
    """``promote_production``: which model version becomes production."""

    model: str = Field(min_length=1, max_length=256)
    version: int = Field(ge=1)


class RaiseBudgetDetails(_Details):
    """``raise_privacy_budget``: a dataset's new lifetime epsilon (finite, within ``privacy.max_budget_epsilon``)."""

    dataset: str = Field(pattern=LEDGER_KEY)
    epsilon: float = Field(gt=0, allow_inf_nan=False)


class DatasetDetails(_Details):
    """``disable_dp``: the dataset one non-private training may use."""

    dataset: str = Field(pattern=LEDGER_KEY)


class RunDetails(_Details):
    """``disable_watermark``: the run whose model may be registered without a verified mark."""

    run_id: str = Field(pattern=RUN_ID)


class DeleteRunsDetails(_Details):
    """``delete_runs``: the exact runs (comma-separated MLflow run ids)."""

    run_ids: str

    @field_validator("run_ids")
    @classmethod
    def _ids(cls, value: str) -> str:
        import re

        ids = sorted({part.strip() for part in value.split(",") if part.strip()})
        bad = [i for i in ids if not re.fullmatch(RUN_ID, i)]
        if not ids or bad:
            raise ValueError(f"run_ids must name MLflow run ids (32 hex digits), got {bad or 'none'}")
        return ",".join(ids)


class GovernanceChangeDetails(_Details):
    """``change_governance``: the digest of the effective governance that may weaken the baseline."""

    digest: str = Field(pattern=r"^[0-9a-f]{64}$")


OPERATION_DETAILS: dict[str, type[_Details]] = {
    "promote_production": PromoteDetails,
    "raise_privacy_budget": RaiseBudgetDetails,
    "disable_dp": DatasetDetails,
    "disable_watermark": RunDetails,
    "delete_runs": DeleteRunsDetails,
    "change_governance": GovernanceChangeDetails,
}


def validate_details(operation: str, details: Any, config: GovernanceConfig) -> dict[str, Any]:
    """The operation's details, validated: every required key, no unknown key, finite bounded values.

    Args:
        operation: A two-person operation.
        details: Its details (``key -> value``).
        config: Governance config (``privacy.max_budget_epsilon`` bounds a raise).

    Returns:
        The normalised details.

    Raises:
        ApprovalError: Naming the operation and what is wrong or missing.
    """
    model = OPERATION_DETAILS.get(operation)
    if model is None:
        raise ApprovalError(f"{operation!r} has no declared details; known: {sorted(OPERATION_DETAILS)}")
    if not isinstance(details, dict):
        raise ApprovalError(f"{operation} details must be key=value pairs")
    try:
        clean = model.model_validate(details).model_dump()
    except ValidationError as error:
        needed = ", ".join(f"--detail {name}=..." for name in model.model_fields)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'details'}: {e['msg']}" for e in error.errors())
        raise ApprovalError(f"{operation} needs {needed}: {problems}") from None
    if operation == "raise_privacy_budget":
        ceiling = config.privacy.max_budget_epsilon
        if not math.isfinite(clean["epsilon"]) or clean["epsilon"] > ceiling:
            raise ApprovalError(f"raise_privacy_budget asks for epsilon {clean['epsilon']}, above the ceiling "
                                f"privacy.max_budget_epsilon = {ceiling}")  # fmt: skip
    return clean


def details_digest(details: dict[str, Any]) -> str:
    """SHA-256 of the canonical details (what an approver approves).

    Args:
        details: Normalised details.

    Returns:
        Hex digest.
    """
    return hashlib.sha256(json.dumps(details, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_detail_args(items: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` from the command line.

    Args:
        items: ``--detail`` values.

    Returns:
        Key -> value.

    Raises:
        ApprovalError: A value without ``=`` or a key given twice.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ApprovalError(f"--detail {item!r} is not key=value")
        if key.strip() in out:
            raise ApprovalError(f"--detail {key.strip()} is given twice")
        out[key.strip()] = value.strip()
    return out


def require_server(client: Any, operation: str) -> Any:
    """The governance client, or a refusal that says how to get one.

    Args:
        client: A :class:`frugalml.governance.client.GovernanceClient` or None.
        operation: What was attempted.

    Returns:
        The client.

    Raises:
        AccessDenied: No server is configured.
    """
    if client is None:
        raise AccessDenied(f"{operation} is a two-person operation and needs an authenticated second person: "
                           f"{SETUP_HINT}")  # fmt: skip
    return client


def _record(log: AuditLog, kind: str, identity: Identity, signed: dict[str, Any], **extra: Any) -> None:
    log.append(kind, actor=identity.user, request_id=signed.get("id"), operation=signed.get("operation"),
               details=signed.get("details"), approved_by=signed.get("approved_by"),
               server_signature=signed.get("sig"), **extra)  # fmt: skip


def request_operation(log: AuditLog, client: Any, config: GovernanceConfig, identity: Identity, operation: str,
                      *, details: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """File a two-person request (validated here and on the server).

    Args:
        log: The local audit trail.
        client: The governance client (None: refused).
        config: Governance config.
        identity: The authenticated requester.
        operation: One of ``two_person_operations``.
        details: The operation's details.

    Returns:
        The signed request.

    Raises:
        ApprovalError: Not a two-person operation, or bad details.
        AccessDenied: No server, or the user may not request.
    """
    try:
        require_server(client, operation)
        check_operation(config, identity, "request")
        if operation not in config.two_person_operations:
            raise ApprovalError(f"{operation!r} is not a two-person operation: {config.two_person_operations}")
        clean = validate_details(operation, details, config)
        signed = client.request(operation, clean)
    except (AccessDenied, ApprovalError) as error:
        log.append("approval.refused", actor=identity.user, request_id="-", operation=operation, reason=str(error))
        raise
    _record(log, "approval.requested", identity, signed)
    return signed


def approve(log: AuditLog, client: Any, identity: Identity, request_id: str, shown: dict[str, Any]) -> dict[str, Any]:
    """Approve a request whose details the approver was shown.

    Args:
        log: The local audit trail.
        client: The governance client.
        identity: The approver.
        request_id: The request.
        shown: The details the approver saw (their digest is what the server checks).

    Returns:
        The signed, approved request.

    Raises:
        ApprovalError: Unknown, used or changed request; AccessDenied: self-approval or no approver role.
    """
    try:
        signed = require_server(client, "approve").approve(request_id, details_digest(shown))
    except (AccessDenied, ApprovalError) as error:
        log.append("approval.refused", actor=identity.user, request_id=request_id, reason=str(error))
        raise
    _record(log, "approval.granted", identity, signed, details_digest=details_digest(shown))
    return signed


def consume(log: AuditLog, client: Any, identity: Identity, request_id: str, operation: str,
            *, expect: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Use an approved request once, for exactly the target ``expect`` describes.

    Args:
        log: The local audit trail.
        client: The governance client.
        identity: The requester, who performs the operation.
        request_id: The request.
        operation: The operation performed.
        expect: The target's details.

    Returns:
        The signed receipt.

    Raises:
        ApprovalError: Not approved, used, for another operation or target.
    """
    try:
        receipt = require_server(client, operation).consume(request_id, operation, expect)
    except (AccessDenied, ApprovalError) as error:
        log.append("approval.refused", actor=identity.user, request_id=request_id, operation=operation,
                   reason=str(error))  # fmt: skip
        raise
    _record(log, "approval.used", identity, receipt, used_for=expect)
    return receipt


def approved_for(client: Any, identity: Identity, operation: str, **match: Any) -> list[dict[str, Any]]:
    """Approved, unused requests of ``identity`` for ``operation`` whose details match.

    Args:
        client: The governance client (None: none).
        identity: The requester.
        operation: The operation.
        **match: Detail values to match (compared as text).

    Returns:
        Matching requests, oldest first.
    """
    if client is None:
        return []
    return [r for r in client.requests()
            if r["operation"] == operation and r["state"] == "approved" and r["requested_by"] == identity.user
            and all(str(r["details"].get(k)) == str(v) for k, v in match.items())]  # fmt: skip
