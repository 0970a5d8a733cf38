"""Plain-Python descriptions of the pipelines: nodes and edges, testable without Airflow.

The builders here decide the *shape* of a pipeline from a :class:`PipelineConfig` — which stages,
in which task groups, in which order, what is mapped over candidates, which assets a stage reads
and writes, and how the DAG is scheduled. :mod:`airflow_mlpipe.factories.render` turns a
:class:`Graph` into Airflow tasks; nothing here imports Airflow or touches data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_mlpipe.config.pipeline import PipelineConfig
from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.exceptions import ConfigError

# Stage kinds: each maps to one operator in the render layer.
VALIDATE = "validate"
FEATURE_APPLY = "feature_apply"
MATERIALIZE = "materialize"
TRAINING_SET = "training_set"
HOLDOUT_SET = "holdout_set"
TRAIN = "train"
TRAIN_SEARCH = "train_search"
GATE = "gate"
APPROVAL = "approval"
PROMOTE = "promote"
DEPLOY = "deploy"
BATCH_SCORE = "batch_score"
STREAM_DEPLOY = "stream_deploy"
WAIT_FOR_BATCH = "wait_for_batch"
CLAIM_BATCH = "claim_batch"
QUALITY = "quality"
DRIFT = "drift"
RETRAIN = "retrain"

#: conventional assets (``mlpipe://<stage>/<name>``) that connect the pipelines
VALIDATED_DATA = ("validation", "{name}.validated")
TRAINING_SET_ASSET = ("features", "{name}.training_set")
REGISTERED_MODEL = ("training", "{name}.model")
CHAMPION = ("evaluation", "{name}.champion")
DEPLOYED = ("deployment", "{name}.deployment")
PREDICTIONS = ("deployment", "{name}.predictions")
STREAM = ("deployment", "{name}.stream")
NEW_BATCH = ("monitoring", "{name}.new_batch")
DRIFT_EVENT = ("monitoring", "{name}.drift")


@dataclass(frozen=True)
class Ref:
    """A parameter taken from an upstream task's XCom result when the task runs.

    :param task_id: the upstream node's task id.
    :param key: a key of its result dict (``None``: the whole result).
    :param template: pass it as a Jinja string (``{{ ti.xcom_pull(...) }}``) instead of an XCom
        reference, for operator arguments that must be strings when the DAG is built (a ``key``
        is always read with a template).
    """

    task_id: str
    key: str | None = None
    template: bool = False


@dataclass
class Node:
    """One task of the pipeline.

    :param group: task group (``validate``, ``features``, ``train``, ``evaluate``, ``deploy`` …).
    :param name: task name inside the group; the Airflow task id is ``<group>.<name>``.
    :param kind: stage kind (one of the module constants), decides the operator.
    :param params: stage parameters taken from the config (templated strings stay templates).
    :param outlets: asset keys ``(stage, name)``.
    """

    group: str
    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    outlets: list[tuple[str, str]] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return f"{self.group}.{self.name}"


@dataclass
class Graph:
    """A pipeline: DAG-level settings, nodes (in insertion order) and edges between task ids."""

    dag_id: str
    pattern: str
    schedule: Any  # cron/preset string, None, or ("assets", [asset keys]) / ("watch", {...})
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    description: str = ""
    tags: list[str] = field(default_factory=list)
    native_templates: bool = False  # render templates to Python objects (lists, dicts)

    def add(self, node: Node, *, after: Node | list[Node] | None = None) -> Node:
        if node.task_id in self.nodes:
            raise ConfigError(f"Duplicate task id {node.task_id!r} in {self.dag_id}.")
        self.nodes[node.task_id] = node
        for up in [after] if isinstance(after, Node) else after or []:
            self.edges.append((up.task_id, node.task_id))
        return node

    @property
    def task_ids(self) -> list[str]:
        return list(self.nodes)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(n.group for n in self.nodes.values()))

    def upstream(self, task_id: str) -> list[str]:
        return [a for a, b in self.edges if b == task_id]

    def downstream(self, task_id: str) -> list[str]:
        return [b for a, b in self.edges if a == task_id]


def asset_key(template: tuple[str, str], name: str) -> tuple[str, str]:
    return template[0], template[1].format(name=name)


def training_graph(config: PipelineConfig) -> Graph:
    """validate → features → train → gate → [approval] → promote (candidate) → deploy (champion once
    it serves) → batch score, and the stream handed over to the champion."""
    config.require("validation", "features", "training")
    assert config.validation and config.features and config.training  # for type checkers
    name, pattern = config.name, config.pattern
    schedule: Any = config.schedule
    if pattern == "event":
        # Retrain once a new batch passed validation AND monitoring found drift: both events are
        # needed, so a clean batch does not retrain and broken data never does.
        schedule = ("assets_all", [asset_key(VALIDATED_DATA, name), asset_key(DRIFT_EVENT, name)])
    g = Graph(
        dag_id=f"{name}_training",
        pattern=pattern,
        schedule=schedule,
        description=f"Training pipeline of {name!r} ({pattern} pattern): validate, features, train, gate, deploy.",
        tags=["mlpipe", "training", f"pattern:{pattern}", *config.tags],
    )
    conn = config.locations.mlflow_conn_id
    store = {
        "feast_conn_id": config.locations.feast_conn_id,
        "repo_path": config.locations.feature_repo or None,
    }
    v, f, t, gate_cfg, d = config.validation, config.features, config.training, config.gate, config.deployment

    validate = g.add(
        Node(
            "validate",
            "check_batch",
            VALIDATE,
            params={
                "dataset_uri": v.dataset,
                "suite": v.expectations,
                "suite_name": v.suite,
                "timestamp_column": v.timestamp_column or None,
                **v.options,
            },
            # the event-pattern training DAG is scheduled on this asset: emitting it would loop
            outlets=[] if pattern == "event" else [asset_key(VALIDATED_DATA, name)],
        )
    )
    apply = g.add(
        Node("features", "apply", FEATURE_APPLY, params={**store, "definitions": f.definitions or None}),
        after=validate,
    )
    last = apply
    if f.materialize:
        window = {
            "start": f.materialize_start or None,
            "end": f.materialize_end or None,
            "overlap": f.materialize_overlap_seconds,
        }
        last = g.add(Node("features", "materialize", MATERIALIZE, params={**store, **window}), after=apply)
    set_params = {
        **store,
        "feature_service": f.feature_service,
        "timestamp_column": f.timestamp_column,
        "label": f.label,
        **f.options,
    }
    # The gate never scores on rows a model was fitted on: a separate holdout source is removed
    # from the training rows, otherwise the training-set stage cuts the holdout out itself.
    held_out = {"exclude_source": f.holdout_source} if f.holdout_source else {"holdout": f.holdout}
    training_set = g.add(
        Node(
            "features",
            "training_set",
            TRAINING_SET,
            params={
                **set_params,
                "entity_source": f.entity_source,
                "training_window": f.training_window,
                **held_out,
            },
            outlets=[asset_key(TRAINING_SET_ASSET, name)],
        ),
        after=last,
    )
    holdout: Node | None = None
    if f.holdout_source:
        holdout = g.add(
            Node(
                "features",
                "holdout_set",
                HOLDOUT_SET,
                params={
                    **set_params,
                    "entity_source": f.holdout_source,
                    "output_name": "holdout_set.parquet",
                },
            ),
            after=last,
        )
    train_params = {
        "training_set": Ref(training_set.task_id),
        "model_name": t.model_name,
        "experiment_name": t.experiment,
        "estimator": t.estimator,
        "estimator_params": t.params,
        "model_task_type": t.task_type,
        "exclude_columns": t.exclude_columns,
        "mlflow_conn_id": conn,
        **t.options,
    }
    if pattern == "dag" and t.search is None:
        raise ConfigError(
            "The dag pattern trains candidates in parallel: add training.search "
            "(param_grid or param_distributions), or use pattern: linear."
        )
    if t.search is not None and pattern != "linear":
        train = g.add(
            Node(
                "train",
                "search",
                TRAIN_SEARCH,
                params={**train_params, "search": t.search},
                outlets=[asset_key(REGISTERED_MODEL, name)],
            ),
            after=training_set,
        )
    else:
        train = g.add(
            Node("train", "fit", TRAIN, params=train_params, outlets=[asset_key(REGISTERED_MODEL, name)]),
            after=training_set,
        )
    if holdout is not None:
        g.edges.append((holdout.task_id, train.task_id))
    holdout_uri = (
        Ref(holdout.task_id, "training_set_uri")
        if holdout is not None
        else Ref(training_set.task_id, "holdout_set_uri")
    )
    gate = g.add(
        Node(
            "evaluate",
            "gate",
            GATE,
            params={
                "model_name": t.model_name,
                "holdout_uri": holdout_uri,
                "config": {"criteria": gate_cfg.criteria, "label": f.label},
                "mlflow_conn_id": conn,
                **gate_cfg.options,
            },
        ),
        after=train,
    )
    before_promote = gate
    if gate_cfg.require_approval:
        before_promote = g.add(
            Node(
                "evaluate",
                "approval",
                APPROVAL,
                params={"gate_task_id": gate.task_id, "timeout_hours": gate_cfg.approval_timeout_hours},
            ),
            after=gate,
        )
    # With deployment, promotion only nominates the candidate: champion moves in deploy.serve once
    # the version passed smoke test, canary and watch window (the registry never names a version
    # that does not serve). Without deployment, promotion moves champion at once.
    promote = g.add(
        Node(
            "evaluate",
            "promote",
            PROMOTE,
            params={
                "model_name": t.model_name,
                "gate_task_id": gate.task_id,
                "as_candidate": d.enabled,
                "mlflow_conn_id": conn,
            },
            outlets=[] if d.enabled else [asset_key(CHAMPION, name)],
        ),
        after=before_promote,
    )
    champion = promote  # the task after which the champion serves
    if d.enabled:
        deploy = champion = g.add(
            Node(
                "deploy",
                "serve",
                DEPLOY,
                params={
                    "model_name": t.model_name,
                    "alias": cv.ALIAS_CANDIDATE,
                    "promote": True,
                    "holdout_uri": holdout_uri,
                    "mlflow_conn_id": conn,
                    "target": d.target,
                    # The HTTP service logs its predictions too, unless the options say otherwise.
                    **_prediction_log_writer(config),
                    **d.options,
                },
                outlets=[asset_key(DEPLOYED, name), asset_key(CHAMPION, name)],
            ),
            after=promote,
        )
        if d.batch_score_input:
            g.add(
                Node(
                    "deploy",
                    "batch_score",
                    BATCH_SCORE,
                    params={
                        "model_name": t.model_name,
                        "input_uri": d.batch_score_input,
                        "mlflow_conn_id": conn,
                        **_prediction_log_writer(config),
                        **d.batch_options,
                    },
                    outlets=[asset_key(PREDICTIONS, name)],
                ),
                after=deploy,
            )
    s = config.streaming
    if s.enabled:
        # The version the deployment just made champion (its own result, not the alias, which a
        # later run may move meanwhile); without deployment, the champion promotion named.
        version: dict[str, Any] = {"version": Ref(champion.task_id, "version")} if d.enabled else {}
        g.add(
            Node(
                "deploy",
                "stream",
                STREAM_DEPLOY,
                params={
                    "model_name": t.model_name,
                    **version,
                    # The scorer logs its predictions too, unless the stream says otherwise.
                    "stream": {**_prediction_log_writer(config), **s.stream},
                    "canary": s.canary,
                    "state_dir": s.state_dir or None,
                    "mlflow_conn_id": conn,
                    **s.options,
                },
                outlets=[asset_key(STREAM, name)],
            ),
            after=champion,
        )
    return g


def monitoring_graph(config: PipelineConfig) -> Graph:
    """new batch → claim → quality → drift → retraining event.

    ``event``: an ``AssetWatcher`` on ``watch_path`` starts the DAG; drift emits the asset event the
    training DAG is scheduled on. ``linear``/``dag``: on a schedule, a deferrable sensor waits for the
    batch and drift triggers a training run.
    """
    config.require("monitoring")
    assert config.monitoring
    m = config.monitoring
    name, pattern = config.name, config.pattern
    schedule: Any = config.schedule
    if pattern == "event":
        schedule = (
            "watch",
            {
                "asset": asset_key(NEW_BATCH, name),
                "path": m.watch_path,
                "pattern": m.pattern,
                "poll_interval": m.poll_interval_seconds,
                "min_age": m.min_file_age_seconds,
                "include_existing": m.process_backlog,
            },
        )
    g = Graph(
        dag_id=f"{name}_monitoring",
        pattern=pattern,
        schedule=schedule,
        description=f"Monitoring pipeline of {name!r} ({pattern} pattern): new data, quality, drift, retraining.",
        tags=["mlpipe", "monitoring", f"pattern:{pattern}", *config.tags],
    )
    wait: Node | None = None
    if pattern != "event":
        g.native_templates = True  # the claim reads the sensor's list of files
        wait = g.add(
            Node(
                "detect",
                "wait_for_batch",
                WAIT_FOR_BATCH,
                params={"uri": m.watch_path, "pattern": m.pattern, "poke_interval": m.poll_interval_seconds},
            )
        )
    claim = g.add(
        Node(
            "detect",
            "claim_batch",
            CLAIM_BATCH,
            params={"ledger_uri": m.ledger, "files": Ref(wait.task_id, "files") if wait else None},
            outlets=[asset_key(NEW_BATCH, name)] if wait else [],
        ),
        after=wait,
    )
    current = Ref(claim.task_id, "current_uri")
    previous = claim
    if config.validation is not None:
        v = config.validation
        previous = g.add(
            Node(
                "monitor",
                "quality",
                QUALITY,
                params={
                    "dataset_uri": Ref(claim.task_id, "current_uri", template=True),
                    "suite": v.expectations,
                    "suite_name": v.suite,
                    "timestamp_column": v.timestamp_column or None,
                    **v.options,
                },
                outlets=[asset_key(VALIDATED_DATA, name)] if pattern == "event" else [],
            ),
            after=claim,
        )
    drift = g.add(
        Node(
            "monitor",
            "drift",
            DRIFT,
            params={
                "reference_uri": m.reference,
                "current_uri": current,
                "drift": m.drift,
                "drift_asset": asset_key(DRIFT_EVENT, name) if m.retrain_on_drift else None,
                "mlflow_conn_id": config.locations.mlflow_conn_id,
                **_serving_aware(config),
                **m.options,
            },
        ),
        after=previous,
    )
    if m.retrain_on_drift and pattern != "event":
        g.add(
            Node(
                "retrain",
                "trigger_training",
                RETRAIN,
                params={"training_dag_id": f"{name}_training", "drift_task_id": drift.task_id},
            ),
            after=drift,
        )
    return g


def _prediction_log_writer(config: PipelineConfig) -> dict[str, Any]:
    """The HTTP service, batch scoring and the stream scorer write the prediction log that
    monitoring judges (when one is configured)."""
    log = config.monitoring.prediction_log if config.monitoring else None
    if not log:
        return {}
    keep = ("uri", "keys", "timestamp_column")
    return {"prediction_log": {k: log[k] for k in keep if k in log}}


def _serving_aware(config: PipelineConfig) -> dict[str, Any]:
    """Drift-check parameters that need the model: the serving version's data as reference,
    the retraining cooldown, and the batch start a retraining window begins at."""
    m = config.monitoring
    assert m is not None
    retrains = m.retrain_on_drift
    params: dict[str, Any] = {
        "cooldown_batches": m.retrain_cooldown_batches if retrains else 0,
        "refresh_batches": m.retrain_refresh_batches if retrains else 0,
    }
    # The drift start is read from the monitored batch: its event time is the validation's batch
    # column. The features section's column belongs to the entity/label table, which a batch of
    # features need not carry (then the request had no start and the window fell back to all rows).
    batch_time = (config.validation.timestamp_column if config.validation else "") or (
        config.features.timestamp_column if config.features else ""
    )
    if batch_time:
        params["timestamp_column"] = batch_time
    if config.training is not None:
        params.update(model_name=config.training.model_name, rebase_reference=m.rebase_reference)
    if m.prediction_log is not None:
        from airflow_mlpipe.config.monitoring import QualityConfig

        quality = QualityConfig.for_prediction_log(m.quality, "monitoring.quality")
        params.update(prediction_log=dict(m.prediction_log), quality=asdict(quality))
    return params
