"""``[celery] celery_config_options = airflow_mlpipe.executors.celery.CELERY_CONFIG``: Airflow's
Celery configuration, and a worker that imports the stages' libraries in its main process before it
forks its pool, so every task process (forked from a pool process) has them already."""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

from airflow_mlpipe.executors.preload import configured_modules, preload

#: Airflow's defaults, unchanged: importing this module is what connects the preload below
CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)


@worker_init.connect(weak=False)
def _preload_before_the_pool_forks(**_: Any) -> None:
    preload(configured_modules())
