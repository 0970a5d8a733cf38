"""The SQLAlchemy URL of a database connection (any DbApiHook: postgres, sqlite, …)."""

from __future__ import annotations

from airflow_mlpipe.exceptions import ConfigError


def sqlalchemy_url(conn_id: str) -> str:
    """The SQLAlchemy URL (password included) of the Airflow connection ``conn_id``.

    :param conn_id: an Airflow connection whose hook is a database hook.
    :raises ConfigError: the connection does not exist or its hook has no SQLAlchemy URL.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ConfigError(
            f"Connection {conn_id!r} does not exist; create it (a database connection, e.g. postgres)."
        ) from None
    try:
        hook = conn.get_hook()
    except AirflowException as exc:  # a connection type whose provider is not installed
        raise ConfigError(f"Connection {conn_id!r} cannot be used as a database: {exc}") from None
    url = getattr(hook, "sqlalchemy_url", None)
    if url is None and hasattr(hook, "get_uri"):
        url = hook.get_uri()
    if url is None:
        raise ConfigError(
            f"Connection {conn_id!r} gives a {type(hook).__name__}, which has no SQLAlchemy URL; "
            "use a database connection (a DbApiHook such as postgres or sqlite)."
        )
    if not isinstance(url, str):  # sqlalchemy.URL
        url = url.render_as_string(hide_password=False)
    return str(url)
