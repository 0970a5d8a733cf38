"""Roll the churn model back: serve the registry's ``previous`` version again and move ``champion``.

A rollback is a DAG run, so it is recorded like any other (who started it, when, and the reason in
its conf). The Models page of the Airflow UI (the provider's plugin) offers it as a button.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_mlpipe.operators.bentoml import BentoRollbackOperator

with DAG(
    dag_id="churn_rollback",
    schedule=None,
    tags=["churn", "example"],
    params={"reason": Param("", type="string", description="why the serving version is rolled back")},
    doc_md=__doc__,
):
    BentoRollbackOperator(task_id="rollback", model_name="churn")
