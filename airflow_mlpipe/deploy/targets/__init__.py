"""Deployment targets: where bentos run and how traffic reaches them.

A target implements :class:`~airflow_mlpipe.deploy.targets.base.DeploymentTarget`; the rollout only
talks to that protocol. :func:`resolve_target` turns the deployment config's target spec
(:class:`~airflow_mlpipe.config.deploy.TargetSpec`) into a target: the spec's ``kind`` is a key of
:data:`TARGETS` or the import path of your own factory (see docs/howto/deployment-target.md).
The spec's ``state_conn_id`` chooses the SQL state store for any kind
(:mod:`airflow_mlpipe.deploy.targets.state`): the factory then receives it as ``state_store``.
A deployment whose config names no target runs on the workers' own default,
:func:`site_target` (the environment variable ``MLPIPE_DEPLOYMENT_TARGET``), else the local target.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

from airflow_mlpipe.config.deploy import TARGET_ENV, TargetSpec
from airflow_mlpipe.exceptions import ConfigError

#: target kind -> ``module:factory``; a factory takes the deployment name and the spec's options
TARGETS: dict[str, str] = {
    "local": "airflow_mlpipe.deploy.targets.local:LocalTarget.from_options",
    "docker": "airflow_mlpipe.deploy.targets.docker:DockerTarget.from_options",
}


def site_target() -> dict[str, Any] | None:
    """The workers' default target spec: the JSON mapping in ``$MLPIPE_DEPLOYMENT_TARGET``.

    The environment says where models are served, the pipeline's config what is served: the same
    DAGs deploy to the local target on a laptop and to containers in production (docs/howto/production.md).
    ``None`` when the variable is unset or empty.

    :raises ConfigError: the variable is not a JSON object with a ``kind``.
    """
    raw = os.environ.get(TARGET_ENV, "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"${TARGET_ENV} is not valid JSON ({exc}): {raw[:200]!r}") from None
    if not isinstance(value, dict) or not value.get("kind"):
        raise ConfigError(
            f"${TARGET_ENV} must be a JSON object with a 'kind', e.g. "
            '{"kind": "docker", "state_conn_id": "mlpipe_deploy_state"}; got ' + repr(raw[:200])
        )
    TargetSpec.from_mapping(value, f"${TARGET_ENV}")
    return value


def resolve_target(spec: TargetSpec | Any, *, deployment_name: str) -> Any:
    """The deployment target described by ``spec`` for ``deployment_name``.

    :param spec: a :class:`TargetSpec`, a mapping ``{"kind": ..., <options>}``, a kind, or ``None``.
    :param deployment_name: the deployment's name (stable across rollouts).
    :raises ConfigError: unknown kind, a factory that cannot be imported, options it refuses, or a
        state connection that is missing or cannot be reached.
    """
    spec = TargetSpec.from_mapping(spec)
    path = TARGETS.get(spec.kind, spec.kind)
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ConfigError(
            f"Unknown deployment target kind {spec.kind!r}; use one of {sorted(TARGETS)} "
            "or the import path 'package.module:factory' of your own target."
        )
    try:
        factory: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            factory = getattr(factory, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"Deployment target {spec.kind!r} cannot be imported from {path!r}: {exc}"
        ) from None
    options = dict(spec.options)
    if spec.state_conn_id:
        from airflow_mlpipe.deploy.targets.state import SqlStateStore

        options["state_store"] = SqlStateStore.from_connection(
            spec.state_conn_id, deployment_name, table=spec.state_table
        )
    try:
        return factory(deployment_name, **options)
    except TypeError as exc:
        if "state_store" in str(exc):
            raise ConfigError(
                f"Target {spec.kind!r} does not take a state store; remove state_conn_id or add a "
                "state_store argument to its factory (docs/howto/deployment-target.md)."
            ) from None
        raise ConfigError(f"Invalid options {sorted(spec.options)} for target {spec.kind!r}: {exc}") from None
