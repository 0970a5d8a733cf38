"""A release approval of the churn model: a person approves or rejects through Airflow's HITL.

Tagged with the model's name, so the Models page lists its pending request with one button per
option (``airflow_mlpipe.ui.loop.tagged_dags``). The browser tests answer it through that page.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG

with DAG(
    dag_id="churn_release_approval",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    tags=["churn"],
    doc_md=__doc__,
):
    ApprovalOperator(
        task_id="approve_release",
        subject="Release churn: serve the new champion to every client?",
        body="The canary passed; approve to keep the new champion serving.",
    )
