"""Monitoring operators beside the drift check: batch de-duplication and serving health.

:class:`ClaimNewBatchOperator` is the guard at the top of an event-driven DAG: it claims the files
announced by the triggering asset events and skips the rest of the run when every one of them was
already processed (a burst, or a duplicate event after a triggerer restart).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlpipe.config.monitoring import ServingHealthConfig
from airflow_mlpipe.exceptions import ConfigError, QualityGateFailed
from airflow_mlpipe.operators._context import emit_asset_metadata
from airflow_mlpipe.operators._results import push_then_raise

if TYPE_CHECKING:
    from airflow.sdk import Context


def announced_files(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Files announced by the run's triggering asset events (watcher payloads or drift events)."""
    files: dict[str, dict[str, Any]] = {}
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            extra = dict(getattr(event, "extra", None) or {})
            inner = extra.get("payload")
            payload: Mapping[str, Any] = inner if isinstance(inner, Mapping) else extra
            for f in payload.get("files") or []:
                files.setdefault(f["key"], dict(f))
            uri = payload.get("current_uri")
            if uri and not payload.get("files"):
                # A drift event names the batch it judged; the event id makes the key unique.
                key = f"{uri}|event:{getattr(event, 'id', '')}"
                files.setdefault(key, {"path": uri, "key": key})
    return sorted(files.values(), key=lambda f: (f.get("mtime", 0), f["path"]))


class ClaimNewBatchOperator(BaseOperator):
    """Claim the files announced by the triggering asset events; skip the run if none is new.

    Returns ``{"files": [...], "paths": [...], "current_uri": str, "batch_key": str}``; with several
    new files ``current_uri`` is a parquet file combining them (under the task's artifact directory).

    :param ledger_uri: directory of claim markers, shared by all runs of the DAG (local for atomic
        claims; on object storage also set ``max_active_runs=1``).
    :param files: files to claim instead of the triggering events' (templated, e.g. a sensor's XCom).
    """

    template_fields: Sequence[str] = ("ledger_uri", "files")

    def __init__(self, *, ledger_uri: str, files: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ledger_uri = ledger_uri
        self.files = files

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.exceptions import AirflowSkipException

        from airflow_mlpipe.monitoring.files import batch_key, claim

        announced = list(self.files) if self.files else announced_files(context)
        if not announced:
            raise AirflowSkipException("No batch files were announced to this run.")
        claimed = set(claim([f["key"] for f in announced], self.ledger_uri))
        new = [f for f in announced if f["key"] in claimed]
        if not new:
            raise AirflowSkipException(f"All {len(announced)} announced file(s) were already processed.")
        result = {
            "files": new,
            "paths": [f["path"] for f in new],
            "current_uri": new[0]["path"] if len(new) == 1 else self._combine(context, new),
            "batch_key": batch_key(new),
        }
        emit_asset_metadata(
            context, self.outlets, {"batch_key": result["batch_key"], "paths": result["paths"]}
        )
        return result

    def _combine(self, context: Context, files: list[dict[str, Any]]) -> str:
        from airflow_mlpipe.core.datasets import read_table, write_parquet
        from airflow_mlpipe.core.deps import require
        from airflow_mlpipe.operators._context import task_dir

        pd = require("pandas")
        frames = [read_table(f["path"]) for f in files]
        return write_parquet(pd.concat(frames, ignore_index=True), task_dir(context) / "batch.parquet")


class ServingHealthOperator(BaseOperator):
    """Read a serving endpoint's Prometheus metrics; report latency and error rate against thresholds.

    With ``window_seconds > 0`` it scrapes twice and judges the requests in between; otherwise the
    totals since the service started. Returns the health summary; with ``fail_on_breach`` a breach
    fails the task (after pushing the summary), otherwise ``healthy: false`` flags it.

    :param metrics_url: e.g. ``http://127.0.0.1:3000/metrics`` (or an endpoint; ``/metrics`` is added).
    :param health: :class:`~airflow_mlpipe.config.monitoring.ServingHealthConfig` or a dict of its fields.
    :param window_seconds: measurement window between two scrapes.
    :param fail_on_breach: raise :class:`~airflow_mlpipe.exceptions.QualityGateFailed` on a breach.
    """

    template_fields: Sequence[str] = ("metrics_url", "health", "window_seconds")
    template_fields_renderers = {"health": "json"}

    def __init__(
        self,
        *,
        metrics_url: str,
        health: ServingHealthConfig | Mapping[str, Any] | None = None,
        window_seconds: float = 0.0,
        fail_on_breach: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.metrics_url = metrics_url
        self.health = health
        self.window_seconds = window_seconds
        self.fail_on_breach = fail_on_breach

    def _config(self) -> ServingHealthConfig:
        if self.health is None:
            return ServingHealthConfig()
        if isinstance(self.health, ServingHealthConfig):
            return self.health
        if isinstance(self.health, Mapping):
            return ServingHealthConfig(**dict(self.health))
        raise ConfigError(
            f"health must be a ServingHealthConfig or a dict, not {type(self.health).__name__}."
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.monitoring import serving

        cfg = self._config()
        url = self.metrics_url.rstrip("/")
        if not url.endswith("/metrics"):
            url = f"{url}/metrics"
        window = serving.aggregate(serving.scrape(url), cfg)
        if float(self.window_seconds) > 0:
            time.sleep(float(self.window_seconds))
            window = serving.difference(serving.aggregate(serving.scrape(url), cfg), window)
        summary = serving.evaluate(window, cfg)
        summary["metrics_url"] = url
        self.log.info("Serving health %s", summary)
        if summary["breaches"] and self.fail_on_breach:
            push_then_raise(
                context,
                summary,
                QualityGateFailed(f"Serving health breached: {summary['breaches']}", summary),
            )
        emit_asset_metadata(context, self.outlets, summary)
        return summary
