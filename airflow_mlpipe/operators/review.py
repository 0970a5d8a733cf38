"""Human review of a drift finding: a person decides to retrain, ignore or roll back.

Instead of retraining automatically, :func:`drift_review` builds Airflow's ``HITLBranchOperator``
(providers-standard) whose body shows the drift summary and links the Evidently report; the chosen
option's task runs and the other branches are skipped. Defaults to ``Ignore`` when nobody answers
within ``response_timeout``, so an unattended alert never retrains or rolls back by itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.operators.evidently import DriftReportLink

RETRAIN, IGNORE, ROLL_BACK = "Retrain", "Ignore", "Roll back"

_BODY = """\
**Drift check** of `{{{{ ti.xcom_pull(task_ids='{task}')['current_uri'] }}}}`

* drift share: {{{{ '%.3f' % ti.xcom_pull(task_ids='{task}')['drift_share'] }}}} (threshold {{{{ ti.xcom_pull(task_ids='{task}')['threshold'] }}}})
* drifted columns: {{{{ ti.xcom_pull(task_ids='{task}')['drifted_columns'] | join(', ') }}}}
* reasons to retrain: {{{{ ti.xcom_pull(task_ids='{task}')['retrain_reasons'] | join(', ') or 'none' }}}}

Evidently report: {{{{ ti.xcom_pull(task_ids='{task}', key='{report_key}') }}}}
"""


def drift_review(
    *,
    task_id: str = "review_drift",
    drift_task_id: str = "drift",
    branches: Mapping[str, str],
    subject: str = "Model monitoring: drift detected — retrain, ignore or roll back?",
    default: str = IGNORE,
    response_timeout: dt.timedelta | None = dt.timedelta(hours=24),
    **kwargs: Any,
) -> Any:
    """A ``HITLBranchOperator`` routing the decision on a drift finding to a person.

    :param branches: option label (``"Retrain"``, ``"Ignore"``, ``"Roll back"``, or your own) ->
        downstream task id to follow.
    :param drift_task_id: the :class:`~airflow_mlpipe.operators.evidently.EvidentlyDriftOperator`
        task whose summary and report link the body shows.
    :param default: option taken when nobody answers within ``response_timeout``.
    """
    from airflow.providers.standard.operators.hitl import HITLBranchOperator

    if not branches:
        raise ConfigError("branches must map at least one option label to a downstream task id.")
    options = list(branches)
    if default not in options:
        raise ConfigError(f"default {default!r} must be one of the options {options}.")
    return HITLBranchOperator(
        task_id=task_id,
        subject=subject,
        body=_BODY.format(task=drift_task_id, report_key=DriftReportLink.key),
        options=options,
        defaults=[default],
        options_mapping=dict(branches),
        response_timeout=response_timeout,
        **kwargs,
    )
