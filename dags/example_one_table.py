"""One table with one timestamp per row and entity ids that repeat (card transactions).

Data: ``$MLPIPE_DATA_DIR/transactions.parquet`` with ``card_id`` (repeats), ``event_timestamp``
(one per row, tz-aware UTC), the features ``amount`` and ``merchant_category`` (text) and the label
``fraud``.

* **Feast entity**: the id that repeats (``card_id``); the feature view reads the same file with
  ``timestamp_field="event_timestamp"`` and lists the features only (``features/transactions.py``).
* **Label timestamp**: the row's own ``event_timestamp``. The entity/label table is the file's
  ``card_id``, ``event_timestamp`` and ``fraud`` columns (the training-set stage refuses an entity
  table that already holds the features); the point-in-time join gives each row the values stamped
  at or before its own time — its own row's, never a later row's of the same card. Rows of one card
  with the same timestamp are one point in time: keep one.
* **String feature**: a plain estimator is put behind a one-hot encoding of ``merchant_category``.
* **The gate** evaluates the version the training task registered (from its XCom, no template).

Run it locally: ``python dags/example_one_table.py`` (see docs/howto/your-data.md).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, get_current_context, task

from airflow_mlpipe.factories.render import MACROS
from airflow_mlpipe.operators.evaluation import EvaluationGateOperator
from airflow_mlpipe.operators.feast import FeastApplyOperator, FeastTrainingSetOperator
from airflow_mlpipe.operators.mlflow import MlflowTrainModelOperator

TABLE = "{{ mlpipe_env('MLPIPE_DATA_DIR', '{airflow_home}/mlpipe/data/transactions') }}/transactions.parquet"

with DAG(
    "example_one_table",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example"],
    user_defined_macros=dict(MACROS),
) as dag:

    @task(templates_dict={"table": TABLE})
    def label_table(templates_dict: dict[str, str] | None = None) -> str:
        """The entity/label table: the key, the row's timestamp and the label of every row."""
        from airflow_mlpipe.core.datasets import read_table, write_parquet
        from airflow_mlpipe.core.storage import task_path

        assert templates_dict is not None
        table = read_table(templates_dict["table"], columns=["card_id", "event_timestamp", "fraud"])
        ti = get_current_context()["ti"]
        return write_parquet(table, task_path(ti.dag_id, ti.run_id, ti.task_id) / "labels.parquet")

    labels = label_table()
    apply = FeastApplyOperator(task_id="apply", definitions="features/transactions.py")
    training_set = FeastTrainingSetOperator(
        task_id="training_set",
        feature_service="transactions_model",
        entity_source=labels,
        timestamp_column="event_timestamp",
        label="fraud",
        holdout={"fraction": 0.25},  # the newest quarter of the rows, never trained on
    )
    train = MlflowTrainModelOperator(
        task_id="train",
        training_set=training_set.output,
        model_name="transactions",
        estimator="sklearn.ensemble.RandomForestClassifier",
        estimator_params={"n_estimators": 50},
        refit_on_all=True,  # register the model fitted on every training row
    )
    gate = EvaluationGateOperator(
        task_id="gate",
        model_name="transactions",
        holdout_uri="{{ ti.xcom_pull(task_ids='training_set')['holdout_set_uri'] }}",
        config={"criteria": ["roc_auc >= 0.6"]},
    )
    [labels, apply] >> training_set >> train >> gate

if __name__ == "__main__":
    from airflow_mlpipe.dagtest import run_locally

    run = run_locally(dag)
    print(f"{dag.dag_id}: {run.state}")
