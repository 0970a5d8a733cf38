"""Streaming operators: roll a registry model version out to a stream scorer; export scored events
as a monitored batch.

The logic lives in :mod:`airflow_mlpipe.streaming`; these operators resolve configuration at run
time, return small JSON results and attach them to their outlet asset events on success.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlpipe.config.deploy import DEFAULT_STATE_TABLE, CanaryConfig
from airflow_mlpipe.config.streaming import StreamConfig
from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.core.storage import artifact_root, local_path
from airflow_mlpipe.exceptions import ConfigError, QualityGateFailed
from airflow_mlpipe.hooks.mlflow import MlflowHook
from airflow_mlpipe.operators._context import emit_asset_metadata
from airflow_mlpipe.operators._results import push_then_raise
from airflow_mlpipe.operators.bentoml import _RegistryModelMixin

if TYPE_CHECKING:
    from airflow.sdk import Context


class StreamScorerDeployOperator(_RegistryModelMixin, BaseOperator):
    """Serve a registry model version on a stream: build (or reuse) its bento, start its scorer,
    canary on a share of the event keys, hand the stream over (see ``docs/stages/streaming.md``).

    :param model_name: registered model name.
    :param alias: alias to serve (default ``champion``); ignored when ``version`` is set.
    :param version: registry version to serve.
    :param stream: :class:`StreamConfig` or its dict (Redis URL, input/output streams, batching).
    :param canary: :class:`CanaryConfig` or its dict; ``{"enabled": False}`` hands over at once.
    :param state_dir: the scorers' logs and, without ``state_conn_id``, their state (default
        ``<artifact root>/streams/<input stream>``).
    :param state_conn_id: Airflow connection (postgres) of the SQL state store: the stream's state
        and lock in a table every worker sees (row ``stream:<input stream>``); default ``state.json``
        in ``state_dir``.
    :param state_table: the SQL state store's table.
    :param online_spec: Feast online spec: events carry entity keys, features are read online.
    :param mlflow_conn_id: MLflow connection.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "alias",
        "version",
        "stream",
        "state_dir",
        "state_conn_id",
        "mlflow_conn_id",
    )

    def __init__(
        self,
        *,
        model_name: str,
        stream: StreamConfig | dict[str, Any],
        alias: str | None = cv.ALIAS_CHAMPION,
        version: str | int | None = None,
        canary: CanaryConfig | dict[str, Any] | None = None,
        state_dir: str | None = None,
        state_conn_id: str | None = None,
        state_table: str = DEFAULT_STATE_TABLE,
        online_spec: dict[str, Any] | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.alias = alias
        self.version = version
        self.stream = stream
        self.canary = CanaryConfig.from_mapping(canary) if canary is not None else CanaryConfig()
        self.state_dir = state_dir
        self.state_conn_id = state_conn_id
        self.state_table = state_table
        self.online_spec = online_spec
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.deploy.bento import build_bento
        from airflow_mlpipe.deploy.targets.state import state_store
        from airflow_mlpipe.streaming.rollout import StreamDeployment, deploy_stream

        self._check_ref()
        config = StreamConfig.from_mapping(self.stream, "stream")
        state_dir = self.state_dir
        if not state_dir:
            root = local_path(artifact_root())
            if root is None:
                raise ConfigError("Set state_dir when the artifact root is not local.")
            state_dir = os.path.join(root, "streams", config.input_stream)
        hook, model = self._resolve()
        bento = build_bento(hook, model, online_spec=self.online_spec)
        store = state_store(
            self.state_conn_id, f"stream:{config.input_stream}", table=self.state_table, directory=state_dir
        )
        deployment = StreamDeployment(state_dir, config, store=store)
        try:
            result = deploy_stream(
                deployment,
                bento.tag,
                model_name=model.name,
                model_version=model.version,
                canary=self.canary,
                log=self.log.info,
            )
        except QualityGateFailed as exc:
            push_then_raise(context, exc.summary, exc)
        emit_asset_metadata(context, self.outlets, result)
        return jsonable(result)


class ScoredStreamBatchOperator(BaseOperator):
    """Write the events scored since the last export as one parquet batch into ``directory`` (the
    directory the monitoring stage watches); skip when there are fewer than ``min_events``.

    :param stream: :class:`StreamConfig` or its dict.
    :param directory: where batches land (local path).
    :param max_events: at most this many events per batch.
    :param min_events: fewer new events → the task is skipped.
    :param prediction_column: the column of the predictions (as the monitoring config names it).
    """

    template_fields: Sequence[str] = ("stream", "directory")

    def __init__(
        self,
        *,
        stream: StreamConfig | dict[str, Any],
        directory: str,
        max_events: int = 100_000,
        min_events: int = 1,
        prediction_column: str = "prediction",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if min_events < 1 or max_events < min_events:
            raise ConfigError(f"Need 1 <= min_events <= max_events, got {min_events} and {max_events}.")
        self.stream = stream
        self.directory = directory
        self.max_events = max_events
        self.min_events = min_events
        self.prediction_column = prediction_column

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.exceptions import AirflowSkipException

        from airflow_mlpipe.streaming.batches import export_scored_batch

        result = export_scored_batch(
            StreamConfig.from_mapping(self.stream, "stream"),
            self.directory,
            max_events=self.max_events,
            min_events=self.min_events,
            prediction_column=self.prediction_column,
        )
        if result is None:
            raise AirflowSkipException(f"Fewer than {self.min_events} new scored events.")
        emit_asset_metadata(context, self.outlets, result)
        return jsonable(result)
