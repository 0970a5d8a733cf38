"""Human-in-the-loop steps, built one way: Airflow's HITL operators (providers-standard) with a
body that summarises what the person decides on, read from the deciding task's XCom when the step
runs.

* :func:`promotion_approval` / :func:`add_human_approval`: approve or reject promoting the gate's
  blessed challenger (``ApprovalOperator``; "Reject" skips the promotion).
* :func:`drift_review`: retrain, ignore or roll back after a drift finding (``HITLBranchOperator``;
  defaults to ``Ignore`` when nobody answers, so an unattended alert never acts by itself).

The pipeline factories build their approval step with :func:`promotion_approval` too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseOperator

from airflow_mlpipe.core.conventions import ALIAS_CHAMPION
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.operators.evaluation import EvaluationGateOperator, EvaluationReportLink

RETRAIN, IGNORE, ROLL_BACK = "Retrain", "Ignore", "Roll back"
#: how long a step waits for its answer unless told otherwise
DEFAULT_TIMEOUT = dt.timedelta(hours=24)


def _hitl(kind: str, *, task_id: str, subject: str, body: str, response_timeout: Any, **kwargs: Any) -> Any:
    """The one place a HITL operator is made (``kind``: a class of providers-standard's hitl module)."""
    from airflow.providers.standard.operators import hitl

    return getattr(hitl, kind)(
        task_id=task_id, subject=subject, body=body, response_timeout=response_timeout, **kwargs
    )


def approval_body(gate_task_id: str) -> str:
    """Markdown (Jinja-templated at run time) summarising the gate's XCom for the approver."""
    s = f"ti.xcom_pull(task_ids='{gate_task_id}')"
    return (
        "{% set g = " + s + " %}"
        "**{{ g.model_name }} v{{ g.challenger_version }}** passed the evaluation gate "
        "(champion: {{ g.champion_version or 'none' }}, task: {{ g.task_type }}).\n\n"
        "| criterion | observed | threshold | result |\n|---|---|---|---|\n"
        "{% for c in g.criteria %}| {{ c.name }} | {{ c.observed }} | {{ c.op }} {{ c.threshold }} | "
        "{{ 'pass' if c.passed else 'FAIL' }} |\n{% endfor %}\n"
        "Metrics (challenger): {{ g.metrics.challenger }}\n\n"
        "Report: {{ ti.xcom_pull(task_ids='" + gate_task_id + "', key='" + EvaluationReportLink.key + "') }}"
    )


def promotion_approval(
    *,
    gate_task_id: str,
    task_id: str = "approve_promotion",
    subject: str | None = None,
    response_timeout: dt.timedelta | None = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> Any:
    """An ``ApprovalOperator`` showing the gate's summary (criteria table, metrics, report link).

    :param gate_task_id: the :class:`~airflow_mlpipe.operators.evaluation.EvaluationGateOperator` task.
    """
    return _hitl(
        "ApprovalOperator",
        task_id=task_id,
        subject=subject or f"Promote the blessed challenger to {ALIAS_CHAMPION}?",
        body=approval_body(gate_task_id),
        response_timeout=response_timeout,
        **kwargs,
    )


def add_human_approval(
    gate: EvaluationGateOperator,
    promote: BaseOperator,
    *,
    task_id: str = "approve_promotion",
    subject: str | None = None,
    response_timeout: dt.timedelta | None = None,
    assigned_users: Any = None,
    **kwargs: Any,
) -> Any:
    """Insert a :func:`promotion_approval` between ``gate`` and ``promote``; return it.

    "Reject" skips the promotion (and, as any not-blessed path, leaves the champion alone). An
    existing direct ``gate >> promote`` edge is replaced.
    """
    if promote.task_id in gate.downstream_task_ids:
        gate.downstream_task_ids.discard(promote.task_id)
        promote.upstream_task_ids.discard(gate.task_id)
    approval = promotion_approval(
        gate_task_id=gate.task_id,
        task_id=task_id,
        subject=subject or f"Promote {gate.model_name} to {ALIAS_CHAMPION}?",
        response_timeout=response_timeout,
        assigned_users=assigned_users,
        dag=gate.dag,
        **kwargs,
    )
    gate >> approval >> promote
    return approval


_DRIFT_BODY = """\
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
    response_timeout: dt.timedelta | None = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> Any:
    """A ``HITLBranchOperator`` routing the decision on a drift finding to a person.

    :param branches: option label (``"Retrain"``, ``"Ignore"``, ``"Roll back"``, or your own) ->
        downstream task id to follow.
    :param drift_task_id: the :class:`~airflow_mlpipe.operators.evidently.EvidentlyDriftOperator`
        task whose summary and report link the body shows.
    :param default: option taken when nobody answers within ``response_timeout``.
    """
    # imported here: a training DAG asks only for the promotion approval, not the drift operator
    from airflow_mlpipe.operators.evidently import DriftReportLink

    if not branches:
        raise ConfigError("branches must map at least one option label to a downstream task id.")
    options = list(branches)
    if default not in options:
        raise ConfigError(f"default {default!r} must be one of the options {options}.")
    return _hitl(
        "HITLBranchOperator",
        task_id=task_id,
        subject=subject,
        body=_DRIFT_BODY.format(task=drift_task_id, report_key=DriftReportLink.key),
        options=options,
        defaults=[default],
        options_mapping=dict(branches),
        response_timeout=response_timeout,
        **kwargs,
    )
