"""Lifetime privacy ledger: every DP training spends (epsilon, delta) of the rows it trained on.

The ledger is keyed by **content, row by row**: each training row is identified by a hash of each of its
normalised text values (``data.text_columns``; whitespace and case folded). A ``privacy.spend`` audit event
records epsilon, delta and the digest of a content-addressed *row set* file (``<audit dir>/rowsets/``) with the
value hashes of every row. A row's spent epsilon is the sum over every earlier spend that holds any of its
values, so dropping or renaming a column, re-ordering, sub-sampling or re-exporting the same rows does not buy a
fresh budget (sharing any one text value counts as the same row: conservative). Composition is basic (epsilons
and deltas add up).

A training is refused before it starts when its most-spent row would exceed the lifetime budget
(``privacy.default_budget_epsilon``, or ``privacy.budgets[KEY]``), unless an approved
``raise_privacy_budget`` request for the training set (``--detail dataset=KEY --detail epsilon=NEW``) is used;
``KEY`` is ``rows:<digest>`` of the set, printed in every refusal. Under
``privacy.require_dp`` (the default) a training with DP off needs an approved ``disable_dp`` request for KEY:
one approval, one run. Every decision first verifies the whole audit trail (signed anchors, witness, MLflow).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalml.errors import AuditIntegrityError, GovernanceError
from frugalml.governance.audit import AuditLog
from frugalml.governance.rbac import SETUP_HINT, GovernanceConfig, Identity


def _normalise(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).lower().split())


def _value_hash(text: str) -> int:
    if not text:
        return 0
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") or 1


def row_hashes(frame: pd.DataFrame, text_columns: list[str]) -> np.ndarray:
    """One hash per row and text column of the normalised value (0 for an empty value).

    Args:
        frame: Training rows.
        text_columns: ``data.text_columns`` (those present are used; the column *names* do not matter).

    Returns:
        ``uint64`` array of shape ``(rows, columns)``.

    Raises:
        GovernanceError: None of the text columns is in the frame (the rows cannot be accounted).
    """
    columns = [c for c in text_columns if c in frame.columns]
    if not columns:
        raise GovernanceError(
            f"the privacy ledger cannot identify the training rows: none of data.text_columns "
            f"{text_columns} is a column of the training set ({list(frame.columns)[:10]})"
        )
    out = np.zeros((len(frame), len(columns)), dtype=np.uint64)
    for j, column in enumerate(columns):
        out[:, j] = [_value_hash(_normalise(v)) for v in frame[column].tolist()]
    return out


def rowset(hashes: np.ndarray) -> np.ndarray:
    """The sorted, unique, non-empty value hashes of a training set.

    Args:
        hashes: :func:`row_hashes` output.

    Returns:
        1-d ``uint64`` array.
    """
    values = np.unique(hashes.ravel())
    return values[values != 0]


def ledger_key(hashes: np.ndarray) -> str:
    """The training set's key (``rows:<16 hex digits>``), used in budgets and approvals.

    Args:
        hashes: :func:`row_hashes` output.

    Returns:
        The key.
    """
    return "rows:" + hashlib.sha256(rowset(hashes).astype("<u8").tobytes()).hexdigest()[:16]


def _rowset_dir(log: AuditLog) -> Path:
    return log.path.parent / "rowsets"


def save_rowset(log: AuditLog, hashes: np.ndarray) -> str:
    """Write the training set's row set (content-addressed, read-only) beside the audit log.

    Args:
        log: The audit trail.
        hashes: :func:`row_hashes` output.

    Returns:
        The file's SHA-256 (what the ``privacy.spend`` event records).
    """
    data = rowset(hashes).astype("<u8").tobytes()
    digest = hashlib.sha256(data).hexdigest()
    path = _rowset_dir(log) / f"{digest}.u64"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(data)
        os.chmod(temporary, 0o444)
        temporary.replace(path)
    return digest


def _load_rowset(log: AuditLog, digest: str) -> np.ndarray:
    path = _rowset_dir(log) / f"{digest}.u64"
    if not path.is_file():
        raise AuditIntegrityError(f"the privacy ledger's row set {path} is missing: the spends it records cannot be "
                                  "accounted, so no DP decision is made; restore it from a backup")  # fmt: skip
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise AuditIntegrityError(f"the privacy ledger's row set {path} was altered (its digest differs)")
    return np.frombuffer(data, dtype="<u8")


def _spends(log: AuditLog) -> list[dict[str, Any]]:
    log.require_intact()
    return [r["data"] for r in log.records() if r["kind"] == "privacy.spend"]


def per_row_spent(log: AuditLog, hashes: np.ndarray) -> np.ndarray:
    """Epsilon already spent by each row (over every recorded spend that holds any of its values).

    Args:
        log: The audit trail (verified first).
        hashes: :func:`row_hashes` of the rows.

    Returns:
        Epsilon per row.
    """
    total = np.zeros(len(hashes), dtype=float)
    present = hashes != 0
    for spend in _spends(log):
        if "rowset" not in spend:
            raise AuditIntegrityError(f"a privacy.spend record has no row set ({spend.get('dataset')}): recorded by "
                                      "an older frugalml; it cannot be accounted row by row")  # fmt: skip
        members = np.isin(hashes, _load_rowset(log, spend["rowset"])) & present
        total += members.any(axis=1) * float(spend["epsilon"])
    return total


def spent(log: AuditLog) -> dict[str, dict[str, float]]:
    """Epsilon and delta spent per training-set key, from the verified audit trail.

    Args:
        log: The audit trail.

    Returns:
        Key -> ``{"epsilon", "delta", "runs"}``.
    """
    totals: dict[str, dict[str, float]] = {}
    for spend in _spends(log):
        entry = totals.setdefault(spend["dataset"], {"epsilon": 0.0, "delta": 0.0, "runs": 0})
        entry["epsilon"] += float(spend["epsilon"])
        entry["delta"] += float(spend["delta"])
        entry["runs"] += 1
    return totals


def budget_of(config: GovernanceConfig, key: str, client: Any) -> float:
    """The lifetime budget of a training set: configured, or raised by a used approval on the server.

    Raises are read from the governance server's own records, never from the local trail (a record there is
    only a copy, which someone with file access could write). Without a server nothing is raised.

    Args:
        config: Governance config.
        key: Ledger key.
        client: The governance client, or None.

    Returns:
        Epsilon budget.
    """
    budget = config.privacy.budgets.get(key, config.privacy.default_budget_epsilon)
    if client is None:
        return budget
    for request in client.requests():
        if (request["operation"] == "raise_privacy_budget" and request["state"] == "used"
                and request["details"].get("dataset") == key):  # fmt: skip
            budget = max(budget, float(request["details"]["epsilon"]))
    return budget


def authorise_spend(log: AuditLog, client: Any, config: GovernanceConfig, identity: Identity, hashes: np.ndarray,
                    *, epsilon: float) -> None:  # fmt: skip
    """Refuse a DP training whose most-spent row would exceed its budget (using an approved raise if any).

    Args:
        log: The audit trail.
        client: The governance client (None: no approvals are possible).
        config: Governance config.
        identity: Who trains.
        hashes: :func:`row_hashes` of the training rows.
        epsilon: The epsilon it will spend (its target).

    Raises:
        GovernanceError: Over budget without an approved raise (audited).
    """
    from frugalml.governance.approvals import approved_for, consume

    key = ledger_key(hashes)
    worst = float(per_row_spent(log, hashes).max(initial=0.0))
    needed = worst + epsilon
    budget = budget_of(config, key, client)
    if needed <= budget + 1e-9:
        return
    for request in approved_for(client, identity, "raise_privacy_budget", dataset=key):
        if float(request["details"]["epsilon"]) >= needed - 1e-9:
            consume(log, client, identity, request["id"], "raise_privacy_budget",
                    expect={"dataset": key, "epsilon": request["details"]["epsilon"]})  # fmt: skip
            return
    how = (
        (
            f"ask for `frugalml request raise_privacy_budget --detail dataset={key} --detail epsilon=<new budget>` "
            "and a second person's approval"
        )
        if client is not None
        else f"raising it needs two people: {SETUP_HINT}"
    )
    message = (f"privacy budget of {key} would be exceeded: its most-used rows have spent {worst:.3f}, + this run "
               f"{epsilon:.3f} > budget {budget:.3f}; {how}")  # fmt: skip
    log.append("rbac.refused", actor=identity.user, operation="privacy.spend", dataset=key, reason=message)
    raise GovernanceError(message)


def authorise_nonprivate(log: AuditLog, client: Any, config: GovernanceConfig, identity: Identity,
                         hashes: np.ndarray) -> None:  # fmt: skip
    """Refuse a training with DP off, unless DP is not required or a second person approved this set.

    Args:
        log: The audit trail.
        client: The governance client (None: refused when DP is required).
        config: Governance config (``privacy.require_dp``).
        identity: Who trains.
        hashes: :func:`row_hashes` of the training rows.

    Raises:
        GovernanceError: DP is required and no approved ``disable_dp`` request of this user covers the set.
    """
    if not config.privacy.require_dp:
        return
    from frugalml.governance.approvals import approved_for, consume

    log.require_intact()
    key = ledger_key(hashes)
    for request in approved_for(client, identity, "disable_dp", dataset=key):
        consume(log, client, identity, request["id"], "disable_dp", expect={"dataset": key})
        return
    how = (
        f"ask for `frugalml request disable_dp --detail dataset={key}` and an approval, or train with DP"
        if client is not None
        else f"or train with DP; an approval needs two people: {SETUP_HINT}"
    )
    message = (f"training {key} without differential privacy needs a second person: governance "
               f"privacy.require_dp is on and train.privacy.enabled is false; {how}")  # fmt: skip
    log.append("rbac.refused", actor=identity.user, operation="disable_dp", dataset=key, reason=message)
    raise GovernanceError(message)


def record_spend(log: AuditLog, identity: Identity, run_id: str | None, hashes: np.ndarray,
                 report: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Record what a DP training spent (row set file + ``privacy.spend`` event).

    Args:
        log: The audit trail.
        identity: Who trained.
        run_id: The MLflow run.
        hashes: :func:`row_hashes` of the training rows.
        report: The privacy report (``epsilon``, ``delta``, ``noise_multiplier``, ``steps``).

    Returns:
        The record.
    """
    digest = save_rowset(log, hashes)
    return log.append("privacy.spend", actor=identity.user, run_id=run_id, dataset=ledger_key(hashes),
                      rowset=digest, rows=len(hashes), epsilon=report["epsilon"], delta=report["delta"],
                      noise_multiplier=report["noise_multiplier"], steps=report["steps"])  # fmt: skip


def status(log: AuditLog, config: GovernanceConfig, client: Any = None) -> list[dict[str, Any]]:
    """Spent and remaining budget per training-set key that has a spend or a configured budget.

    Args:
        log: The audit trail.
        config: Governance config.
        client: The governance client (raised budgets), or None.

    Returns:
        One row per key.
    """
    totals = spent(log)
    rows = []
    for key in sorted(set(totals) | set(config.privacy.budgets)):
        budget, used = budget_of(config, key, client), totals.get(key, {}).get("epsilon", 0.0)
        rows.append({"dataset": key, "budget": budget, "spent": used, "remaining": budget - used,
                     "runs": int(totals.get(key, {}).get("runs", 0))})  # fmt: skip
    return rows
