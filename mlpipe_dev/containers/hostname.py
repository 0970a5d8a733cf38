"""A host name per container, for Airflow's ``[core] hostname_callable``.

Containers on the host's network (the compose test) all report the host's name, so two Celery
workers could not be told apart in task instances' ``hostname``. This adds the container's id,
which Docker shows in the source of the ``/etc/hostname`` mount.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

_CONTAINER_HOSTNAME = re.compile(r"/containers/([0-9a-f]{64})/hostname /etc/hostname ")


def container_id(mountinfo: str | None = None) -> str | None:
    """The id of the container this process runs in, or ``None`` outside one.

    :param mountinfo: the text of ``/proc/self/mountinfo`` (read when not given).
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    match = _CONTAINER_HOSTNAME.search(mountinfo)
    return match.group(1) if match else None


def container_hostname() -> str:
    """``<host name>-<container id, 12 characters>``; the plain host name outside a container."""
    name = socket.getfqdn()
    cid = container_id()
    return f"{name}-{cid[:12]}" if cid else name
