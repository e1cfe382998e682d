"""Governance: tamper-evident audit trail, RBAC, two-person approvals, retention, deployment checklist.

Governance is hooks and commands, never code in nodes: see :mod:`frugalml.governance.hooks` and
:mod:`frugalml.cli`.
"""
