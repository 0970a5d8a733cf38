"""Run one of your DAGs locally, in one process, without a scheduler.

``python dags/example_run_locally.py`` runs this DAG against the metadata DB of ``AIRFLOW_HOME``
(create it once with ``airflow db migrate``). ``dag.test()`` alone fails with "Cannot create DagRun
… not serialized": :func:`airflow_mlpipe.dagtest.run_locally` serializes the DAG first.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

with DAG(
    "example_run_locally",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example"],
) as dag:

    @task
    def count_rows() -> dict[str, int]:
        return {"rows": 3}

    count_rows()

if __name__ == "__main__":
    from airflow_mlpipe.dagtest import run_locally

    run = run_locally(dag)
    print(f"{dag.dag_id}: {run.state}")
