"""The OCI image of a bento, built through the Docker Engine API.

BentoML generates the Containerfile (``construct_containerfile``: the bento, its models and the
Dockerfile in one build context). Its ``buildx``/``docker`` backends shell out to a docker CLI with
BuildKit, which an engine reached only through its API (or a CLI without the buildx plugin) cannot
use; the Containerfile is therefore generated without BuildKit syntax and built by the engine's
own builder, whose layer cache makes a second bento with the same Python requirements a matter of
seconds (only the last ``COPY`` differs). An image already built for a bento tag is reused.

Two deployment choices are applied to the generated file: the base image (the bento records
``python:<version>-slim``; a registry-less site points it at an image of its own) and an optional CA
bundle trusted by ``pip``/``uv`` during the build (sites whose package index is reached through a
TLS-inspecting proxy). The bundle is passed as build arguments, so it does not stay in the image.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import MlpipeError

#: label on every image and container the docker target makes (value: the bento tag)
BENTO_LABEL = "airflow-mlpipe.bento"
#: label of an image: digest of the bento's files it was built from
DIGEST_LABEL = "airflow-mlpipe.bento_digest"
_FROM = re.compile(r"^FROM (\S+) AS base-container$", re.MULTILINE)
_CA_NAME = "mlpipe-build-ca.crt"


class ImageBuildError(MlpipeError):
    """The engine could not build the bento's image (with the build log's tail)."""


def image_tag(bento_tag: str, repository: str = "mlpipe") -> str:
    """The image of ``bento_tag`` (``name:version``) in ``repository``: ``<repository>/<name>:<version>``."""
    name, _, version = bento_tag.partition(":")
    return f"{repository}/{name}:{version or 'latest'}"


def containerfile(text: str, *, base_image: str | None, ca_bundle: bool) -> str:
    """The generated Containerfile with the deployment's base image and build-time CA bundle."""
    match = _FROM.search(text)
    if match is None:
        raise ImageBuildError("BentoML's Containerfile has no 'FROM … AS base-container' line to build on.")
    head = f"FROM {base_image or match.group(1)} AS base-container\n"
    if ca_bundle:
        # ARG, not ENV: the variables reach the build's RUN steps only, not the running image.
        path = f"/tmp/{_CA_NAME}"
        head += f"COPY env/docker/{_CA_NAME} {path}\n"
        head += "".join(f"ARG {var}={path}\n" for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"))
    return text[: match.start()] + head + text[match.end() + 1 :]


def ensure_image(
    client: Any,
    bento_tag: str,
    *,
    repository: str = "mlpipe",
    base_image: str | None = None,
    ca_bundle: str | None = None,
    labels: dict[str, str] | None = None,
    digest: str | None = None,
    log: Any = None,
) -> tuple[str, bool]:
    """The image serving ``bento_tag``, built unless the engine has it; return ``(tag, built)``.

    :param client: a ``docker.DockerClient``.
    :param repository: image repository prefix.
    :param base_image: image the bento is installed on (default: the one the bento records).
    :param ca_bundle: a CA bundle file ``pip``/``uv`` trust during the build.
    :param labels: more image labels (the bento tag is always one).
    :param digest: the bento's content digest: an image of the tag with another one is rebuilt.
    :param log: callable receiving progress lines.
    :raises ImageBuildError: the build failed (the log's last lines are in the message).
    """
    docker_errors = require("docker.errors")
    tag = image_tag(bento_tag, repository)
    try:
        found = client.images.get(tag)
        if digest is None or (found.labels or {}).get(DIGEST_LABEL) == digest:
            return tag, False
    except docker_errors.ImageNotFound:
        pass
    bentoml = require("bentoml")
    from bentoml._internal.container import construct_containerfile

    bento = bentoml.bentos.get(bento_tag)
    lines: list[str] = []
    with construct_containerfile(bento, enable_buildkit=False) as (context, dockerfile):
        if ca_bundle:
            shutil.copyfile(ca_bundle, Path(context, "env", "docker", _CA_NAME))
        path = Path(dockerfile)
        path.write_text(containerfile(path.read_text(), base_image=base_image, ca_bundle=bool(ca_bundle)))
        stream = client.api.build(
            path=context,
            dockerfile=os.path.relpath(dockerfile, context),
            tag=tag,
            labels={BENTO_LABEL: bento_tag, **({DIGEST_LABEL: digest} if digest else {}), **(labels or {})},
            # host networking: the package index is reached as from the engine's host
            network_mode="host",
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                tail = "\n".join(lines[-25:])
                raise ImageBuildError(f"Building {tag} for {bento_tag} failed: {chunk['error']}\n{tail}")
            text = str(chunk.get("stream", "")).rstrip()
            if text:
                lines.append(text)
                if log is not None and text.startswith("Step "):
                    log(text[:200])
    return tag, True
