"""Deployment checklist (``frugalml check``): each item passes, fails, is skipped or is unknown, with a reason.

Statuses: ``pass``; ``fail``; ``unknown`` (the item could not be established, e.g. no dependency could be
audited: never reported as safe, and ``frugalml check`` exits 1 on it, see :func:`exit_status`); ``skipped``
(the user switched the item off, e.g. ``--no-scan``).

Modules, one concern each: :mod:`.items` (an item, the statuses, the exit status), :mod:`.secret_scan` (secrets
in git and in MLflow parameters, the detect-secrets baseline), :mod:`.model` (safe artifact formats, DP of the
registered versions), :mod:`.dependencies` (pip-audit) and :mod:`.runner` (:func:`run_checklist`, every item in
order). Every public name is importable from this package.
"""

from frugalml.governance.checklist.dependencies import check_dependencies, installed_requirements
from frugalml.governance.checklist.items import BLOCKING_STATUSES, STATUSES, CheckItem, exit_status
from frugalml.governance.checklist.model import (
    EPSILON_METRIC,
    MAX_EPSILON,
    SAFE_SUFFIXES,
    UNSAFE_SUFFIXES,
    check_model_formats,
    check_registered_versions_dp,
)
from frugalml.governance.checklist.runner import run_checklist
from frugalml.governance.checklist.secret_scan import (
    SECRET_PARAM_NAMES,
    SECRETS_BASELINE,
    check_secrets_in_git,
    check_secrets_in_mlflow,
    scan_for_secrets,
    secret_scan_config,
    tracked_files,
    write_secrets_baseline,
)

__all__ = [
    "BLOCKING_STATUSES",
    "EPSILON_METRIC",
    "MAX_EPSILON",
    "SAFE_SUFFIXES",
    "SECRETS_BASELINE",
    "SECRET_PARAM_NAMES",
    "STATUSES",
    "UNSAFE_SUFFIXES",
    "CheckItem",
    "check_dependencies",
    "check_model_formats",
    "check_registered_versions_dp",
    "check_secrets_in_git",
    "check_secrets_in_mlflow",
    "exit_status",
    "installed_requirements",
    "run_checklist",
    "scan_for_secrets",
    "secret_scan_config",
    "tracked_files",
    "write_secrets_baseline",
]
