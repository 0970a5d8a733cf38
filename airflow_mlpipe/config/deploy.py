"""Typed configuration of a deployment: where it runs (target), how the service batches requests,
smoke test, canary analysis, post-switch watch window, and the engine batch scoring runs on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_mlpipe.config.base import MappingConfig, from_mapping
from airflow_mlpipe.exceptions import ConfigError

#: the SQL state store's table unless a target spec names another (``state_table``)
DEFAULT_STATE_TABLE = "mlpipe_deployment_state"
#: environment variable of a worker's default target spec (JSON), for configs that name none
TARGET_ENV = "MLPIPE_DEPLOYMENT_TARGET"


@dataclass
class SmokeTestConfig:
    """Query a new version with holdout rows before it gets traffic.

    :param holdout_uri: parquet/CSV dataset with the model's feature columns (others are ignored).
    :param rows: how many rows (from the top) to send.
    :param rtol: relative tolerance for regression outputs (classifier labels must match exactly).
    :param atol: absolute tolerance for regression outputs.
    """

    holdout_uri: str
    rows: int = 50
    rtol: float = 1e-6
    atol: float = 1e-9

    def __post_init__(self) -> None:
        if not self.holdout_uri:
            raise ConfigError("SmokeTestConfig.holdout_uri is required: a dataset with the model's features.")
        if not 1 <= self.rows <= 10_000:
            raise ConfigError(f"SmokeTestConfig.rows must be in 1..10000, got {self.rows}.")
        if self.rtol < 0 or self.atol < 0:
            raise ConfigError("SmokeTestConfig tolerances must be >= 0.")


@dataclass
class CanaryConfig(MappingConfig):
    """Give a new version a share of live traffic for a window, then promote or roll back.

    :param share: fraction of requests the canary receives (0 < share < 1).
    :param window_seconds: how long the canary serves before the decision.
    :param min_requests: canary requests needed for a decision; fewer means roll back (no evidence).
    :param max_error_rate: highest acceptable canary error rate (5xx, connection/response errors).
    :param max_error_rate_increase: canary error rate may exceed stable's by at most this much.
    :param max_p95_ratio: canary p95 latency may be at most this multiple of stable's p95 …
    :param p95_slack_ms: … plus this many milliseconds (latency histograms have coarse buckets).
    :param warmup_requests: one-row requests sent straight to the new version (from the smoke test's
        holdout rows) before its window starts, so that its first, cold requests (lazy imports, new
        connections, the batcher learning its latency) are not judged against a warm stable; they
        fall before the window's first latency snapshot. ``0`` sends none. The warm-up stops after
        ``window_seconds`` (at least 10 s) whatever it has sent: a slow version is the window's to judge.
    :param enabled: ``False`` switches straight to the new version after the smoke test.
    :param no_traffic: what a window with fewer than ``min_requests`` canary requests means: ``"rollback"``
        (no evidence, the default) or ``"promote"`` — for an endpoint nobody uses yet, the smoke test
        is the evidence; a canary that went down or answered with errors is still rolled back.
    """

    share: float = 0.1
    window_seconds: float = 60.0
    min_requests: int = 20
    max_error_rate: float = 0.01
    max_error_rate_increase: float = 0.01
    max_p95_ratio: float = 1.5
    p95_slack_ms: float = 25.0
    warmup_requests: int = 50
    enabled: bool = True
    no_traffic: str = "rollback"

    def __post_init__(self) -> None:
        if self.no_traffic not in ("rollback", "promote"):
            raise ConfigError(
                f"CanaryConfig.no_traffic must be 'rollback' or 'promote', got {self.no_traffic!r}."
            )
        if not 0 < self.share < 1:
            raise ConfigError(f"CanaryConfig.share must be strictly between 0 and 1, got {self.share}.")
        if self.window_seconds <= 0:
            raise ConfigError(f"CanaryConfig.window_seconds must be > 0, got {self.window_seconds}.")
        if self.min_requests < 1:
            raise ConfigError("CanaryConfig.min_requests must be >= 1.")
        if not (0 <= self.max_error_rate <= 1 and 0 <= self.max_error_rate_increase <= 1):
            raise ConfigError("CanaryConfig error-rate thresholds must be within [0, 1].")
        if self.max_p95_ratio < 1 or self.p95_slack_ms < 0:
            raise ConfigError("CanaryConfig.max_p95_ratio must be >= 1 and p95_slack_ms >= 0.")
        if not 0 <= self.warmup_requests <= 10_000:
            raise ConfigError(
                f"CanaryConfig.warmup_requests must be in 0..10000, got {self.warmup_requests}."
            )

    @classmethod
    def from_mapping(
        cls, value: CanaryConfig | Mapping[str, Any] | None, where: str | None = None
    ) -> CanaryConfig:
        """Like every config's ``from_mapping``, except that ``None`` turns the canary off."""
        return cls(enabled=False) if value is None else from_mapping(cls, value, where or "canary")


@dataclass
class WatchConfig(MappingConfig):
    """Guard a new version for a window after it took all traffic; failing rolls it back.

    The version that served before keeps running (without traffic) until the window passed, so a
    rollback is one proxy switch.

    :param window_seconds: how long the new version is watched after the full switch.
    :param max_error_rate: highest acceptable error rate (5xx, connection/response errors).
    :param max_p95_ms: highest acceptable p95 latency of successful requests; ``None``: not checked.
    :param min_requests: requests needed for the error-rate and latency checks to apply (health is
        always checked).
    :param enabled: ``False`` commits right after the canary (the former version stops at once).
    """

    window_seconds: float = 30.0
    max_error_rate: float = 0.01
    max_p95_ms: float | None = None
    min_requests: int = 1
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ConfigError(f"WatchConfig.window_seconds must be > 0, got {self.window_seconds}.")
        if not 0 <= self.max_error_rate <= 1:
            raise ConfigError(f"WatchConfig.max_error_rate must be within [0, 1], got {self.max_error_rate}.")
        if self.max_p95_ms is not None and self.max_p95_ms <= 0:
            raise ConfigError(f"WatchConfig.max_p95_ms must be > 0 or None, got {self.max_p95_ms}.")
        if self.min_requests < 1:
            raise ConfigError("WatchConfig.min_requests must be >= 1.")

    @classmethod
    def from_mapping(
        cls, value: WatchConfig | Mapping[str, Any] | None, where: str | None = None
    ) -> WatchConfig:
        """Like every config's ``from_mapping``, except that ``None`` turns the watch window off."""
        return cls(enabled=False) if value is None else from_mapping(cls, value, where or "watch")


@dataclass
class BatchingConfig(MappingConfig):
    """Adaptive batching of the served model: concurrent requests are scored in one model call.

    The service validates each request on its own (a bad request gets its 4xx alone, before any
    batch), then hands the rows to one model process whose BentoML dispatcher groups the rows of
    concurrent requests; the batch window adapts to the traffic (a lone request is not held back).

    :param enabled: ``False`` scores each request in the process that received it, with no batching.
    :param max_batch_size: most rows in one model call; a request with more rows is split.
    :param max_latency_ms: longest a request may wait in the batch queue plus the estimated model
        time; past it BentoML answers 503 rather than queueing more (load shedding), so keep it
        well above the model's time for ``max_batch_size`` rows.
    """

    enabled: bool = True
    max_batch_size: int = 64
    max_latency_ms: int = 10_000

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"BatchingConfig.enabled must be true or false, got {self.enabled!r}.")
        for name, low, high in (("max_batch_size", 1, 10_000), ("max_latency_ms", 10, 600_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"BatchingConfig.{name} must be an integer, got {value!r}.")
            if not low <= value <= high:
                raise ConfigError(f"BatchingConfig.{name} must be in {low}..{high}, got {value}.")


@dataclass
class TargetSpec(MappingConfig):
    """Where a deployment runs: a target kind and that target's own options.

    :param kind: a registered kind (``local``: ``bentoml serve`` processes behind HAProxy on this
        machine) or the import path ``package.module:factory`` of your own target factory.
    :param options: keyword arguments of the target's factory (``local``: ``state_dir``, ``port``,
        ``bentoml_home``, ``ready_timeout``).
    :param state_conn_id: Airflow connection (postgres) of the SQL state store: the deployment's
        state and lock live in a table every worker reaches, for any kind. ``None``: the target's
        own default (``local``: ``state.json`` in its state directory, one machine only).
    :param state_table: the SQL state store's table (created on first use).
    """

    kind: str = "local"
    options: dict[str, Any] = field(default_factory=dict)
    state_conn_id: str | None = None
    state_table: str = DEFAULT_STATE_TABLE

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind.strip():
            raise ConfigError("target.kind must name a deployment target, e.g. 'local'.")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"target options must be a mapping, got {type(self.options).__name__}.")
        self.options = dict(self.options)
        if self.state_conn_id is not None and (
            not isinstance(self.state_conn_id, str) or not self.state_conn_id.strip()
        ):
            raise ConfigError("target.state_conn_id must name an Airflow connection (postgres).")
        if not isinstance(self.state_table, str) or not self.state_table.strip():
            raise ConfigError("target.state_table must name a table.")

    @classmethod
    def from_mapping(
        cls, value: TargetSpec | Mapping[str, Any] | str | None, where: str | None = None
    ) -> TargetSpec:
        """From a spec, ``None`` (the local target), a kind name, or ``{"kind": ..., <options>}``
        (every key but ``kind``, ``state_conn_id`` and ``state_table`` is an option of that target)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return cls(value.kind, dict(value.options), value.state_conn_id, value.state_table)
        if isinstance(value, str):
            return cls(kind=value)
        if isinstance(value, Mapping):
            options = {k: v for k, v in value.items() if k not in _SPEC_KEYS}
            return cls(
                kind=value.get("kind", "local"),
                options=options,
                state_conn_id=value.get("state_conn_id"),
                state_table=value.get("state_table", DEFAULT_STATE_TABLE),
            )
        raise ConfigError(f"{where or 'target'} must be a mapping with a 'kind', got {type(value).__name__}.")


#: keys of a target mapping that belong to the spec itself, not to the target's factory
_SPEC_KEYS = ("kind", "state_conn_id", "state_table")


#: how batch scoring runs: in the task's own process, or as a Spark job
BATCH_ENGINES = ("in_process", "spark")


@dataclass
class BatchScoringConfig(MappingConfig):
    """How a dataset is batch-scored (``BatchInferenceOperator``): the same checks, model and output
    in either engine.

    :param engine: ``"in_process"`` (the default): chunks of the dataset scored by threads of the
        task's process; ``"spark"``: the dataset read by Spark and scored by a pandas UDF on its
        executors (``pip install 'airflow-mlpipe[spark]'`` and a Java runtime).
    :param batch_size: rows per chunk the model scores at once (``spark``: Arrow batches of the UDF).
    :param workers: ``in_process`` only: chunks scored at once by threads of the task's process,
        while the next two are read and the scored ones written (memory: about ``workers + 4``
        chunks). ``None`` (the default): one per core the process may run on; ``1``: one chunk after
        another in the task's thread (for a model whose ``predict`` is not safe to call from two
        threads at once).
    :param memory_map: ``in_process`` only: read a local parquet file through a memory map (the
        default; its pages are decoded where they lie in the page cache, no copy). A file *changed in
        place* while it is read is a ``DataError``, checked before every chunk; changed while a chunk
        is decoded, it stops the task's process (``SIGBUS``). ``False``: read by plain reads, for
        inputs that may be overwritten in place while they are scored.
    :param spark_conn_id: Airflow connection naming the cluster's master (conn type ``spark``, host
        ``spark://h``, port ``7077``; or a host such as ``yarn`` or ``k8s://https://h``). ``None``:
        Spark's local mode on the worker (``local[*]``).
    :param spark_conf: Spark properties (``spark.*``) over the provider's defaults, e.g.
        ``{"spark.driver.memory": "2g", "spark.executor.memory": "4g"}``.
    """

    engine: str = "in_process"
    batch_size: int = 100_000
    workers: int | None = None
    memory_map: bool = True
    spark_conn_id: str | None = None
    spark_conf: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.engine not in BATCH_ENGINES:
            raise ConfigError(
                f"Batch scoring engine must be one of {list(BATCH_ENGINES)}, got {self.engine!r}."
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {self.batch_size!r}.")
        if self.workers is not None:
            if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
                raise ConfigError(f"workers must be an integer >= 1 or None, got {self.workers!r}.")
            if self.engine == "spark":
                raise ConfigError(
                    "workers applies to engine 'in_process' only; Spark runs as many tasks as its "
                    "executors have cores (spark_conf)."
                )
        if not isinstance(self.memory_map, bool):
            raise ConfigError(f"memory_map must be true or false, got {self.memory_map!r}.")
        if self.engine == "spark" and not self.memory_map:
            raise ConfigError("memory_map applies to engine 'in_process' only; Spark reads the files itself.")
        if self.spark_conf is None:
            self.spark_conf = {}
        if not isinstance(self.spark_conf, Mapping):
            raise ConfigError(
                f"spark_conf must be a mapping of Spark properties, got {type(self.spark_conf).__name__}."
            )
        self.spark_conf = dict(self.spark_conf)
        if self.spark_conn_id is not None and (
            not isinstance(self.spark_conn_id, str) or not self.spark_conn_id.strip()
        ):
            raise ConfigError("spark_conn_id must name an Airflow connection (a Spark master), or be None.")
        if self.engine != "spark" and (self.spark_conn_id is not None or self.spark_conf):
            raise ConfigError(
                "spark_conn_id and spark_conf apply to engine 'spark' only; set engine='spark' or remove them."
            )
        for key, value in self.spark_conf.items():
            if not isinstance(key, str) or not key.startswith("spark."):
                raise ConfigError(f"spark_conf keys are Spark properties (spark.*), got {key!r}.")
            if key == "spark.master":
                raise ConfigError("spark_conf cannot set spark.master: name the master with spark_conn_id.")
            if isinstance(value, (dict, list, tuple, set)) or value is None:
                raise ConfigError(
                    f"spark_conf[{key!r}] must be a string, number or boolean, got {type(value).__name__}."
                )
