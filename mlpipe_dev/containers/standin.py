"""Stand-in images, built from Debian's packages, for the upstream images the compose file names.

No image registry is reachable from the machines the project is tested on, so ``FROM python:…``,
``postgres:…``, ``redis:…`` and ``haproxy:…`` cannot be pulled. ``debootstrap`` builds a Debian root
file system once (cached as the image :data:`BASE_IMAGE`), and the Dockerfiles under
``docker/standin/`` add Debian's Python, PostgreSQL, Redis and HAProxy on top of it. The compose
file users get keeps the official images; the test override swaps these in.

    python -m mlpipe_dev.containers.standin        # build (or reuse) every stand-in
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlpipe_dev.containers.engine import ensure_engine

REPO = Path(__file__).resolve().parents[2]
STANDIN_DIR = REPO / "docker" / "standin"
BASE_IMAGE = "mlpipe-standin/debian:bookworm"
#: upstream image -> the stand-in built from ``docker/standin/<name>/Dockerfile``
STANDINS: dict[str, str] = {
    "python:3.11-slim-bookworm": "python",
    "postgres:16": "postgres",
    "redis:7.2-bookworm": "redis",
    "haproxy:2.8": "haproxy",
}
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def standin_tag(name: str) -> str:
    """The image tag of the stand-in ``name`` (a value of :data:`STANDINS`)."""
    return f"mlpipe-standin/{name}:latest"


def _has_image(client: Any, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_base_image(client: Any | None = None, *, mirror: str | None = None) -> str:
    """:data:`BASE_IMAGE`, built with ``debootstrap --variant=minbase bookworm`` when missing.

    :param mirror: Debian mirror (default ``$MLPIPE_DEBIAN_MIRROR`` or deb.debian.org).
    """
    client = client or ensure_engine()
    if _has_image(client, BASE_IMAGE):
        return BASE_IMAGE
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.path.exists(debootstrap):
        raise RuntimeError(
            "debootstrap is not installed: run `make system-deps` (Debian package debootstrap)."
        )
    mirror = mirror or os.environ.get("MLPIPE_DEBIAN_MIRROR") or DEFAULT_MIRROR
    with tempfile.TemporaryDirectory(prefix="mlpipe-standin-", dir="/var/tmp") as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        run = subprocess.run(
            [debootstrap, "--variant=minbase", "bookworm", str(rootfs), mirror],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            tail = "\n".join((run.stdout + run.stderr).splitlines()[-20:])
            raise RuntimeError(f"debootstrap failed (exit {run.returncode}):\n{tail}")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        repository, tag = BASE_IMAGE.rsplit(":", 1)
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
    return BASE_IMAGE


def build_standin(name: str, client: Any | None = None) -> str:
    """Build (layer cache permitting, reuse) the stand-in ``name``; return its tag."""
    client = client or ensure_engine()
    base = ensure_base_image(client)
    tag = standin_tag(name)
    client.images.build(
        path=str(STANDIN_DIR / name),
        tag=tag,
        buildargs={"BASE": base},
        network_mode="host",
        rm=True,
        forcerm=True,
    )
    return tag


def build_standins(client: Any | None = None) -> dict[str, str]:
    """Every stand-in: upstream image -> stand-in tag."""
    client = client or ensure_engine()
    return {upstream: build_standin(name, client) for upstream, name in STANDINS.items()}


def main() -> int:
    for upstream, tag in build_standins().items():
        print(f"{upstream:28} -> {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
