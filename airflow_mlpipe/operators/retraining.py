"""Ask for retraining on a schedule-driven monitoring DAG: trigger the training DAG only on drift.

The asset-scheduled (``event``) pattern needs no operator for this — the drift check emits the
drift asset the training DAG is scheduled on. Time-scheduled pipelines use this operator instead: it
reads the drift check's result and triggers a training run when it recommends retraining,
otherwise it is skipped (so the graph shows at a glance whether this batch asked for retraining).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class RetrainOnDriftOperator(TriggerDagRunOperator):
    """Trigger ``trigger_dag_id`` when the drift task's result recommends retraining.

    :param drift_task_id: task id of the :class:`~airflow_mlpipe.operators.evidently.EvidentlyDriftOperator`.
    :param trigger_dag_id: the training DAG.
    The triggered run's ``conf`` carries the drift summary (share, drifted columns, reasons, batch).
    """

    template_fields: Sequence[str] = (*TriggerDagRunOperator.template_fields, "drift_task_id")
    ui_color = "#ffd6a5"

    def __init__(self, *, drift_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drift_task_id = drift_task_id

    def execute(self, context: Context) -> Any:
        from airflow.exceptions import AirflowSkipException

        summary = context["ti"].xcom_pull(task_ids=self.drift_task_id) or {}
        recommended = summary.get("retrain_recommended", summary.get("drift_detected"))
        if not recommended:
            raise AirflowSkipException(
                f"No retraining needed: drift share {summary.get('drift_share')} "
                f"(threshold {summary.get('threshold')})."
            )
        self.conf = {
            **(self.conf or {}),
            "reason": "drift",
            "retrain_reasons": summary.get("retrain_reasons") or ["data_drift"],
            "drift_share": summary.get("drift_share"),
            "drifted_columns": summary.get("drifted_columns"),
            "current_uri": summary.get("current_uri"),
            "report_uri": summary.get("report_uri"),
            "drift_since": summary.get("drift_since") or summary.get("batch_start"),
        }
        return super().execute(context)
