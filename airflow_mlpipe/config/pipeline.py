"""Typed configuration of a pipeline, one dataclass per concern, loadable from YAML.

A :class:`PipelineConfig` describes a whole use case: where data lives, how it is validated, which
Feast feature service builds the training set, which candidate models are trained, what the
evaluation gate demands, how the champion is deployed and how new data is monitored. The DAG
factories (:mod:`airflow_mlpipe.factories`) turn it into Airflow DAGs.

Naming: a section of the pipeline YAML is a ``*Section`` (``TrainingSection``, ``GateSection`` …);
a stage's own configuration is a ``*Config`` in that stage's config module (``config.training.TrainingConfig``,
``config.evaluation.GateConfig``), which the sections validate against.

Every object validates itself in ``__post_init__`` and raises
:class:`~airflow_mlpipe.exceptions.ConfigError` saying what to change. Strings may be Jinja templates
(``{{ ds }}``, ``{{ mlpipe_env('MLPIPE_DATA_DIR') }}``): they are rendered when a task runs, never
when the DAG file is parsed. ``options`` dicts are passed through to the stage's operator as extra
keyword arguments, for settings this file does not model.

Nothing here reads files or connects anywhere except :meth:`PipelineConfig.from_yaml`, which a DAG
file calls once at parse time on a small local YAML file.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from airflow_mlpipe.config.base import MappingConfig, from_mapping
from airflow_mlpipe.config.deploy import BatchScoringConfig, TargetSpec
from airflow_mlpipe.core.yamlio import load_yaml
from airflow_mlpipe.exceptions import ConfigError

PATTERNS = ("linear", "dag", "event")
TASK_TYPES = ("classification", "regression")
_IDENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class _Config(MappingConfig):
    """The sections of the pipeline YAML: ``from_mapping`` builds the nested sections too."""

    section: ClassVar[str] = ""

    @classmethod
    def from_mapping(cls, value: Self | typing.Mapping[str, Any] | None, where: str | None = None) -> Self:
        """Build from a plain mapping (as loaded from YAML); unknown keys are a ConfigError."""
        where = where or cls.section or cls.__name__
        if isinstance(value, typing.Mapping):
            hints = typing.get_type_hints(cls)
            value = {k: _nested(hints.get(k), v, f"{where}.{k}") for k, v in value.items()}
        return from_mapping(cls, value, where)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-safe dict that :meth:`from_mapping` turns back into an equal object."""
        return copy.deepcopy(dataclasses.asdict(self))  # type: ignore[call-overload]


def _nested(hint: Any, value: Any, where: str) -> Any:
    """Turn nested mappings into the sections the type hints name."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for arg in options:
        if isinstance(arg, type) and issubclass(arg, _Config) and isinstance(value, typing.Mapping):
            return arg.from_mapping(value, where)
    return value


def _require_text(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}.")


def _require_mapping(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of operator keyword arguments, got {value!r}.")


def env_template(variable: str, default: str) -> str:
    """A Jinja template reading environment variable ``variable`` when the task runs, else ``default``."""
    return f"{{{{ mlpipe_env({variable!r}, {default!r}) }}}}"


@dataclass
class Locations(_Config):
    """Where things live. Each value is rendered when a task runs (templates allowed).

    :param data_dir: directory of the incoming data (for the templates of the other sections).
    :param feature_repo: Feast repository directory (with ``feature_store.yaml``); empty = the
        ``feast_conn_id`` connection, else the embedded store under the artifact root.
    :param feast_conn_id: Airflow connection of the Feast store.
    :param mlflow_conn_id: Airflow connection of the MLflow tracking server / registry (absent
        connection = the embedded SQLite default under the artifact root).

    The artifact root is not set here: every task reads it when it runs (``MLPIPE_ARTIFACT_ROOT``,
    then Airflow config ``[mlpipe] artifact_root``; see the stage contract).
    """

    section: ClassVar[str] = "locations"

    data_dir: str = env_template("MLPIPE_DATA_DIR", "{airflow_home}/mlpipe/data")
    feature_repo: str = ""
    feast_conn_id: str = "mlpipe_feast_default"
    mlflow_conn_id: str = "mlpipe_mlflow_default"

    def __post_init__(self) -> None:
        for name in ("data_dir", "feast_conn_id", "mlflow_conn_id"):
            _require_text(getattr(self, name), f"locations.{name}")


@dataclass
class ValidationSection(_Config):
    """Data validation of the incoming batch (Great Expectations).

    :param dataset: URI of the table to validate (templated, e.g. ``{{ ... }}/features/{{ ds }}.parquet``).
    :param suite: expectation suite name.
    :param expectations: expectation definitions (``{"type": "expect_column_values_to_not_be_null", ...}``).
    :param timestamp_column: event-time column of a batch (the timestamp field of the Feast source
        it feeds). A validated batch records its time range on its asset event, and the training
        run it triggers materializes that time only. Empty: no range is recorded.
    :param options: extra keyword arguments for the validation operator.
    """

    section: ClassVar[str] = "validation"

    dataset: str = ""
    suite: str = "default"
    expectations: list[dict[str, Any]] = field(default_factory=list)
    timestamp_column: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_text(self.dataset, "validation.dataset")
        _require_text(self.suite, "validation.suite")
        if not isinstance(self.expectations, list) or not all(isinstance(e, dict) for e in self.expectations):
            raise ConfigError("validation.expectations must be a list of mappings (one per expectation).")
        _require_mapping(self.options, "validation.options")


@dataclass
class FeaturesSection(_Config):
    """The training set, built point-in-time correct by a Feast feature service.

    :param feature_service: name of the Feast feature service.
    :param entity_source: URI of the entity/label table (entity keys, timestamp, label).
    :param timestamp_column: event timestamp column of ``entity_source``.
    :param label: label column of ``entity_source``.
    :param holdout_source: entity/label table of the evaluation holdout (e.g. the most recent
        labels), turned into features the same way; its rows are removed from the training set.
        Empty: the holdout is cut from ``entity_source`` by ``holdout``.
    :param training_window: which rows the model learns from, the fields of
        :class:`airflow_mlpipe.config.features.TrainingWindowConfig` (``mode``: ``auto`` — since
        the drifted batch for a run started by drift, else all —, ``all``, ``last_days``,
        ``last_batches``, ``since_drift``; ``days``, ``batches``, ``min_rows`` …).
    :param holdout: the gate's holdout when there is no ``holdout_source``, the fields of
        :class:`airflow_mlpipe.config.features.HoldoutConfig` (default: the newest 20 % by event
        time, never trained on; ``method: random`` for a seeded random split).
    :param definitions: Feast definitions to apply (a file/directory relative to the DAG folder,
        e.g. ``features/churn.py``, or an import path); empty = the repository's own files.
    :param materialize: also materialize the online store (for online serving).
    :param materialize_start: materialization window start (ISO, templated); empty = the run's
        data interval, or for an asset-triggered run the time range of the triggering batch (see
        ``validation.timestamp_column``), or else a catch-up from the last materialization.
    :param materialize_end: materialization window end (exclusive; templated).
    :param materialize_overlap_seconds: how far before the window to re-read, for late rows.
    :param options: extra keyword arguments for the training-set operator.
    """

    section: ClassVar[str] = "features"

    feature_service: str = ""
    entity_source: str = ""
    timestamp_column: str = "event_timestamp"
    label: str = ""
    holdout_source: str = ""
    training_window: dict[str, Any] = field(default_factory=dict)
    holdout: dict[str, Any] = field(default_factory=dict)
    definitions: str = ""
    materialize: bool = True
    materialize_start: str = ""
    materialize_end: str = ""
    materialize_overlap_seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("feature_service", "entity_source", "timestamp_column", "label"):
            _require_text(getattr(self, name), f"features.{name}")
        overlap = self.materialize_overlap_seconds
        if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or overlap < 0:
            raise ConfigError(f"features.materialize_overlap_seconds must be a number >= 0, got {overlap!r}.")
        _require_mapping(self.options, "features.options")
        from airflow_mlpipe.config.features import HoldoutConfig, TrainingWindowConfig

        TrainingWindowConfig.from_mapping(self.training_window, "features.training_window")
        HoldoutConfig.from_mapping(self.holdout, "features.holdout")


@dataclass
class TrainingSection(_Config):
    """The model: a scikit-learn estimator trained on the training set and registered in MLflow.

    :param model_name: registered model name.
    :param experiment: MLflow experiment name (default: the model name).
    :param estimator: import path of an estimator class (or of a factory returning an estimator or
        Pipeline), e.g. ``sklearn.ensemble.HistGradientBoostingClassifier``.
    :param params: estimator parameters (the base of every search candidate).
    :param search: hyperparameter search, the fields of
        :class:`airflow_mlpipe.config.training.SearchConfig` (``param_grid`` or
        ``param_distributions``, ``metric``, ``direction`` …). The ``dag`` pattern trains its
        candidates in parallel (one mapped task each) and registers the best; ``linear`` trains
        ``params`` only.
    :param task_type: ``classification`` or ``regression``; inferred from the label when empty.
    :param exclude_columns: columns never used as features (entity ids, timestamps).
    :param options: extra keyword arguments for the training operator (``test_size``, ``cv_folds`` …).
    """

    section: ClassVar[str] = "training"

    model_name: str = ""
    experiment: str = ""
    estimator: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] | None = None
    task_type: str | None = None
    exclude_columns: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_text(self.model_name, "training.model_name")
        if not self.experiment:
            self.experiment = self.model_name
        if not isinstance(self.estimator, str) or "." not in self.estimator:
            raise ConfigError(
                f"training.estimator={self.estimator!r} must be an import path such as "
                "'sklearn.ensemble.RandomForestClassifier'."
            )
        if self.task_type is not None and self.task_type not in TASK_TYPES:
            raise ConfigError(f"training.task_type={self.task_type!r}; use one of {list(TASK_TYPES)}.")
        _require_mapping(self.params, "training.params")
        _require_mapping(self.options, "training.options")
        if self.search is not None:
            _require_mapping(self.search, "training.search")
            from airflow_mlpipe.config.training import SearchConfig

            SearchConfig.from_mapping(self.search, "training.search")  # the training stage's own rules
        if not isinstance(self.exclude_columns, list):
            raise ConfigError("training.exclude_columns must be a list of column names.")


@dataclass
class GateSection(_Config):
    """The evaluation gate between the trained challenger and the serving champion.

    :param criteria: gate criteria as the evaluation stage reads them
        (:class:`airflow_mlpipe.config.evaluation.GateConfig`): ``"roc_auc >= 0.7"`` or
        ``{kind: change, metric: roc_auc, max_regression: 0.01}`` …
    :param require_approval: pause for a human approval (Airflow HITL) after a pass.
    :param approval_timeout_hours: how long the approval waits.
    :param options: extra keyword arguments for the gate operator.
    """

    section: ClassVar[str] = "gate"

    criteria: list[Any] = field(default_factory=lambda: ["accuracy >= 0.5"])
    require_approval: bool = False
    approval_timeout_hours: float = 24.0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.criteria, list):
            raise ConfigError("gate.criteria must be a list, e.g. ['roc_auc >= 0.7'].")
        from airflow_mlpipe.config.evaluation import GateConfig

        GateConfig.from_mapping({"criteria": copy.deepcopy(self.criteria)})  # raises what to change
        if self.approval_timeout_hours <= 0:
            raise ConfigError("gate.approval_timeout_hours must be positive.")
        _require_mapping(self.options, "gate.options")


@dataclass
class DeploymentSection(_Config):
    """Serving the champion and scoring a batch with it.

    :param enabled: deploy after promotion (off = promote only).
    :param batch_score_input: URI of the table to score after deployment (empty = no batch scoring).
    :param target: where the model is served: ``{"kind": "local", <options>}`` or another target
        kind (:class:`~airflow_mlpipe.config.deploy.TargetSpec`); ``None`` (the default): the
        workers' own default, ``$MLPIPE_DEPLOYMENT_TARGET`` where it is set, else the local target.
    :param options: extra keyword arguments for the deployment operator.
    :param batch_options: extra keyword arguments for the batch-inference operator; its engine
        settings (``engine``, ``batch_size``, ``workers``, ``memory_map``, ``spark_conn_id``,
        ``spark_conf``) are checked here, as
        :class:`~airflow_mlpipe.config.deploy.BatchScoringConfig`.
    """

    section: ClassVar[str] = "deployment"

    enabled: bool = True
    batch_score_input: str = ""
    target: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    batch_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.target is not None:
            _require_mapping(self.target, "deployment.target")
            TargetSpec.from_mapping(self.target, "deployment.target")
        _require_mapping(self.options, "deployment.options")
        _require_mapping(self.batch_options, "deployment.batch_options")
        engine_keys = {f.name for f in dataclasses.fields(BatchScoringConfig)}
        BatchScoringConfig.from_mapping(
            {k: v for k, v in self.batch_options.items() if k in engine_keys}, "deployment.batch_options"
        )


#: the fields a ``streaming.stream`` mapping must have (the others have defaults)
_STREAM_REQUIRED = ("redis_url", "input_stream", "output_stream")


@dataclass
class StreamingSection(_Config):
    """Streaming inference: after each deployment, the new champion also scores the events of a
    Redis stream (see ``docs/stages/streaming.md``).

    :param enabled: hand the stream over to each newly deployed version (off: no stream task).
    :param stream: the stream, the fields of :class:`airflow_mlpipe.config.streaming.StreamConfig`
        (``redis_url``, ``input_stream``, ``output_stream``, ``batch_size`` …); strings may be
        templates, rendered when the task runs.
    :param canary: the hand-over's canary, the fields of
        :class:`airflow_mlpipe.config.deploy.CanaryConfig` on a share of the event keys; default
        ``{enabled: false}``: the stream is handed over at once (the deployment stage's HTTP canary
        has judged the version already). No event is lost or scored twice either way.
    :param state_dir: where the scorers' state and logs live (default
        ``<artifact root>/streams/<input_stream>``; templated).
    :param options: extra keyword arguments for the stream deployment operator (``online_spec`` …).
    """

    section: ClassVar[str] = "streaming"

    enabled: bool = False
    stream: dict[str, Any] = field(default_factory=dict)
    canary: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    state_dir: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"streaming.enabled must be true or false, got {self.enabled!r}.")
        _require_mapping(self.stream, "streaming.stream")
        _require_mapping(self.canary, "streaming.canary")
        _require_mapping(self.options, "streaming.options")
        from airflow_mlpipe.config.deploy import CanaryConfig
        from airflow_mlpipe.config.streaming import StreamConfig

        CanaryConfig.from_mapping(self.canary, "streaming.canary")
        if not self.enabled:
            return
        missing = [k for k in _STREAM_REQUIRED if not self.stream.get(k)]
        if missing:
            raise ConfigError(f"streaming.stream needs {missing} when streaming is enabled.")
        # A templated value is known only when the task runs: check the rest with a stand-in for it
        # (a templated number or flag falls back to its default here).
        allowed = {f.name for f in dataclasses.fields(StreamConfig)}
        unknown = sorted(set(self.stream) - allowed)
        if unknown:
            raise ConfigError(
                f"Invalid streaming.stream: unknown key(s) {unknown}; allowed keys are {sorted(allowed)}."
            )
        checked: dict[str, Any] = {}
        for key, value in self.stream.items():
            if not (isinstance(value, str) and "{{" in value):
                checked[key] = value
            elif key == "redis_url":
                checked[key] = "redis://templated"
            elif key.endswith("_stream") or key == "group_prefix":
                checked[key] = f"templated.{key}"
        StreamConfig.from_mapping(checked, "streaming.stream")


@dataclass
class MonitoringSection(_Config):
    """Watching new batches for quality and drift, and asking for retraining.

    :param watch_path: directory new batch files land in (templated).
    :param reference: URI of the reference table the batches are compared with (e.g. the data the
        champion was trained on).
    :param pattern: file name glob of a batch file.
    :param ledger: directory of claim markers, so every batch is processed exactly once
        (default: ``<watch_path>/.claims``).
    :param drift: the drift check, the fields of
        :class:`airflow_mlpipe.config.monitoring.DriftConfig` (``drift_share``, ``method``,
        ``exclude_columns`` …).
    :param retrain_on_drift: ask for retraining when drift is found (an asset event for the
        ``event`` pattern, a triggered training run otherwise).
    :param poll_interval_seconds: how often the watcher / sensor lists ``watch_path``.
    :param min_file_age_seconds: ``event`` pattern: a file younger than this may still be being
        written, and waits for a later listing; ``0`` for writers that rename complete files into
        place (a half-written file never shows under its final name).
    :param process_backlog: ``event`` pattern: on the watcher's very first start, announce the
        files already in ``watch_path`` (a backlog) instead of treating them as history.
    :param rebase_reference: once a model version serves, compare batches with the data it was
        trained on instead of ``reference`` (needs the ``training`` section).
    :param retrain_cooldown_batches: after a retraining request, hold further requests for this
        many batches while the same version still serves (0: every drifted batch asks).
    :param retrain_refresh_batches: after a retraining request, each of this many later batches
        asks once more (reason ``refresh``, the training window still starting at the drift) once
        the retrained version serves, so the model learns from the new regime as its batches
        arrive (0: no refresh; docs/concepts/quality-after-drift.md).
    :param prediction_log: judge the serving model's live quality from its logged predictions and
        the labels that arrived since (performance-triggered retraining), the fields of
        :class:`airflow_mlpipe.config.monitoring.PredictionLogConfig` (``uri``, ``labels_uri``,
        ``keys``, ``label_column``, ``label_timestamp_column``, ``label_delay_seconds`` …). Batch
        scoring writes to the log.
    :param quality: with ``prediction_log``: when live quality counts as degraded, the fields of
        :class:`airflow_mlpipe.config.monitoring.QualityConfig` without column names (``metrics``,
        ``max_degradation``, ``relative``, ``min_labelled_rows``). A degradation asks for retraining
        as drift does (same asset event, same cooldown) with the reason ``quality``.
    :param options: extra keyword arguments for the drift operator.
    """

    section: ClassVar[str] = "monitoring"

    watch_path: str = ""
    reference: str = ""
    pattern: str = "*.parquet"
    ledger: str = ""
    drift: dict[str, Any] = field(default_factory=dict)
    retrain_on_drift: bool = True
    poll_interval_seconds: float = 30.0
    min_file_age_seconds: float = 2.0
    process_backlog: bool = False
    rebase_reference: bool = True
    retrain_cooldown_batches: int = 3
    retrain_refresh_batches: int = 0
    prediction_log: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_text(self.watch_path, "monitoring.watch_path")
        for name in ("retrain_cooldown_batches", "retrain_refresh_batches"):
            count = getattr(self, name)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ConfigError(f"monitoring.{name}={count!r} must be an integer >= 0.")
        _require_text(self.reference, "monitoring.reference")
        _require_text(self.pattern, "monitoring.pattern")
        if not self.ledger:
            self.ledger = self.watch_path.rstrip("/") + "/.claims"
        _require_mapping(self.drift, "monitoring.drift")
        from airflow_mlpipe.config.monitoring import DriftConfig

        DriftConfig.from_mapping(self.drift, "monitoring.drift")  # the monitoring stage's own rules
        if self.prediction_log is not None:
            from airflow_mlpipe.config.monitoring import PredictionLogConfig, QualityConfig

            _require_mapping(self.prediction_log, "monitoring.prediction_log")
            PredictionLogConfig.from_mapping(self.prediction_log, "monitoring.prediction_log")
            QualityConfig.for_prediction_log(self.quality, "monitoring.quality")
        elif self.quality is not None:
            raise ConfigError(
                "monitoring.quality judges logged predictions: add monitoring.prediction_log "
                "(or pass a quality check of labelled batches through monitoring.options)."
            )
        if self.poll_interval_seconds <= 0:
            raise ConfigError("monitoring.poll_interval_seconds must be positive.")
        age = self.min_file_age_seconds
        if isinstance(age, bool) or not isinstance(age, (int, float)) or age < 0:
            raise ConfigError(f"monitoring.min_file_age_seconds={age!r} must be a number >= 0.")
        _require_mapping(self.options, "monitoring.options")


@dataclass
class PipelineConfig(_Config):
    """A whole use case: the training pipeline and (optionally) its monitoring pipeline.

    :param name: prefix of the DAG ids (``<name>_training``, ``<name>_monitoring``).
    :param pattern: ``linear`` (one candidate, sequential), ``dag`` (parallel candidates through
        dynamic task mapping) or ``event`` (asset-scheduled DAGs).
    :param schedule: cron/preset for ``linear``/``dag`` (ignored by ``event``, which is asset-driven).
    :param start_date: ISO date of the first interval.
    :param tags: extra DAG tags.
    :param retries: task retries (transient failures).
    """

    section: ClassVar[str] = "pipeline"

    name: str = ""
    pattern: str = "dag"
    schedule: str | None = None
    start_date: str = "2024-01-01"
    tags: list[str] = field(default_factory=list)
    retries: int = 1
    locations: Locations = field(default_factory=Locations)
    validation: ValidationSection | None = None
    features: FeaturesSection | None = None
    training: TrainingSection | None = None
    gate: GateSection = field(default_factory=GateSection)
    deployment: DeploymentSection = field(default_factory=DeploymentSection)
    streaming: StreamingSection = field(default_factory=StreamingSection)
    monitoring: MonitoringSection | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _IDENT.match(self.name or ""):
            raise ConfigError(f"pipeline name {self.name!r} must be an identifier usable in a DAG id.")
        if self.pattern not in PATTERNS:
            raise ConfigError(f"pattern={self.pattern!r}; use one of {list(PATTERNS)}.")
        try:
            dt.date.fromisoformat(str(self.start_date))
        except ValueError:
            raise ConfigError(f"start_date={self.start_date!r} is not a date; use YYYY-MM-DD.") from None
        self.start_date = str(self.start_date)
        if not isinstance(self.tags, list) or not all(isinstance(t, str) for t in self.tags):
            raise ConfigError("tags must be a list of strings.")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries={self.retries!r} must be a non-negative integer.")

    def require(self, *sections: str) -> None:
        """Raise a ConfigError naming the sections a factory needs but the config lacks."""
        missing = [s for s in sections if getattr(self, s) is None]
        if missing:
            raise ConfigError(
                f"pipeline {self.name!r} needs the section(s) {missing}; add them to the config."
            )

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> PipelineConfig:
        """Load from a YAML file (one small local file, read when the DAG file is parsed)."""
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                data = load_yaml(fh)
        except OSError as exc:
            raise ConfigError(f"Cannot read pipeline config {os.fspath(path)}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"Pipeline config {os.fspath(path)} is not valid YAML: {exc}") from exc
        return cls.from_mapping(data)

    def to_yaml(self) -> str:
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))
