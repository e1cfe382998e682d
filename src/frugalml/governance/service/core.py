"""The governance service: the witness, the request lifecycle and the registry guard over one state."""

from __future__ import annotations

from frugalml.governance.service.guard import RegistryGuard
from frugalml.governance.service.witness import WitnessOperations


class GovernanceService(RegistryGuard, WitnessOperations):
    """The server-side state and rules (no Flask here, so it can be reasoned about and tested directly)."""
