"""The container target (``kind: docker``): each version a container, HAProxy in a container too.

Every model version runs as a container of its bento's image (:mod:`.image`), the stable endpoint
is an HAProxy container (:mod:`.proxy`), all driven through the Docker Engine API with host
networking. Nothing a later rollout needs lives on the worker that started it: containers are
found by name and labels (``airflow-mlpipe.deployment``, ``airflow-mlpipe.role``, ``airflow-mlpipe.bento``) on the engine,
and the deployment state with its lock lives in the state store, by default a SQL store that every
worker reaches (the option ``state_conn_id``). So a rollout on one Celery worker stops the backend
another worker started.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.deploy.targets.base import Backend, BackendStartError, DeploymentState, Health
from airflow_mlpipe.deploy.targets.docker.image import BENTO_LABEL, ensure_image
from airflow_mlpipe.deploy.targets.docker.proxy import ContainerProxy
from airflow_mlpipe.deploy.targets.local import ProxiedTarget, free_port, http_ok, probe
from airflow_mlpipe.deploy.targets.state import FileStateStore, StateStore
from airflow_mlpipe.exceptions import ConfigError

DEPLOYMENT_LABEL = "airflow-mlpipe.deployment"
ROLE_LABEL = "airflow-mlpipe.role"
#: the official HAProxy image; a registry-less site names its own (same config path and start)
DEFAULT_HAPROXY_IMAGE = "haproxy:2.8"


class DockerTarget(ProxiedTarget):
    """Serve bentos as containers behind an HAProxy container on one Docker Engine.

    :param name: deployment name (``[A-Za-z0-9_-]``): container names and labels.
    :param store: the deployment's state store (``locked()``, ``load()``, ``save(doc)``).
    :param client: a ``docker.DockerClient`` (default: the engine ``DOCKER_HOST`` names).
    :param port: stable endpoint port; ``None`` picks a free one on first use and keeps it.
    :param host: the address containers bind and are reached on (host networking).
    :param base_image: image the bentos are installed on (default: the bento's ``python:…-slim``).
    :param haproxy_image: the proxy's image (official layout).
    :param build_ca_bundle: CA bundle trusted by ``pip``/``uv`` while an image builds.
    :param image_repository: repository prefix of the built images.
    :param ready_timeout: seconds a new backend may take to answer ``/readyz``.
    """

    def __init__(
        self,
        *,
        name: str,
        store: StateStore,
        client: Any = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        base_image: str | None = None,
        haproxy_image: str = DEFAULT_HAPROXY_IMAGE,
        build_ca_bundle: str | None = None,
        image_repository: str = "mlpipe",
        ready_timeout: float = 180.0,
    ) -> None:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"Deployment name {name!r} may only contain letters, digits, '-' and '_'.")
        if build_ca_bundle and not os.path.isfile(build_ca_bundle):
            raise ConfigError(f"build_ca_bundle {build_ca_bundle!r} is not a file.")
        self.name = name
        self.store = store
        self.client = client or require("docker").from_env(timeout=120)
        self.host = host
        self.base_image = base_image
        self.build_ca_bundle = build_ca_bundle
        self.image_repository = image_repository
        self.ready_timeout = ready_timeout
        self.prefix = f"mlpipe-{name}"
        self.meta = self._endpoint(port)
        self.port = int(self.meta["port"])
        self.proxy = ContainerProxy(
            self.client,
            container_name=f"{self.prefix}-proxy",
            name=name.replace("-", "_"),
            host=host,
            port=self.port,
            stats_port=int(self.meta["stats_port"]),
            image=haproxy_image,
            labels={DEPLOYMENT_LABEL: name, ROLE_LABEL: "proxy"},
        )

    @classmethod
    def from_options(
        cls,
        deployment_name: str,
        *,
        state_store: StateStore | None = None,
        state_dir: str | None = None,
        single_host: bool = False,
        docker_host: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        base_image: str | None = None,
        haproxy_image: str = DEFAULT_HAPROXY_IMAGE,
        build_ca_bundle: str | None = None,
        image_repository: str = "mlpipe",
        bentoml_home: str | None = None,
        ready_timeout: float = 180.0,
    ) -> DockerTarget:
        """The container target of a target spec (``kind: docker``).

        :param state_store: the SQL state store of the spec's ``state_conn_id`` (passed by
            :func:`~airflow_mlpipe.deploy.targets.resolve_target`): the default, every worker sees it.
        :param state_dir: a file state store instead, only with ``single_host: true`` (every task
            that deploys runs on the machine of that directory).
        :param docker_host: the engine's URL (default ``DOCKER_HOST`` or the local socket).
        :param bentoml_home: BentoML store the images are built from (default ``$BENTOML_HOME``).
        The other options are :class:`DockerTarget`'s.
        """
        from airflow_mlpipe.deploy.bento import use_bentoml_home

        if state_store is None:
            if not (state_dir and single_host):
                raise ConfigError(
                    "kind: docker keeps its state where every worker sees it: set state_conn_id "
                    "(a postgres connection). A file store (state_dir) is for one host only; "
                    "ask for it with single_host: true."
                )
            state_store = FileStateStore(state_dir)
        elif state_dir:
            raise ConfigError("Set either state_conn_id or state_dir for kind: docker, not both.")
        use_bentoml_home(bentoml_home or os.environ.get("BENTOML_HOME"))
        docker = require("docker")
        client = docker.DockerClient(base_url=docker_host, timeout=120) if docker_host else None
        return cls(
            name=deployment_name,
            store=state_store,
            client=client,
            port=port or None,
            host=host,
            base_image=base_image,
            haproxy_image=haproxy_image,
            build_ca_bundle=build_ca_bundle,
            image_repository=image_repository,
            ready_timeout=ready_timeout,
        )

    # -- state -----------------------------------------------------------------------------
    def _endpoint(self, port: int | None) -> dict[str, Any]:
        """The deployment's ports, chosen once (under the lock) and kept in the state document."""
        meta = self.store.load().get("endpoint")
        if not meta:
            with self.store.locked():
                doc = self.store.load()
                meta = doc.get("endpoint")
                if not meta:
                    meta = {"port": port or free_port(self.host), "stats_port": free_port(self.host)}
                    self.store.save({**doc, "endpoint": meta})
        if port and int(meta["port"]) != port:
            raise ConfigError(
                f"Deployment {self.name!r} already serves on port {meta['port']}; cannot move it to "
                f"{port}. Stop it first or keep the port."
            )
        return dict(meta)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return self.store.locked()  # type: ignore[no-any-return]

    def load_state(self) -> DeploymentState:
        return DeploymentState.from_dict(self.store.load())

    def save_state(self, state: DeploymentState) -> None:
        self.store.save({**state.as_dict(), "endpoint": self.meta})

    # -- backends ----------------------------------------------------------------------------
    def _labels(self, role: str, **more: str) -> dict[str, str]:
        return {DEPLOYMENT_LABEL: self.name, ROLE_LABEL: role, **more}

    def image(self, bento_tag: str) -> str:
        """The image serving ``bento_tag``: reused while the bento's files are unchanged, else built."""
        digest = bento_digest(bento_tag)
        tag, _ = ensure_image(
            self.client,
            bento_tag,
            repository=self.image_repository,
            base_image=self.base_image,
            ca_bundle=self.build_ca_bundle,
            digest=digest,
        )
        return tag

    def start(
        self, bento_tag: str, *, model_name: str, model_version: str, port: int | None = None
    ) -> Backend:
        image = self.image(bento_tag)
        port = port or free_port(self.host)
        server = "b_" + "".join(c if c.isalnum() else "_" for c in bento_tag.split(":", 1)[-1])
        container_name = f"{self.prefix}-{server}-{port}".replace("_", "-")
        self._remove(container_name)  # a leftover of a crash on this port
        container = self.client.containers.run(
            image,
            ["serve", "--host", self.host, "--port", str(port)],
            name=container_name,
            network_mode="host",
            detach=True,
            labels=self._labels("backend", **{BENTO_LABEL: bento_tag, "airflow-mlpipe.port": str(port)}),
            environment={"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"},
            volumes=log_mounts(bento_tag) or None,
        )
        backend = Backend(
            server=server,
            bento_tag=bento_tag,
            model_name=model_name,
            model_version=str(model_version),
            url=f"http://{self.host}:{port}",
            port=port,
            log=f"container {container_name}",
            started_at=dt.datetime.now(dt.UTC).isoformat(),
            extra={"container": container_name, "container_id": container.id, "image": image},
        )
        self._wait_ready(container, backend)
        return backend

    def _wait_ready(self, container: Any, backend: Backend) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            container.reload()
            if container.status not in ("created", "running"):
                logs = container.logs(tail=25).decode(errors="replace")
                code = container.attrs["State"].get("ExitCode")
                self.stop(backend)
                raise BackendStartError(
                    f"container {backend.extra['container']} ({backend.bento_tag}) exited with code "
                    f"{code} before it was ready:\n{logs}"
                )
            if http_ok(f"{backend.url}/readyz", timeout=1.0):
                return
            time.sleep(0.25)
        logs = container.logs(tail=25).decode(errors="replace")
        self.stop(backend)
        raise BackendStartError(
            f"container {backend.extra['container']} ({backend.bento_tag}) was not ready after "
            f"{self.ready_timeout:.0f}s:\n{logs}"
        )

    def _container(self, name: str) -> Any | None:
        errors = require("docker.errors")
        try:
            return self.client.containers.get(name)
        except errors.NotFound:
            return None

    def _remove(self, name: str, timeout: int = 15) -> None:
        errors = require("docker.errors")
        found = self._container(name)
        if found is None:
            return
        with contextlib.suppress(errors.NotFound, errors.APIError):
            if found.status == "running":
                found.stop(timeout=timeout)  # SIGTERM: the server finishes its requests
        with contextlib.suppress(errors.NotFound):
            found.remove(force=True)

    def stop(self, backend: Backend) -> None:
        name = backend.extra.get("container")
        if name:
            self._remove(str(name))

    def health(self, backend: Backend) -> Health:
        found = self._container(str(backend.extra.get("container", "")))
        alive = (
            found is not None
            and found.status == "running"
            and found.id == backend.extra.get("container_id", found.id)
        )
        return probe(backend, alive, f"container {backend.extra.get('container')} is not running")

    def containers(self) -> list[Any]:
        """Every container of this deployment on the engine (found by label)."""
        return list(
            self.client.containers.list(all=True, filters={"label": f"{DEPLOYMENT_LABEL}={self.name}"})
        )

    def shutdown(self) -> None:
        """Remove the proxy and every container of this deployment (tests, demo teardown)."""
        self.proxy.remove()
        for container in self.containers():
            self._remove(container.name)


def bento_digest(bento_tag: str) -> str:
    """A digest of the bento's and its models' files (path, size, modification time): an image
    built from other contents under the same tag is not reused."""
    bentoml = require("bentoml")
    bento = bentoml.bentos.get(bento_tag)
    roots = [Path(bento.path)] + [Path(bentoml.models.get(m.tag).path) for m in bento.info.all_models]
    h = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                st = path.stat()
                h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def log_mounts(bento_tag: str) -> dict[str, dict[str, str]]:
    """Bind mounts of a backend container: the bento's prediction log directory, at the same path
    inside as outside, so that the rows the service logs land where the monitoring tasks read them.

    The path is one on the engine's host (created here when the engine is this machine's): with a
    remote engine it must be a filesystem the monitoring tasks read as well. The service in the
    container runs as the image's own user (``bentoml``), so the directory is made writable for
    every user.
    """
    from airflow_mlpipe.deploy.bento import bento_service_config

    directory = (bento_service_config(bento_tag).get("prediction_log") or {}).get("directory")
    if not directory:
        return {}
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o777)  # the container's user writes the log's parts here
    return {directory: {"bind": directory, "mode": "rw"}}
