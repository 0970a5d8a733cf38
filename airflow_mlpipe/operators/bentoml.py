"""BentoML deployment operators: build a bento, roll it out, roll back, health-check, batch-score.

The logic lives in :mod:`airflow_mlpipe.deploy`; these operators resolve configuration at run time,
push the endpoint link before the long work, return small JSON results, tag the registry model
version and attach metadata to their outlet asset events on success.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator

from airflow_mlpipe.config.deploy import (
    BatchingConfig,
    BatchScoringConfig,
    CanaryConfig,
    SmokeTestConfig,
    WatchConfig,
)
from airflow_mlpipe.config.monitoring import PredictionLogWriterConfig
from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.exceptions import ConfigError, QualityGateFailed
from airflow_mlpipe.hooks.mlflow import MlflowHook
from airflow_mlpipe.operators._context import XComLink, emit_asset_metadata, push_link, task_dir
from airflow_mlpipe.operators._results import push_then_raise

if TYPE_CHECKING:
    from airflow.sdk import Context


class ServingEndpointLink(XComLink):
    """The stable endpoint of a deployment (``GET <endpoint>/info`` shows what serves)."""

    link_name = "Serving endpoint"
    key = "mlpipe_serving_endpoint"


def _parse_json(name: str, value: Any) -> dict[str, Any] | None:
    """A mapping argument that templating may have turned into a JSON string."""
    if value in (None, "", "None"):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a dict, got {type(value).__name__}.")
    return value


def _parse_spec(value: Any) -> dict[str, Any] | None:
    return _parse_json("online_spec (OnlineFeatureReader spec)", value)


class _RegistryModelMixin:
    """Resolve ``model_name`` by ``version`` or ``alias`` through the MLflow hook."""

    model_name: str
    alias: str | None
    version: str | int | None
    mlflow_conn_id: str

    def _check_ref(self) -> None:
        if not self.model_name:
            raise ConfigError("model_name is required: the registered model to serve.")
        if self.version not in (None, ""):
            self.alias = None

    def _resolve(self) -> tuple[MlflowHook, Any]:
        from airflow_mlpipe.core.registry import resolve_model

        hook = MlflowHook(self.mlflow_conn_id)
        version = None if self.version in (None, "") else self.version
        with hook.activate():
            return hook, resolve_model(
                hook.get_client(), self.model_name, alias=None if version else self.alias, version=version
            )


class _TargetMixin:
    """The deployment target from ``target`` (a target spec); without one, the worker's default
    (``$MLPIPE_DEPLOYMENT_TARGET``, else the local target, which also takes the shorthand arguments
    ``state_dir``/``port``/``bentoml_home``)."""

    deployment_name: str
    target: Any
    state_dir: str | None
    port: int | None
    bentoml_home: str | None

    def _target(self) -> Any:
        from airflow_mlpipe.config.deploy import TargetSpec
        from airflow_mlpipe.deploy.targets import resolve_target, site_target

        given_spec = _parse_json("target", self.target)
        spec = TargetSpec.from_mapping(site_target() if given_spec is None else given_spec)
        local = {"state_dir": self.state_dir, "port": self.port, "bentoml_home": self.bentoml_home}
        given = {k: v for k, v in local.items() if v not in (None, "", 0)}
        if given and spec.kind != "local":
            raise ConfigError(f"{sorted(given)} are options of the local target; put them in target options.")
        spec.options = {**given, **spec.options}
        return resolve_target(spec, deployment_name=self.deployment_name)


class BentoDeployOperator(_RegistryModelMixin, _TargetMixin, BaseOperator):
    """Roll a registry model version out to a local deployment: smoke test, canary, switch.

    Deploying the version that already serves is a no-op (status ``noop``; a dead backend is
    restarted). A failed smoke test or canary fails the task; stable keeps serving.

    With ``promote=True`` the rollout is a release (:func:`airflow_mlpipe.deploy.release.release`):
    the version (usually the ``candidate`` alias) becomes ``champion`` only after the smoke test,
    the canary and the watch window passed, under the registry lock; a failure tags it
    ``rejected``/``rolled_back`` with the reason and leaves the aliases as they were. The summary
    (``status``, ``check``, reasons, figures) goes to XCom before the task fails, for notifiers.

    :param model_name: registered model name.
    :param alias: alias to deploy (default ``champion``); ignored when ``version`` is set.
    :param version: registry version to deploy.
    :param deployment_name: name of the deployment (state dir, proxy config).
    :param holdout_uri: dataset for the smoke test (feature columns); ``None`` skips it.
    :param smoke_rows: holdout rows sent in the smoke test.
    :param canary: :class:`CanaryConfig` or its dict; by default (argument left out) the default
        canary (10 % of live traffic for 60 s); ``None`` or ``{"enabled": False}`` switches right
        after the smoke test.
    :param watch: :class:`WatchConfig` or its dict: the window after the full switch (only with
        ``promote``); by default (argument left out) 30 s; ``None`` or ``{"enabled": False}`` skips it.
    :param promote: make the version ``champion`` once it serves (see above).
    :param port: stable endpoint port on 127.0.0.1 (first deploy; kept afterwards). Default: free port.
    :param state_dir: deployment state (default ``<artifact root>/deployments/<deployment_name>``).
    :param target: where the deployment runs: ``{"kind": "local", <options>}`` or your own target
        (:class:`~airflow_mlpipe.config.deploy.TargetSpec`); default: the worker's ``$MLPIPE_DEPLOYMENT_TARGET``,
        else the local target.
    :param online_spec: Feast online spec: the service takes ``entities`` and reads features online.
    :param batching: :class:`~airflow_mlpipe.config.deploy.BatchingConfig` or its dict: adaptive
        batching of concurrent requests (default on); ``{"enabled": False}`` scores each request alone.
    :param prediction_log: the service logs every row it scores to the prediction log monitoring
        judges: ``{"uri", "keys", "timestamp_column"}``
        (:class:`~airflow_mlpipe.config.monitoring.PredictionLogWriterConfig`); ``rows`` requests
        then also take these fields beside the features (see ``docs/stages/deployment.md``).
    :param bentoml_home: BentoML store (default ``$BENTOML_HOME`` or ``<artifact root>/bentoml``).
    :param mlflow_conn_id: MLflow connection.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "alias",
        "version",
        "deployment_name",
        "holdout_uri",
        "state_dir",
        "target",
        "online_spec",
        "prediction_log",
        "bentoml_home",
        "mlflow_conn_id",
    )
    operator_extra_links = (ServingEndpointLink(),)

    def __init__(
        self,
        *,
        model_name: str,
        alias: str | None = cv.ALIAS_CHAMPION,
        version: str | int | None = None,
        deployment_name: str | None = None,
        holdout_uri: str | None = None,
        smoke_rows: int = 50,
        canary: CanaryConfig | dict[str, Any] | None | Literal["default"] = "default",
        watch: WatchConfig | dict[str, Any] | None | Literal["default"] = "default",
        promote: bool = False,
        port: int | None = None,
        state_dir: str | None = None,
        target: dict[str, Any] | str | None = None,
        online_spec: dict[str, Any] | str | None = None,
        batching: BatchingConfig | dict[str, Any] | None = None,
        prediction_log: Mapping[str, Any] | None = None,
        bentoml_home: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batching = BatchingConfig.from_mapping(batching, "batching")
        PredictionLogWriterConfig.of(prediction_log, "prediction_log")  # templated values: again at run time
        self.prediction_log = prediction_log
        self.model_name = model_name
        self.alias = alias
        self.version = version
        self.deployment_name = deployment_name or model_name
        self.holdout_uri = holdout_uri
        self.smoke_rows = smoke_rows
        self.canary = CanaryConfig() if canary == "default" else CanaryConfig.from_mapping(canary)
        self.watch = WatchConfig() if watch == "default" else WatchConfig.from_mapping(watch)
        self.promote = promote
        self.port = port
        self.state_dir = state_dir
        self.target = target
        self.online_spec = online_spec
        self.bentoml_home = bentoml_home
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.deploy.release import release
        from airflow_mlpipe.deploy.rollout import deploy, record_deployment

        self._check_ref()
        target = self._target()
        push_link(context, ServingEndpointLink, f"{target.endpoint}/info")
        hook, model = self._resolve()
        smoke = SmokeTestConfig(self.holdout_uri, rows=self.smoke_rows) if self.holdout_uri else None
        how: dict[str, Any] = {
            "smoke": smoke,
            "canary": self.canary,
            "online_spec": _parse_spec(self.online_spec),
            "batching": self.batching,
            "prediction_log": PredictionLogWriterConfig.of(self.prediction_log, "prediction_log"),
        }
        try:
            if self.promote:
                result = release(target, hook, model, watch=self.watch, log=self.log.info, **how)
            else:
                result = deploy(target, hook, model, log=self.log.info, **how)
        except QualityGateFailed as exc:
            # The version was judged and rejected (smoke test, canary or watch window): the
            # registry already says so and traffic is back on stable. A retry could only find no
            # candidate, so the task fails without one. The summary goes to XCom first (a failed
            # task emits no asset event).
            from airflow.sdk.exceptions import AirflowFailException

            rejected = AirflowFailException(f"{type(exc).__name__}: {exc}")
            rejected.__cause__ = exc
            push_then_raise(context, exc.summary, rejected)
        if result["status"] != "noop":
            record_deployment(hook, result)
        emit_asset_metadata(context, self.outlets, _event(result))
        return jsonable(result)


def _event(result: dict[str, Any]) -> dict[str, Any]:
    keys = "model_name version bento_tag endpoint deployed_at status fingerprint champion_version".split()
    return {k: result.get(k) for k in keys}


class BentoRollbackOperator(_TargetMixin, BaseOperator):
    """Serve the registry's ``previous`` version again in one step (no canary) and move
    ``champion`` back to it, under the registry lock: the same code path as the automatic rollback
    after a failed watch window (:func:`airflow_mlpipe.deploy.release.roll_back`). The replaced
    version is tagged ``rolled_back`` (check ``manual``).

    :param model_name: registered model name.
    :param deployment_name: deployment to roll back (default: ``model_name``).
    :param target: where the deployment runs: ``{"kind": "local", <options>}`` or your own target
        (:class:`~airflow_mlpipe.config.deploy.TargetSpec`); default: the worker's ``$MLPIPE_DEPLOYMENT_TARGET``,
        else the local target.
    :param holdout_uri: optional smoke-test dataset.
    :param online_spec: the deployment's Feast online spec (as the deploy operator's).
    :param prediction_log: the deployment's prediction log (as the deploy operator's).
    """

    template_fields: Sequence[str] = (
        "model_name",
        "deployment_name",
        "holdout_uri",
        "state_dir",
        "target",
        "prediction_log",
        "bentoml_home",
        "mlflow_conn_id",
    )
    operator_extra_links = (ServingEndpointLink(),)

    def __init__(
        self,
        *,
        model_name: str,
        deployment_name: str | None = None,
        holdout_uri: str | None = None,
        smoke_rows: int = 50,
        state_dir: str | None = None,
        target: dict[str, Any] | str | None = None,
        online_spec: dict[str, Any] | str | None = None,
        prediction_log: Mapping[str, Any] | None = None,
        bentoml_home: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        PredictionLogWriterConfig.of(prediction_log, "prediction_log")
        self.prediction_log = prediction_log
        self.model_name = model_name
        self.deployment_name = deployment_name or model_name
        self.holdout_uri = holdout_uri
        self.smoke_rows = smoke_rows
        self.state_dir = state_dir
        self.target = target
        self.port = None
        self.online_spec = online_spec
        self.bentoml_home = bentoml_home
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.deploy.release import manual_rollback
        from airflow_mlpipe.deploy.rollout import record_deployment

        target = self._target()
        push_link(context, ServingEndpointLink, f"{target.endpoint}/info")
        hook = MlflowHook(self.mlflow_conn_id)
        smoke = SmokeTestConfig(self.holdout_uri, rows=self.smoke_rows) if self.holdout_uri else None
        result = manual_rollback(
            target,
            hook,
            self.model_name,
            smoke=smoke,
            online_spec=_parse_spec(self.online_spec),
            prediction_log=PredictionLogWriterConfig.of(self.prediction_log, "prediction_log"),
            log=self.log.info,
        )
        record_deployment(hook, result)
        emit_asset_metadata(context, self.outlets, _event(result))
        return jsonable(result)


class BentoHealthCheckOperator(_TargetMixin, BaseOperator):
    """Health-check a deployment; restart dead backends/proxy (``restart=True``) or fail.

    :param deployment_name: the deployment to check.
    :param target: where the deployment runs: ``{"kind": "local", <options>}`` or your own target
        (:class:`~airflow_mlpipe.config.deploy.TargetSpec`); default: the worker's ``$MLPIPE_DEPLOYMENT_TARGET``,
        else the local target.
    :param restart: bring dead backends back on their port; ``False`` fails the task instead.
    """

    template_fields: Sequence[str] = ("deployment_name", "state_dir", "target", "bentoml_home")

    def __init__(
        self,
        *,
        deployment_name: str,
        restart: bool = True,
        state_dir: str | None = None,
        target: dict[str, Any] | str | None = None,
        bentoml_home: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.restart = restart
        self.state_dir = state_dir
        self.target = target
        self.port = None
        self.bentoml_home = bentoml_home

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.deploy.checks import ServingError
        from airflow_mlpipe.deploy.rollout import check, ensure

        target = self._target()
        report = ensure(target, log=self.log.info) if self.restart else check(target)
        if not self.restart and not report["healthy"]:
            push_then_raise(
                context,
                report,
                ServingError(f"Deployment {self.deployment_name} is unhealthy: {report['backends']}"),
            )
        return jsonable(report)


class BatchInferenceOperator(_RegistryModelMixin, BaseOperator):
    """Score a dataset with a registry model in chunks; write predictions + model version as parquet.

    The chunks are scored in the task's process (``engine="in_process"``) or by a Spark job
    (``engine="spark"``); both check, score and write the same way
    (:class:`~airflow_mlpipe.config.deploy.BatchScoringConfig`).

    :param model_name: registered model name.
    :param input_uri: dataset to score (parquet or CSV) with the model's feature columns.
    :param alias: alias to use (default ``champion``); ignored when ``version`` is set.
    :param version: registry version to use.
    :param keep_columns: input columns copied to the output (ids, timestamps).
    :param batch_size: rows per chunk.
    :param workers: ``engine="in_process"``: chunks scored at once by threads of the task's process
        (``None``: one per core; ``1``: in the task's thread).
    :param memory_map: ``engine="in_process"``: read a local parquet file through a memory map
        (default); ``False`` for inputs that may be overwritten in place while they are scored
        (:class:`~airflow_mlpipe.config.deploy.BatchScoringConfig`).
    :param engine: ``"in_process"`` (default) or ``"spark"``.
    :param spark_conn_id: ``engine="spark"``: connection naming the Spark master; ``None``: local mode.
    :param spark_conf: ``engine="spark"``: Spark properties over the provider's defaults.
    :param output_name: file name under the task's artifact directory.
    :param prediction_log: also append the predictions to the prediction log monitoring judges
        (:mod:`airflow_mlpipe.monitoring.prediction_log`): ``{"uri", "keys", "timestamp_column"}``.
        The keys (and the timestamp column, when the input has it) must be among ``keep_columns``.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "alias",
        "version",
        "input_uri",
        "keep_columns",
        "output_name",
        "mlflow_conn_id",
        "prediction_log",
        "spark_conn_id",
        "spark_conf",
    )

    def __init__(
        self,
        *,
        model_name: str,
        input_uri: str,
        alias: str | None = cv.ALIAS_CHAMPION,
        version: str | int | None = None,
        keep_columns: list[str] | None = None,
        batch_size: int = 100_000,
        workers: int | None = None,
        memory_map: bool = True,
        output_name: str = "predictions.parquet",
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        prediction_log: Mapping[str, Any] | None = None,
        engine: str = "in_process",
        spark_conn_id: str | None = None,
        spark_conf: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if prediction_log is not None:
            PredictionLogWriterConfig.of(prediction_log, "prediction_log")
            absent = [k for k in prediction_log["keys"] if k not in (keep_columns or [])]
            if absent:
                raise ConfigError(
                    f"prediction_log keys {absent} must be kept in the output: add them to keep_columns."
                )
        self.prediction_log = prediction_log
        self.model_name = model_name
        self.input_uri = input_uri
        self.alias = alias
        self.version = version
        self.keep_columns = keep_columns
        self.batch_size = batch_size
        self.workers = workers
        self.memory_map = memory_map
        self.engine = engine
        self.spark_conn_id = spark_conn_id
        self.spark_conf = dict(spark_conf or {})
        self.output_name = output_name
        self.mlflow_conn_id = mlflow_conn_id
        self._scoring()  # bad settings fail when the DAG is parsed, not when it runs

    def _scoring(self) -> BatchScoringConfig:
        return BatchScoringConfig(
            engine=self.engine,
            batch_size=self.batch_size,
            workers=self.workers,
            memory_map=self.memory_map,
            spark_conn_id=self.spark_conn_id,
            spark_conf=self.spark_conf,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.core.registry import load_model

        self._check_ref()
        if not self.input_uri:
            raise ConfigError("input_uri is required: the dataset to score.")
        scoring = self._scoring()
        hook, model = self._resolve()
        with hook.activate():
            estimator = load_model(model)
        arguments: dict[str, Any] = {
            "input_uri": self.input_uri,
            "features": model.features,
            "output_path": task_dir(context) / self.output_name,
            "model_name": model.name,
            "model_version": model.version,
            "keep_columns": list(self.keep_columns or []),
            "inputs": model.inputs,
        }
        if scoring.engine == "spark":
            from airflow_mlpipe.deploy.spark_batch import score_dataset_spark

            scored = score_dataset_spark(estimator, config=scoring, **arguments)
        else:
            from airflow_mlpipe.deploy.batch import score_dataset

            scored = score_dataset(
                estimator,
                batch_size=scoring.batch_size,
                workers=scoring.workers,
                memory_map=scoring.memory_map,
                **arguments,
            )
        result = {
            "predictions_uri": scored["predictions_uri"],
            "row_count": scored["row_count"],
            "classes": scored["classes"],
            "model_name": model.name,
            "version": model.version,
            "fingerprint": model.fingerprint,
            "input_uri": self.input_uri,
            "engine": scored["engine"],
        }
        if self.prediction_log is not None:
            result["prediction_log"] = self._log(scored["predictions_uri"], str(model.version))
        emit_asset_metadata(context, self.outlets, result)
        return jsonable(result)

    def _log(self, predictions_uri: str, version: str) -> dict[str, Any]:
        """Append the scored rows to the prediction log, one log part per row group (bounded memory)."""
        from airflow_mlpipe.core.deps import require
        from airflow_mlpipe.monitoring.prediction_log import write_log

        assert self.prediction_log is not None
        pq = require("pyarrow.parquet")
        keys = list(self.prediction_log["keys"])
        ts = self.prediction_log.get("timestamp_column") or "event_timestamp"
        source = pq.ParquetFile(predictions_uri.removeprefix("file://"))
        columns = [c for c in source.schema_arrow.names if c in {*keys, ts, "prediction", "scores"}]
        rows = 0
        for batch in source.iter_batches(columns=columns):
            frame = batch.to_pandas()
            write_log(
                frame,
                str(self.prediction_log["uri"]),
                keys=keys,
                model_version=version,
                timestamp_column=ts,
                score_column="scores" if "scores" in frame.columns else None,
            )
            rows += len(frame)
        return {"uri": str(self.prediction_log["uri"]), "rows": rows}
