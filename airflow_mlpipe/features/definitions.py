"""Feature definitions as versioned code: load them from the DAG bundle, digest them, apply them.

Definitions are ordinary Python: a file (``features/churn.py``), a directory of files (a Feast
repository, as ``feast apply`` reads it) or an importable module (``my_pkg.features.churn``).
Every Feast object found at module level — entities, data sources, feature views, on-demand
views, feature services — is applied. The digest of the source files is the lineage that ties a
training set and a model to the exact definition code that produced their features.

A view's batch source must be one the store's offline store reads: ``FileSource`` (parquet) with
the ``file`` offline store, ``PostgreSQLSource(name=..., table=... or query=..., timestamp_field=...)``
with the ``postgres`` one. A mismatch is refused before anything is applied, naming what to set.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.hooks.feast import POSTGRES_OFFLINE_EXAMPLE, offline_store_type

if TYPE_CHECKING:
    from feast import FeatureStore

_SKIP_DIRS = {".git", ".venv", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", "data"}


@dataclass
class Definitions:
    """Feast objects loaded from code, with the files they came from and their digest."""

    objects: list[Any]
    files: list[Path]
    digest: str
    source: str
    names: dict[str, list[str]] = field(default_factory=dict)


def locate(definitions: str, search_paths: Sequence[str | os.PathLike[str]] = ()) -> Path | str:
    """The file/directory ``definitions`` names (relative to a search path), or the module path.

    ``"features/churn.py"`` is looked up in each search path (the DAG folder first), then the
    working directory; ``"pkg.features"`` (no slash, no ``.py``) is an import path.
    """
    text = os.fspath(definitions)
    looks_like_path = text.endswith(".py") or os.sep in text or "/" in text or os.path.isabs(text)
    if not looks_like_path:
        return text
    candidates = [Path(text)] if os.path.isabs(text) else [Path(p) / text for p in search_paths]
    candidates.append(Path(text))
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise ConfigError(
        f"Feature definitions {text!r} not found (looked in {[str(c) for c in candidates]}); give a "
        "path relative to the DAG folder, an absolute path or an import path."
    )


def _python_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = [
        p
        for p in root.rglob("*.py")
        if p.name != "__init__.py" and not (set(p.relative_to(root).parts[:-1]) & _SKIP_DIRS)
    ]
    return sorted(files)


def source_digest(files: Sequence[Path], root: Path | None = None) -> str:
    """SHA-256 over the files' names (relative to ``root``) and bytes, in name order."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(root) if root else Path(f.name)).encode() + b"\0")
        h.update(f.read_bytes())
    return f"sha256:{h.hexdigest()}"


@contextlib.contextmanager
def _on_sys_path(directory: Path) -> Iterator[None]:
    # A definitions file may import its siblings (shared entities, sources).
    added = str(directory) not in sys.path
    if added:
        sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(directory))


def _exec_file(path: Path) -> ModuleType:
    name = "mlpipe_feature_defs_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"Cannot load feature definitions from {path}.")
    module = importlib.util.module_from_spec(spec)
    with _on_sys_path(path.parent):
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(
                f"Feature definitions {path} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
    return module


def _feast_objects(modules: Sequence[ModuleType]) -> list[Any]:
    feast = require("feast")
    from feast.data_source import DataSource

    kinds = (
        feast.Entity,
        DataSource,
        feast.FeatureView,
        feast.BatchFeatureView,
        feast.OnDemandFeatureView,
        feast.StreamFeatureView,
        feast.FeatureService,
    )
    found: list[Any] = []
    for module in modules:
        for attr in sorted(vars(module)):
            obj = getattr(module, attr)
            if isinstance(obj, kinds) and not any(obj is seen for seen in found):
                found.append(obj)
    return found


def load_definitions(definitions: str, search_paths: Sequence[str | os.PathLike[str]] = ()) -> Definitions:
    """Import the definitions and collect their Feast objects.

    :raises ConfigError: not found, failing to import, or defining no Feast object.
    """
    where = locate(definitions, search_paths)
    if isinstance(where, Path):
        files = _python_files(where)
        if not files:
            raise ConfigError(f"No Python files in feature definitions directory {where}.")
        modules = [_exec_file(f) for f in files]
        root = where if where.is_dir() else None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ConfigError(f"Cannot import feature definitions module {where!r}: {exc}") from exc
        modules = [module]
        files = [Path(str(module.__file__))] if getattr(module, "__file__", None) else []
        root = None
    objects = _feast_objects(modules)
    if not objects:
        raise ConfigError(f"Feature definitions {definitions!r} define no Feast object at module level.")
    names: dict[str, list[str]] = {}
    for obj in objects:
        names.setdefault(type(obj).__name__, []).append(getattr(obj, "name", ""))
    digest = source_digest(files, root) if files else "sha256:unknown"
    return Definitions(objects=objects, files=files, digest=digest, source=str(where), names=names)


def _source_kind(source: Any) -> str | None:
    """``"file"`` / ``"postgres"`` for the batch sources this project supports, else ``None``."""
    from feast import FileSource
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

    if isinstance(source, PostgreSQLSource):
        return "postgres"
    if isinstance(source, FileSource):
        return "file"
    return None


def _check_postgres_source(source: Any, owner: str) -> None:
    options = source._postgres_options  # Feast exposes no public accessor for these
    table, query = options._table or None, options._query or None
    if bool(table) == bool(query):
        raise ConfigError(
            f"{owner}PostgreSQLSource {source.name!r} needs exactly one of table= (a table or view, "
            f"optionally schema-qualified) or query= (a SELECT); it has {'both' if table else 'neither'}."
        )
    if not source.timestamp_field:
        raise ConfigError(
            f"{owner}PostgreSQLSource {source.name!r} needs timestamp_field= (its event-time column); "
            "the point-in-time join and materialization filter on it."
        )


def check_sources(objects: Sequence[Any], store_type: str) -> None:
    """Refuse batch sources the offline store ``store_type`` cannot read, saying what to set.

    :param objects: Feast objects (data sources and feature views; others are ignored).
    :raises ConfigError: a ``PostgreSQLSource`` without the ``postgres`` offline store, a
        ``FileSource`` with it, or a ``PostgreSQLSource`` without table/query or timestamp field.
    """
    require("feast")
    for obj in objects:
        source = getattr(obj, "batch_source", obj)
        owner = "" if source is obj else f"{type(obj).__name__} {obj.name!r}: "
        kind = _source_kind(source)
        if kind == "postgres":
            _check_postgres_source(source, owner)
            if store_type != "postgres":
                raise ConfigError(
                    f"{owner}PostgreSQLSource {source.name!r} needs the postgres offline store, but "
                    f"the Feast store's offline store is {store_type!r}. Set it in the Feast "
                    f"connection's extra (or feature_store.yaml), e.g. {POSTGRES_OFFLINE_EXAMPLE}."
                )
        elif kind == "file" and store_type == "postgres":
            raise ConfigError(
                f"{owner}FileSource {source.name!r} cannot be read by the postgres offline store. "
                "Load the data into a table and declare PostgreSQLSource(name=..., table=... or "
                'query=..., timestamp_field=...), or use {"offline_store": {"type": "file"}}.'
            )


def apply_definitions(store: FeatureStore, defs: Definitions, *, prune: bool = False) -> list[str]:
    """Register ``defs`` in the store (idempotent); with ``prune`` remove registered objects they lack.

    :returns: the names of the objects removed.
    :raises ConfigError: Feast refuses the definitions, or a source does not fit the offline store
        (see :func:`check_sources`).
    """
    feast = require("feast")
    check_sources(defs.objects, offline_store_type(store.config))
    to_delete: list[Any] = []
    if prune:
        defined = {(type(o).__name__, o.name) for o in defs.objects}
        listed = (
            list(store.list_feature_services())
            + list(store.list_feature_views())
            + list(store.list_on_demand_feature_views())
            + [e for e in store.list_entities() if e.name != "__dummy"]
        )
        to_delete = [o for o in listed if (type(o).__name__, o.name) not in defined]
    try:
        if to_delete:
            store.apply(defs.objects, objects_to_delete=to_delete, partial=False)
        else:
            store.apply(defs.objects)
    except (ValueError, TypeError, feast.errors.FeastError) as exc:
        raise ConfigError(f"Feast refused the feature definitions {defs.source}: {exc}") from exc
    return [f"{type(o).__name__}:{o.name}" for o in to_delete]
