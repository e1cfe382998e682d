"""The governance service inside frugalml's MLflow server (``mlflow server --app-name frugalml``).

MLflow's ``basic-auth`` app authenticates every request; on top of it this app adds, under
``/api/2.0/frugalml/``, what must not live in files the acting user can write:

- **witness**: it signs tree heads of the project's audit chain (ed25519 key in the server's own folder) only
  for records that extend the head it signed before, keeps that head, and signs a purge's genesis only for
  records older than the retention period. ``audit verify`` compares the local chain with it.
- **approvals**: two-person requests, approvals and their one-time use, stored in the server's SQLite file;
  consuming is one transaction (``BEGIN IMMEDIATE``), so two processes can never use one approval.
  Requests carry validated details; an approval names the digest of the details the approver was shown.
- **registry guard**: the protected aliases (``production``) and stage transitions to Production move only
  through ``POST /api/2.0/frugalml/registry/promote`` with an approved ``promote_production`` request;
  the REST API refuses them for everyone, admins included. Deleting runs goes through the same rule.
- **governance of record**: the server's copy of ``conf/base/governance.yml`` (read at start) is the baseline
  against which a project's effective governance is checked; approved ``change_governance`` digests are kept.

Configuration comes from the environment the server is started with (``frugalml.governance.server``):
``FRUGALML_GOVERNANCE_DIR`` (state folder, mode 0700) and ``FRUGALML_GOVERNANCE_FILE`` (governance.yml).

Modules, one concern each: :mod:`.state` (the state folder, key, database, role check), :mod:`.witness`,
:mod:`.lifecycle` (requests, approvals, the governance of record), :mod:`.guard` (the registry guard),
:mod:`.core` (:class:`GovernanceService`, all of them over one state) and :mod:`.app` (the Flask routes and
:func:`create_app`, the ``mlflow.app`` entry point). Every public name is importable from this package.
"""

from frugalml.governance.service.app import API, GOVERNANCE_DIR_ENV, GOVERNANCE_FILE_ENV, create_app, service
from frugalml.governance.service.core import GovernanceService
from frugalml.governance.service.guard import ANCHOR_TAG, GUARDED_ROUTES, RegistryGuard
from frugalml.governance.service.lifecycle import RequestLifecycle
from frugalml.governance.service.state import ServiceError, ServiceState
from frugalml.governance.service.witness import WitnessOperations

__all__ = [
    "ANCHOR_TAG",
    "API",
    "GOVERNANCE_DIR_ENV",
    "GOVERNANCE_FILE_ENV",
    "GUARDED_ROUTES",
    "GovernanceService",
    "RegistryGuard",
    "RequestLifecycle",
    "ServiceError",
    "ServiceState",
    "WitnessOperations",
    "create_app",
    "service",
]
