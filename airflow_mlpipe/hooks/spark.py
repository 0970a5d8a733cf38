"""The Spark master URL of an Airflow connection (conn type ``spark``, as the Apache Spark
provider defines it: host ``spark://h`` or ``yarn`` / ``k8s://…`` / ``local[n]``, optional port)."""

from __future__ import annotations

from airflow_mlpipe.exceptions import ConfigError

#: the master when no connection is named: Spark's local mode, one worker thread per core
LOCAL_MASTER = "local[*]"


def spark_master(conn_id: str | None) -> str:
    """The master URL of ``conn_id`` (``spark://h:7077``, ``yarn`` …); ``None``: :data:`LOCAL_MASTER`.

    A host without a scheme is a standalone master (``spark://``); the port, when set, is appended.

    :raises ConfigError: the connection does not exist or has no host.
    """
    if conn_id is None:
        return LOCAL_MASTER
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ConfigError(
            f"Connection {conn_id!r} does not exist; create it (conn type spark, host spark://<master>, "
            "port 7077)."
        ) from None
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ConfigError(f"Connection {conn_id!r} has no host: set it to the Spark master (spark://<host>).")
    if host.startswith("local") or host == "yarn":
        return host
    if "://" not in host:
        host = f"spark://{host}"
    return f"{host}:{conn.port}" if conn.port else host


def is_local(master: str) -> bool:
    """Whether ``master`` runs Spark inside this process's JVM (local mode)."""
    return master == "local" or master.startswith("local[")
