"""A notifier that posts a JSON alert (e.g. the drift summary) to a webhook URL."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseNotifier

from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.exceptions import ConfigError, MlpipeError


class WebhookNotifier(BaseNotifier):
    """POST ``{"title", "dag_id", "run_id", "task_id", "state", "summary", ...}`` as JSON to ``url``.

    Use as a callback: ``on_success_callback=WebhookNotifier(url=..., summary_task_id="drift")``.
    The summary is the XCom return value of ``summary_task_id`` (for the drift check: the drift
    summary), or ``summary`` when given (templated).

    :param url: webhook URL (templated); a Slack/Teams-style endpoint or any JSON receiver.
    :param title: short alert title (templated).
    :param summary_task_id: task whose XCom return value is attached.
    :param summary: payload to attach instead (templated).
    :param only_if: attach-and-send only when this key of the summary is truthy (e.g.
        ``"retrain_recommended"``); ``None`` sends always.
    :param headers: extra HTTP headers (e.g. an auth token from a Variable via templating).
    :param timeout: seconds for the request.
    """

    template_fields: Sequence[str] = ("url", "title", "summary", "headers")

    def __init__(
        self,
        *,
        url: str,
        title: str = "mlpipe alert",
        summary_task_id: str | None = None,
        summary: Mapping[str, Any] | None = None,
        only_if: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__()
        if not url:
            raise ConfigError("WebhookNotifier needs a url.")
        self.url = url
        self.title = title
        self.summary_task_id = summary_task_id
        self.summary = summary
        self.only_if = only_if
        self.headers = dict(headers or {})
        self.timeout = timeout

    def payload(self, context: Any) -> dict[str, Any] | None:
        ti = context.get("ti") or context.get("task_instance")
        summary = self.summary
        if summary is None and self.summary_task_id and ti is not None:
            summary = ti.xcom_pull(task_ids=self.summary_task_id)
        if self.only_if and not (summary or {}).get(self.only_if):
            return None
        return jsonable(
            {
                "title": self.title,
                "dag_id": getattr(ti, "dag_id", None),
                "run_id": getattr(ti, "run_id", None),
                "task_id": getattr(ti, "task_id", None),
                "state": str(getattr(ti, "state", "")) or None,
                "summary": summary,
            }
        )

    def notify(self, context: Any) -> None:
        body = self.payload(context)
        if body is None:
            self.log.info("Nothing to notify: %r is not set in the summary", self.only_if)
            return
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise MlpipeError(f"Webhook {self.url} did not accept the alert: {exc}") from exc


send_webhook_notification = WebhookNotifier
