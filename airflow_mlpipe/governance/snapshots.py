"""Content-addressed snapshots of training sets and holdouts under the artifact root.

Layout: ``<root>/snapshots/<model>/<algorithm>/<hex>/data[/…]`` plus a ``manifest.json`` written
last (its presence means the copy is complete). The directory name is the content digest
(:func:`~airflow_mlpipe.core.datasets.file_digest`), so a version trained on unchanged data points at
the snapshot an earlier version made and costs nothing. Lineage points at the snapshot, which
outlives the source path that later batches may overwrite.

Retention (:class:`RetentionConfig`) keeps the snapshots of the newest versions and of every version
behind a protected alias; deleting a snapshot that the ``champion`` or ``previous`` version needs is
refused with :class:`SnapshotInUse`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core import registry
from airflow_mlpipe.core.datasets import file_digest
from airflow_mlpipe.core.storage import artifact_root, local_path, resolve, safe_segment
from airflow_mlpipe.exceptions import ConfigError, DataError, MlpipeError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

MANIFEST = "manifest.json"
PAYLOAD = "data"
#: aliases whose versions' snapshots are never deleted (a rollback or an audit needs them)
REQUIRED_ALIASES = (cv.ALIAS_CHAMPION, cv.ALIAS_PREVIOUS)
#: (uri tag, digest tag) of each snapshot a version records
SNAPSHOT_TAGS = (
    (cv.TAG_SNAPSHOT_TRAINING_URI, cv.TAG_SNAPSHOT_TRAINING_DIGEST),
    (cv.TAG_SNAPSHOT_HOLDOUT_URI, cv.TAG_SNAPSHOT_HOLDOUT_DIGEST),
)


class SnapshotInUse(MlpipeError):
    """A snapshot cannot be deleted: a protected version (``champion``, ``previous``) needs it."""


@dataclass(frozen=True)
class Snapshot:
    """A stored snapshot: its URI (the payload), content digest and whether it already existed."""

    uri: str
    digest: str
    reused: bool


@dataclass
class RetentionConfig:
    """Which snapshots :func:`prune` keeps.

    :param keep_last: keep the snapshots of this many newest versions of the model.
    :param keep_aliases: also keep those of versions behind these aliases; ``champion`` and
        ``previous`` are always protected and may not be left out.
    """

    keep_last: int = 10
    keep_aliases: tuple[str, ...] = field(default=(*REQUIRED_ALIASES, cv.ALIAS_CHALLENGER))

    def __post_init__(self) -> None:
        if not isinstance(self.keep_last, int) or self.keep_last < 1:
            raise ConfigError(f"keep_last must be an integer >= 1, not {self.keep_last!r}.")
        self.keep_aliases = tuple(self.keep_aliases)
        missing = [a for a in REQUIRED_ALIASES if a not in self.keep_aliases]
        if missing:
            raise ConfigError(
                f"keep_aliases must include {list(REQUIRED_ALIASES)} (serving and rollback need their "
                f"data); add {missing}."
            )


def store(model_name: str) -> ObjectStoragePath:
    """The snapshot directory of ``model_name`` under the artifact root."""
    return artifact_root() / "snapshots" / safe_segment(model_name)


def _location(model_name: str, digest: str) -> ObjectStoragePath:
    algorithm, _, hexdigest = digest.partition(":")
    if not hexdigest or not hexdigest.isalnum():
        raise ConfigError(f"Not a content digest: {digest!r} (expected 'sha256:<hex>').")
    return store(model_name) / algorithm / hexdigest


def _copy(source: ObjectStoragePath, target: ObjectStoragePath) -> None:
    if source.is_dir():
        for item in sorted(p for p in source.rglob("*") if p.is_file()):
            _copy(item, target / str(item.relative_to(source)))
        return
    local_target = local_path(target)
    if local_target is not None:
        os.makedirs(os.path.dirname(local_target), exist_ok=True)
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def take(source_uri: str, model_name: str) -> Snapshot:
    """Snapshot ``source_uri`` (file or parquet directory) for ``model_name``; reuse an equal one.

    :raises DataError: the source does not exist.
    """
    source = resolve(source_uri)
    if not source.exists():
        raise DataError(f"Cannot snapshot {source_uri}: it does not exist.")
    digest = file_digest(source_uri)
    home = _location(model_name, digest)
    payload = home / PAYLOAD
    if (home / MANIFEST).exists():
        return Snapshot(str(payload), digest, reused=True)
    # Copy into a private directory and move it into place: two tasks snapshotting the same data
    # at once never see (or leave) half a copy under the digest's name.
    local_home = local_path(home)
    staging = home.parent / f".staging-{uuid.uuid4().hex}" if local_home is not None else home
    _copy(source, staging / PAYLOAD)
    manifest = {
        "digest": digest,
        "source": source_uri,
        "model_name": model_name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if local_home is not None:
        try:
            os.rename(str(local_path(staging)), local_home)
        except OSError:  # another task finished the same snapshot first: keep theirs
            shutil.rmtree(str(local_path(staging)), ignore_errors=True)
            if not (home / MANIFEST).exists():
                raise
            return Snapshot(str(payload), digest, reused=True)
    return Snapshot(str(payload), digest, reused=False)


def verify(uri: str, digest: str) -> str | None:
    """The digest the snapshot at ``uri`` has now (``None`` when it is gone)."""
    if not resolve(uri).exists():
        return None
    algorithm = digest.partition(":")[0] or "sha256"
    return file_digest(uri, algorithm=algorithm)


def _alias_versions(client: Any, model_name: str, aliases: tuple[str, ...]) -> dict[str, str]:
    """version -> alias for the versions behind ``aliases``."""
    return {v: a for a, v in registry.aliases(client, model_name).items() if a in aliases}


def references(client: Any, model_name: str) -> dict[str, list[str]]:
    """Snapshot digest -> versions (newest first) whose lineage points at it."""
    out: dict[str, list[str]] = {}
    for mv in registry.versions(client, model_name):
        tags = dict(mv.tags or {})
        for _, digest_tag in SNAPSHOT_TAGS:
            if tags.get(digest_tag):
                out.setdefault(tags[digest_tag], []).append(str(mv.version))
    return out


def stored(model_name: str) -> list[str]:
    """Digests of the complete snapshots stored for ``model_name``."""
    root = store(model_name)
    if not root.exists():
        return []
    return sorted(
        f"{algo.name}:{entry.name}"
        for algo in root.iterdir()
        if algo.is_dir()
        for entry in algo.iterdir()
        if (entry / MANIFEST).exists()
    )


def delete(client: Any, model_name: str, digest: str) -> None:
    """Delete one snapshot unless a ``champion`` or ``previous`` version needs it.

    :raises SnapshotInUse: the snapshot belongs to a protected version (the message names it).
    """
    protected = _alias_versions(client, model_name, REQUIRED_ALIASES)
    users = [v for v in references(client, model_name).get(digest, []) if v in protected]
    if users:
        names = ", ".join(f"v{v} ({protected[v]})" for v in users)
        raise SnapshotInUse(
            f"Snapshot {digest} of {model_name!r} is needed by {names}; it cannot be deleted while "
            "that version serves or is the rollback target."
        )
    home = _location(model_name, digest)
    local = local_path(home)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
    elif home.exists():
        home.fs.rm(home.path, recursive=True)


def prune(
    client: Any, model_name: str, retention: RetentionConfig, *, dry_run: bool = False
) -> dict[str, Any]:
    """Delete the snapshots no retained version needs; return what was kept and deleted."""
    versions = registry.versions(client, model_name)
    keep_versions = {str(v.version) for v in versions[: retention.keep_last]}
    keep_versions |= set(_alias_versions(client, model_name, retention.keep_aliases))
    refs = references(client, model_name)
    keep = {d for d, users in refs.items() if keep_versions & set(users)}
    doomed = [d for d in stored(model_name) if d not in keep]
    if not dry_run:
        for digest in doomed:
            delete(client, model_name, digest)
    return {
        "model_name": model_name,
        "kept": sorted(keep),
        "deleted": doomed,
        "retained_versions": sorted(keep_versions, key=int),
        "dry_run": dry_run,
    }
