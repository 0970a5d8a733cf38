"""Run a DAG in this process, against the configured metadata DB: ``dag.test()`` made usable.

Airflow 3's ``dag.test()`` only creates runs for DAGs the dag-processor has serialized to the
metadata DB; a DAG run straight from its file fails with "Cannot create DagRun … not serialized".
:func:`run_locally` writes the DAG to the DB as the dag-processor would, then runs it::

    # at the end of a DAG file
    if __name__ == "__main__":
        from airflow_mlpipe.dagtest import run_locally

        run_locally(dag)

Then ``python dags/my_dag.py`` (once ``airflow db migrate`` has created the DB of ``AIRFLOW_HOME``).
"""

from __future__ import annotations

from typing import Any


def serialize_dag(dag: Any) -> None:
    """Write ``dag`` to the metadata DB under the default DAG bundle, as the dag-processor would.

    :raises RuntimeError: the DAG could not be serialized (the parse error is in the message).
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.models.dag_version import DagVersion
    from airflow.models.errors import ParseImportError
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )
    if DagVersion.get_latest_version(dag.dag_id) is None:
        with create_session() as session:
            errors = [e.stacktrace for e in session.query(ParseImportError).all()]
        raise RuntimeError(f"DAG {dag.dag_id} could not be serialized: {errors}")


def run_locally(dag: Any, **kwargs: Any) -> Any:
    """Serialize ``dag`` and run it with ``dag.test(**kwargs)``; returns the finished DagRun.

    :param dag: the DAG object (e.g. the module-level ``dag`` of a DAG file).
    :param kwargs: passed to ``dag.test`` (``logical_date``, ``run_conf``, ``conn_file_path`` …).
    """
    serialize_dag(dag)
    return dag.test(**kwargs)
