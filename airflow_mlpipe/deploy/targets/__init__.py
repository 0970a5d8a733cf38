"""Deployment targets: where bentos run and how traffic reaches them.

A target implements :class:`~airflow_mlpipe.deploy.targets.base.DeploymentTarget`; the rollout only
talks to that protocol. :func:`resolve_target` turns the deployment config's target spec
(:class:`~airflow_mlpipe.config.deploy.TargetSpec`) into a target: the spec's ``kind`` is a key of
:data:`TARGETS` or the import path of your own factory (see docs/howto/deployment-target.md).
The spec's ``state_conn_id`` chooses the SQL state store for any kind
(:mod:`airflow_mlpipe.deploy.targets.state`): the factory then receives it as ``state_store``.
"""

from __future__ import annotations

import importlib
from typing import Any

from airflow_mlpipe.config.deploy import TargetSpec
from airflow_mlpipe.exceptions import ConfigError

#: target kind -> ``module:factory``; a factory takes the deployment name and the spec's options
TARGETS: dict[str, str] = {
    "local": "airflow_mlpipe.deploy.targets.local:LocalTarget.from_options",
    "docker": "airflow_mlpipe.deploy.targets.docker:DockerTarget.from_options",
}


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
