"""What the provider's hooks share: an optional Airflow connection and a form from provider.yaml."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException


class OptionalConnectionHook(BaseHook):
    """A hook whose connection may be absent: the stage then runs on its embedded default.

    Subclasses set ``conn_name_attr``, ``default_conn_name``, ``conn_type`` and ``hook_name`` as
    Airflow expects, and store the connection id in the attribute ``conn_name_attr`` names.
    """

    conn_name_attr: str
    conn_type: str

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        from airflow_mlpipe.get_provider_info import ui_field_behaviour

        return ui_field_behaviour(cls.conn_type)

    @cached_property
    def connection(self) -> Any | None:
        """The Airflow connection, or ``None`` when it does not exist (embedded default)."""
        try:
            return self.get_connection(getattr(self, self.conn_name_attr))
        except AirflowNotFoundException:
            return None
