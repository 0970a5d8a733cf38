"""The result of a failing task still reaches XCom: push the summary, then raise.

A failed task returns nothing and emits no asset event, so a stage that stops (a quality gate, a
blocked model, an unhealthy deployment) pushes its summary as the XCom ``return_value`` first:
downstream tasks, the UI and people can read why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from airflow_mlpipe.core.results import jsonable


def push_then_raise(context: Mapping[str, Any], summary: Any, error: BaseException) -> NoReturn:
    """Store ``summary`` as the task's XCom ``return_value``, then raise ``error``.

    :param context: the Airflow task context.
    :param summary: the stage's result (made JSON-safe with :func:`~airflow_mlpipe.core.results.jsonable`).
    :param error: the exception that fails (or skips) the task.
    """
    context["ti"].xcom_push(key="return_value", value=jsonable(summary))
    raise error
