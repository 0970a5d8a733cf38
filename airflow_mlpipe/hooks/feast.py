"""Access to a Feast feature store through an Airflow connection.

Where the store's configuration comes from, in order:

1. ``config`` given in code: a ``feature_store.yaml``-shaped dict or a Feast ``RepoConfig``;
2. ``repo_path`` given in code, else the connection's *host*: a Feast repository directory
   holding ``feature_store.yaml`` (or the path of that YAML file itself);
3. the embedded default: project ``mlpipe``, local provider, file (parquet) offline store, SQLite
   online store and a registry file, both under ``<artifact root>/feast``.

The connection's *extra* is merged on top, key by key (``{"online_store": {...}, "registry":
{...}}`` turns the embedded default or a repository into a production store, e.g. Redis online
store + SQL registry on PostgreSQL, or ``{"offline_store": {"type": "postgres", ...}}`` for
training sets joined in the warehouse), and may name the repository as ``{"repo_path": ...}``.

The hook keeps the configuration as a plain, JSON-able dict (:meth:`FeastHook.repo_config`) so it
can travel to the serving process (:mod:`airflow_mlpipe.features.online`). ``${VAR}`` references
stay unexpanded in that dict and are expanded — as Feast does for ``feature_store.yaml`` — only
when a store is built, so a password kept in the environment never reaches XCom.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.storage import artifact_root, local_path
from airflow_mlpipe.core.yamlio import load_yaml
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.hooks.base import OptionalConnectionHook

if TYPE_CHECKING:
    from feast import FeatureStore

DEFAULT_PROJECT = "mlpipe"
_YAML = "feature_store.yaml"
#: settings a ``{"type": "postgres"}`` offline store cannot do without (Feast has no default for them)
POSTGRES_OFFLINE_REQUIRED = ("host", "database", "user", "password")
#: a complete ``postgres`` offline store setting, quoted by the errors that ask for one
POSTGRES_OFFLINE_EXAMPLE = (
    '{"offline_store": {"type": "postgres", "host": "pg.internal", "port": 5432, "database": "warehouse", '
    '"db_schema": "public", "user": "feast", "password": "${FEAST_PG_PASSWORD}"}}'
)


def default_repo_config() -> dict[str, Any]:
    """The embedded store: SQLite online store and registry file under ``<artifact root>/feast``."""
    local = local_path(artifact_root() / "feast")
    if local is None:
        raise ConfigError(
            "The embedded Feast default needs a local artifact root; configure a Feast repository "
            "(connection host) or pass config=... to the hook."
        )
    os.makedirs(local, exist_ok=True)
    return {
        "project": DEFAULT_PROJECT,
        "provider": "local",
        "registry": {"registry_type": "file", "path": f"{local}/registry.db"},
        "online_store": {"type": "sqlite", "path": f"{local}/online_store.db"},
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
        "repo_path": local,
    }


def load_repo_yaml(repo_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``feature_store.yaml`` of a repository (directory or YAML file) without expanding ``${VAR}``."""

    path = Path(os.fspath(repo_path)).expanduser()
    yaml_file = path if path.suffix in (".yaml", ".yml") else path / _YAML
    if not yaml_file.is_file():
        raise ConfigError(
            f"No Feast configuration at {yaml_file}; point repo_path (or the connection host) at a "
            f"directory holding {_YAML}, or pass config=..."
        )
    data = load_yaml(yaml_file.read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"{yaml_file} is not a mapping of Feast settings.")
    data["repo_path"] = str(yaml_file.parent.resolve())
    return data


def _absolute(path: Any, repo: str) -> Any:
    if not isinstance(path, str) or not path or "://" in path or path.startswith("$"):
        return path
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(repo, path))


def normalise_repo_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-able copy of ``config`` with local file paths made absolute (valid in any process)."""
    cfg = copy.deepcopy(dict(config))
    if "project" not in cfg:
        raise ConfigError(f"The Feast configuration has no 'project': {sorted(cfg)}.")
    if "registry" not in cfg:
        raise ConfigError("The Feast configuration has no 'registry'.")
    repo = str(Path(os.fspath(cfg.get("repo_path") or os.getcwd())).expanduser().resolve())
    cfg["repo_path"] = repo
    registry = cfg["registry"]
    if isinstance(registry, str):
        cfg["registry"] = _absolute(registry, repo)
    elif isinstance(registry, Mapping) and registry.get("registry_type", "file") == "file":
        cfg["registry"] = {**registry, "path": _absolute(registry.get("path"), repo)}
    online = cfg.get("online_store")
    if isinstance(online, Mapping) and online.get("type", "sqlite") == "sqlite" and "path" in online:
        cfg["online_store"] = {**online, "path": _absolute(online["path"], repo)}
    check_offline_store(cfg)
    return cfg


def offline_store_type(config: Mapping[str, Any] | Any) -> str:
    """The offline store's ``type`` (``"file"`` when unset) of a configuration dict or ``RepoConfig``."""
    if isinstance(config, Mapping):
        offline = config.get("offline_store")
        if offline is None:
            return "file"
        if isinstance(offline, str):
            return offline
        return str(offline.get("type", "file")) if isinstance(offline, Mapping) else "file"
    offline = getattr(config, "offline_store", None)
    return str(getattr(offline, "type", "file") or "file")


def check_offline_store(config: Mapping[str, Any]) -> None:
    """Refuse a ``postgres`` offline store that lacks a setting, naming it and showing a complete one.

    Feast's own message for this is a pydantic dump; this one says what to set. ``password`` may be
    ``""`` for trust authentication; keep a real one in the environment (``"${FEAST_PG_PASSWORD}"``).
    """
    offline = config.get("offline_store")
    if offline_store_type(config) != "postgres" or not isinstance(offline, Mapping):
        return
    missing = [k for k in POSTGRES_OFFLINE_REQUIRED if offline.get(k) is None]
    if missing:
        raise ConfigError(
            f"The postgres offline store lacks {missing}; set them in the Feast connection's extra "
            f'(or feature_store.yaml), e.g. {POSTGRES_OFFLINE_EXAMPLE}. password may be "" for trust auth.'
        )
    wrong = [k for k in POSTGRES_OFFLINE_REQUIRED if not isinstance(offline[k], str)]
    if wrong:
        raise ConfigError(
            f"offline_store setting(s) {wrong} must be strings, got {[offline[k] for k in wrong]}."
        )
    port = offline.get("port", 5432)
    if isinstance(port, bool) or not str(port).isdigit():
        raise ConfigError(f"offline_store.port must be a port number, got {port!r}.")


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return os.path.expandvars(value)
    if isinstance(value, Mapping):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def build_store(config: Mapping[str, Any]) -> FeatureStore:
    """A Feast ``FeatureStore`` for a (normalised) configuration dict."""
    feast = require("feast")
    from pydantic import ValidationError

    expanded = _expand(dict(config))
    try:
        repo_config = feast.RepoConfig(**expanded)
    except ValidationError as exc:
        raise ConfigError(f"Invalid Feast configuration: {exc}") from None
    repo_config.repo_path = Path(expanded["repo_path"])
    return feast.FeatureStore(repo_path=str(expanded["repo_path"]), config=repo_config)


def _config_to_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    dump = getattr(config, "model_dump", None)
    if dump is None:
        raise ConfigError(f"config must be a dict or a feast RepoConfig, got {type(config).__name__}.")
    data: dict[str, Any] = dump(by_alias=True, exclude_none=True, mode="json")
    return data


class FeastHook(OptionalConnectionHook):
    """A Feast feature store configured by an Airflow connection, a repository or code.

    :param feast_conn_id: Airflow connection (type ``mlpipe_feast``); a missing connection means
        "no overrides" (the repository, the ``config`` argument or the embedded default is used).
    :param repo_path: Feast repository (directory with ``feature_store.yaml``, or the file).
    :param config: the store configuration as a ``feature_store.yaml``-shaped dict or ``RepoConfig``.
    """

    conn_name_attr = "feast_conn_id"
    default_conn_name = "mlpipe_feast_default"
    conn_type = "mlpipe_feast"
    hook_name = "Feast feature store (mlpipe)"

    def __init__(
        self,
        feast_conn_id: str = default_conn_name,
        *,
        repo_path: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | Any | None = None,
    ) -> None:
        super().__init__()
        self.feast_conn_id = feast_conn_id
        self.repo_path = None if repo_path is None else os.fspath(repo_path)
        self.config = config
        self._store: FeatureStore | None = None

    def repo_config(self) -> dict[str, Any]:
        """The store configuration as a JSON-able dict (``${VAR}`` references unexpanded)."""
        conn = self.connection
        extra = dict((conn.extra_dejson if conn is not None else {}) or {})
        repo = self.repo_path or extra.pop("repo_path", None) or (conn.host if conn is not None else None)
        extra.pop("repo_path", None)
        if self.config is not None:
            base = _config_to_dict(self.config)
            if repo and "repo_path" not in base:
                base["repo_path"] = repo
        elif repo:
            base = load_repo_yaml(repo)
        else:
            base = default_repo_config()
        base.update(extra)  # the connection's settings win over the repository's
        return normalise_repo_config(base)

    @property
    def project(self) -> str:
        return str(self.repo_config()["project"])

    def get_store(self) -> FeatureStore:
        """The ``feast.FeatureStore`` (built once per hook)."""
        if self._store is None:
            self._store = build_store(self.repo_config())
        return self._store

    def test_connection(self) -> tuple[bool, str]:
        try:
            store = self.get_store()
            store.refresh_registry()
            views = store.list_feature_views()
        except Exception as exc:
            return False, f"Feast store is not usable: {type(exc).__name__}: {exc}"
        return True, f"Feast project {store.project!r}: registry reachable, {len(views)} feature view(s)."
