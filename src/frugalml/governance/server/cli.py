"""``python -m frugalml.governance.server start|provision``: the governance server from the command line.

``start`` starts the server on the project's ``mlruns/`` (:func:`.process.start_server`), provisions it and
serves until Ctrl-C (or SIGTERM); ``provision`` re-syncs a running server. Passwords come from the environment.

Both read the governance of record, ``conf/base/governance.yml``, through
:func:`frugalml.governance.rbac.load_governance_file`: the very file the server is given as ``governance_file``
and enforces, so the users provisioned are the users the server knows. The project's loader
(:func:`frugalml.governance.rbac.load_governance` with ``env=None``) would also merge any other
``conf/base/governance*`` file, which the server does not read; and ``conf/<env>`` never changes the server's
users (an override is checked against this record, :mod:`frugalml.governance.policy`).

Command line (see ``docs/server.md``)::

    FRUGALML_ADMIN_PASSWORD=... FRUGALML_PASSWORD_ALICE=... python -m frugalml.governance.server start
    python -m frugalml.governance.server provision --uri http://127.0.0.1:5001
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import Any

from frugalml.errors import GovernanceError, ParameterError
from frugalml.governance.rbac import GovernanceConfig, load_governance_file
from frugalml.governance.server.passwords import admin_password_from_env, passwords_from_env
from frugalml.governance.server.process import start_server
from frugalml.governance.server.provisioning import provision

logger = logging.getLogger("frugalml.governance.server")  # one logger for the whole server package

#: The governance of record, relative to the project root: what the server enforces and provisions from.
GOVERNANCE_FILE = Path("conf") / "base" / "governance.yml"


def governance_of_record(project: Path) -> GovernanceConfig:
    """The project's ``conf/base/governance.yml``, validated: the file the server enforces.

    Args:
        project: The project root.

    Returns:
        The validated config.

    Raises:
        GovernanceError: The project has no such file.
        ParameterError: The file is not valid YAML or not a valid governance config.
    """
    path = project / GOVERNANCE_FILE
    if not path.is_file():
        raise GovernanceError(f"no governance config at {path}")
    return load_governance_file(path)


def registered_model_names(project: Path) -> list[str]:
    """Every ``registered_model_name`` of the project's ``conf/base`` catalog (the trained, compressed and
    distilled classifiers, and any a project adds), so each user gets their roles' permission on each.

    Args:
        project: The project root.

    Returns:
        The names, sorted; ``frugalml-text-classifier`` when the catalog names none.
    """
    import yaml

    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "registered_model_name" and isinstance(value, str):
                    names.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((project / "conf" / "base").glob("catalog*.yml")):
        walk(yaml.safe_load(path.read_text()))
    return sorted(names) or ["frugalml-text-classifier"]


def _provision_from_env(uri: str, project: Path) -> dict[str, Any]:
    governance = governance_of_record(project)
    return provision(
        uri,
        governance,
        admin_password=admin_password_from_env(),
        passwords=passwords_from_env(governance.users),
        registered_models=registered_model_names(project),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m frugalml.governance.server start|provision``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0; 1 when the server died by itself; 2 after a governance error (an invalid
        governance.yml included).
    """
    parser = argparse.ArgumentParser(
        prog="python -m frugalml.governance.server", description="frugalml's authenticated MLflow server"
    )
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="project root (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start the server, provision it, serve until Ctrl-C")
    start.add_argument("--port", type=int, default=5001)
    start.add_argument("--host", default="127.0.0.1", help="a loopback address")
    commands.add_parser("provision", help="create users and grants on a running server").add_argument(
        "--uri", required=True
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    project = args.project.resolve()
    try:
        if args.command == "provision":
            _provision_from_env(args.uri, project)
            return 0
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` acts like Ctrl-C
        try:
            return _serve(args.host, args.port, project)
        finally:
            signal.signal(signal.SIGTERM, previous)
    except (GovernanceError, ParameterError) as error:
        logger.error("%s", error)
        return 2


def _serve(host: str, port: int, project: Path) -> int:
    mlruns = project / "mlruns"
    handle = start_server(
        host=host,
        port=port,
        backend_store_uri=f"sqlite:///{(mlruns / 'mlflow.db').as_posix()}",
        artifacts_destination=str(mlruns / "artifacts"),
        auth_dir=mlruns / "auth",
        admin_password=admin_password_from_env(),
        governance_file=project / GOVERNANCE_FILE,
    )
    with handle:
        _provision_from_env(handle.uri, project)
        fingerprint = (mlruns / "auth" / "governance" / "witness.fingerprint").read_text().strip()
        logger.info("MLflow server at %s (log %s); Ctrl-C stops it", handle.uri, handle.log_path)
        logger.info(
            "witness key %s: pin it in conf/base/governance.yml as identity: {server: %s, server_fingerprint: %s}",
            fingerprint,
            handle.uri,
            fingerprint,
        )
        try:
            code = handle.process.wait()
        except KeyboardInterrupt:
            return 0
    logger.error("the MLflow server exited by itself (code %s); log %s", code, handle.log_path)
    return 1
