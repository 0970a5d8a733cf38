"""Operator extra links fed by an XCom that the task pushes *before* its long work starts.

So the link works in the Airflow UI even when the task later fails (the link a user needs most).
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.sdk import BaseOperatorLink


class XComLink(BaseOperatorLink):
    """A link whose URL is the XCom value stored under :attr:`xcom_key` by :func:`push_link`."""

    link_name: ClassVar[str] = "link"
    key: ClassVar[str] = "mlpipe_link"

    @property
    def name(self) -> str:
        return self.link_name

    @property
    def xcom_key(self) -> str:
        return self.key

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(key=self.key, ti_key=ti_key)
        return str(value) if value else ""


def push_link(context: Any, link: type[XComLink], url: str) -> None:
    """Store ``url`` for ``link`` of the running task (call before the long work starts)."""
    context["ti"].xcom_push(key=link.key, value=url)
