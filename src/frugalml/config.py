"""The project's configuration, read one way: Kedro's ``OmegaConfigLoader`` with the project's settings.

``settings.py`` hands :data:`CONFIG_LOADER_ARGS` to Kedro; everything else that reads ``conf/`` outside a Kedro
session (the governance hooks and CLI, the server, tests, benchmarks) calls :func:`load_config`, so a
fact such as the tracking URI or the corpus digest is written once, in ``conf/``, and read the same way
everywhere. A missing file is Kedro's ``MissingConfigException`` (caught here, and only that), never a blanket
``except Exception``.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException, OmegaConfigLoader
from kedro.utils import find_kedro_project

#: the project root that :func:`load_config` is reading (None: the project of the working directory)
_READING: ContextVar[Path | None] = ContextVar("frugalml_config_root", default=None)


def project_path(relative: str = ".") -> str:
    """``${frugalml.project_path:mlruns}`` in config: a path under the project root, made absolute.

    MLflow caches stores by URI, so a relative ``sqlite:///mlruns/...`` would keep pointing at the first
    project a process touched; an absolute URI names the right database every time. The root is the project
    :func:`load_config` is reading, else the Kedro project of the working directory. (OmegaConf keeps the
    first resolver registered under a name for the whole process, so the resolver itself never changes.)
    """
    root = _READING.get() or find_kedro_project(Path.cwd()) or Path.cwd()
    return str((Path(root) / relative).resolve())


CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    # `conf/local/parameters.yml` may override one nested key without repeating its whole block
    "merge_strategy": {"parameters": "soft"},
    "custom_resolvers": {"frugalml.project_path": project_path},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
        "governance": ["governance*"],
    },
}


def config_loader(conf_source: str | Path = "conf", env: str | None = "local") -> OmegaConfigLoader:
    """The loader a Kedro session would build for ``conf_source`` (``env=None``: ``base`` alone)."""
    args = dict(CONFIG_LOADER_ARGS)
    if env is None:
        args["default_run_env"] = "base"
    return OmegaConfigLoader(conf_source=str(conf_source), env=env or "base", **args)


def load_config(key: str, conf_source: str | Path = "conf", env: str | None = "local", default: Any = None) -> Any:
    """One section of the project's configuration (``catalog``, ``parameters``, ``mlflow``, ``governance``).

    Args:
        key: The config pattern key.
        conf_source: The ``conf`` folder.
        env: The run environment layered over ``base`` (``None``: ``base`` alone, the committed files).
        default: Returned when no file of that section exists.

    ``${frugalml.project_path:...}`` resolves under the folder holding ``conf_source`` (the project root),
    whatever the working directory.

    Returns:
        The merged section, or ``default`` when it has no file.
    """
    token = _READING.set(Path(conf_source).resolve().parent)  # `${frugalml.project_path:...}` under this project
    try:
        return config_loader(conf_source, env)[key]
    except MissingConfigException:
        return default
    finally:
        _READING.reset(token)


def tracking_uri(project: str | Path = ".", env: str | None = "local") -> str:
    """The MLflow tracking URI of ``conf/<env>/mlflow.yml`` with the project's paths made absolute."""
    project = Path(project).resolve()
    mlflow_conf = load_config("mlflow", project / "conf", env, default={}) or {}
    uri = (mlflow_conf.get("server") or {}).get("mlflow_tracking_uri")
    return str(uri or f"sqlite:///{(project / 'mlruns' / 'mlflow.db').as_posix()}")


def corpus_sources(conf_source: str | Path = "conf", env: str | None = None) -> list[dict[str, Any]]:
    """The sources (with their pinned SHA-256) of the catalog's ``spam_corpus_archive``."""
    catalog = load_config("catalog", conf_source, env, default={}) or {}
    entry = catalog.get("spam_corpus_archive") or {}
    return [dict(source) for source in entry.get("sources") or []]


def corpus_sha256(conf_source: str | Path = "conf", env: str | None = None) -> str:
    """The corpus digest pinned in the catalog (every source of the entry pins the same one).

    Raises:
        ValueError: When the catalog pins none, or different digests.
    """
    digests = {str(s["sha256"]) for s in corpus_sources(conf_source, env) if s.get("sha256")}
    if len(digests) != 1:
        raise ValueError(f"spam_corpus_archive in {conf_source}/ should pin one sha256, found {sorted(digests)}")
    return digests.pop()
