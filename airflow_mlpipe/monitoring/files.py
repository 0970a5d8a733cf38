"""Finding new batch files under a URI: listing with identities, and claiming them exactly once.

A file's *identity* is its path, size and modification time: a file rewritten in place is a new
batch, a file listed twice is not. Listing is synchronous (fsspec); triggers call it through
``asyncio.to_thread`` so the triggerer's event loop never blocks.

Claims make processing idempotent: :func:`claim` atomically creates one marker per identity
(``O_CREAT | O_EXCL`` on a local ledger), so however many events announce the same file — a burst,
or a duplicate after a triggerer restart — exactly one run processes it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import time
from collections.abc import Iterable
from typing import Any

from airflow_mlpipe.core.storage import local_path, resolve
from airflow_mlpipe.exceptions import ConfigError


def identity(path: str, size: int, mtime: float) -> str:
    return f"{path}|{size}|{mtime:.6f}"


def list_files(uri: str, pattern: str = "*", *, min_age_seconds: float = 0.0) -> list[dict[str, Any]]:
    """Files directly under ``uri`` matching ``pattern``, oldest first, as JSON-able dicts.

    Hidden and temporary files (``.x``, ``_x``, ``*.tmp*``) are skipped, and so are files modified less
    than ``min_age_seconds`` ago: a batch still being written is not a batch yet.
    """
    base = resolve(uri)
    if not base.exists():
        return []
    if not base.is_dir():
        raise ConfigError(f"{uri} is not a directory; watch the directory new batches land in.")
    now = time.time()
    found = []
    for child in base.iterdir():
        name = child.name
        if name.startswith((".", "_")) or ".tmp" in name or not fnmatch.fnmatch(name, pattern):
            continue
        try:
            if not child.is_file():
                continue
            info = child.stat()
        except FileNotFoundError:  # removed between listing and stat
            continue
        size, mtime = int(info.st_size), float(info.st_mtime)
        if now - mtime < min_age_seconds:
            continue
        path = str(child)
        found.append({"path": path, "size": size, "mtime": mtime, "key": identity(path, size, mtime)})
    found.sort(key=lambda f: (f["mtime"], f["path"]))
    return found


def batch_key(files: Iterable[dict[str, Any]]) -> str:
    """A stable key of a set of files (order-independent)."""
    digest = hashlib.sha256("\n".join(sorted(f["key"] for f in files)).encode()).hexdigest()
    return f"sha256:{digest[:32]}"


def claim(keys: Iterable[str], ledger_uri: str) -> list[str]:
    """Claim ``keys`` in the ledger; return the ones this call claimed first (in input order)."""
    ledger = resolve(ledger_uri)
    local = local_path(ledger)
    claimed = []
    if local is not None:
        os.makedirs(local, exist_ok=True)
    for key in keys:
        marker = hashlib.sha256(key.encode()).hexdigest()
        if local is not None:
            try:
                fd = os.open(os.path.join(local, marker), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(key)
        else:  # object storage has no exclusive create: exists-then-write (needs max_active_runs=1)
            target = ledger / marker
            if target.exists():
                continue
            target.write_text(key)
        claimed.append(key)
    return claimed
