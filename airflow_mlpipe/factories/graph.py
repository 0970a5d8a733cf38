"""Plain-Python descriptions of the pipelines: nodes and edges, testable without Airflow.

The builders here decide the *shape* of a pipeline from a :class:`PipelineConfig` — which stages,
in which task groups, in which order, what is mapped over candidates, which assets a stage reads
and writes, and how the DAG is scheduled. :mod:`airflow_mlpipe.factories.render` turns a
:class:`Graph` into Airflow tasks; nothing here imports Airflow or touches data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_mlpipe.config.pipeline import PipelineConfig
from airflow_mlpipe.exceptions import ConfigError

# Stage kinds: each maps to one operator in the render layer.
VALIDATE = "validate"
FEATURE_APPLY = "feature_apply"
MATERIALIZE = "materialize"
TRAINING_SET = "training_set"
TRAIN = "train"
SELECT = "select"
GATE = "gate"
APPROVAL = "approval"
PROMOTE = "promote"
DEPLOY = "deploy"
BATCH_SCORE = "batch_score"
WAIT_FOR_BATCH = "wait_for_batch"
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
NEW_BATCH = ("monitoring", "{name}.new_batch")
DRIFT_EVENT = ("monitoring", "{name}.drift")


@dataclass
class Node:
    """One task of the pipeline.

    :param group: task group (``validate``, ``features``, ``train``, ``evaluate``, ``deploy`` …).
    :param name: task name inside the group; the Airflow task id is ``<group>.<name>``.
    :param kind: stage kind (one of the module constants), decides the operator.
    :param params: stage parameters taken from the config (templated strings stay templates).
    :param expand: per-map-index parameters when the task is mapped over candidates.
    :param inlets/outlets: asset keys ``(stage, name)``.
    :param trigger_rule: Airflow trigger rule name, when not ``all_success``.
    """

    group: str
    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    expand: list[dict[str, Any]] | None = None
    inlets: list[tuple[str, str]] = field(default_factory=list)
    outlets: list[tuple[str, str]] = field(default_factory=list)
    trigger_rule: str | None = None

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

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == kind]


def asset_key(template: tuple[str, str], name: str) -> tuple[str, str]:
    return template[0], template[1].format(name=name)


def training_graph(config: PipelineConfig) -> Graph:
    """validate → features → candidates → select → gate → [approval] → promote → deploy → batch score."""
    config.require("validation", "features", "training")
    assert config.validation and config.features and config.training  # for type checkers
    name = config.name
    pattern = config.pattern
    schedule: Any = config.schedule
    if pattern == "event":
        # Retrain once a new batch passed validation AND monitoring found drift in it: both events
        # are needed, so a clean batch does not retrain and broken data never does.
        schedule = ("assets_all", [asset_key(VALIDATED_DATA, name), asset_key(DRIFT_EVENT, name)])
    g = Graph(
        dag_id=f"{name}_training",
        pattern=pattern,
        schedule=schedule,
        description=f"Training pipeline of {name!r} ({pattern} pattern): validate, features, train, gate, deploy.",
        tags=["mlpipe", "training", f"pattern:{pattern}", *config.tags],
    )
    v = config.validation
    validate = g.add(
        Node(
            "validate",
            "check_batch",
            VALIDATE,
            params={"dataset": v.dataset, "suite": v.suite, "expectations": v.expectations, **v.options},
            outlets=[] if pattern == "event" else [asset_key(VALIDATED_DATA, name)],
        )
    )
    f = config.features
    apply = g.add(
        Node("features", "apply", FEATURE_APPLY, params={"repo_path": config.locations.feature_repo}),
        after=validate,
    )
    last_feature = apply
    if f.materialize:
        last_feature = g.add(
            Node("features", "materialize", MATERIALIZE, params={"repo_path": config.locations.feature_repo}),
            after=apply,
        )
    training_set = g.add(
        Node(
            "features",
            "training_set",
            TRAINING_SET,
            params={
                "repo_path": config.locations.feature_repo,
                "feature_service": f.feature_service,
                "entity_source": f.entity_source,
                "timestamp_column": f.timestamp_column,
                "label": f.label,
                **f.options,
            },
            outlets=[asset_key(TRAINING_SET_ASSET, name)],
        ),
        after=last_feature,
    )
    t = config.training
    candidates = t.candidates[:1] if pattern == "linear" else t.candidates
    common = {
        "model_name": t.model_name,
        "experiment": t.experiment,
        "task_type": t.task_type,
        "label": f.label,
        "mlflow_conn_id": config.locations.mlflow_conn_id,
        **t.options,
    }
    per_candidate = [{"candidate": c.name, "estimator": c.estimator, "params": c.params} for c in candidates]
    if pattern == "linear":
        train = g.add(
            Node("train", "fit", TRAIN, params={**common, **per_candidate[0]}),
            after=training_set,
        )
    else:
        train = g.add(
            Node("train", "candidates", TRAIN, params=common, expand=per_candidate), after=training_set
        )
    select = g.add(
        Node(
            "train",
            "register_best",
            SELECT,
            params={
                "model_name": t.model_name,
                "metric": t.selection_metric,
                "lower_is_better": t.lower_is_better,
                "mlflow_conn_id": config.locations.mlflow_conn_id,
            },
            outlets=[asset_key(REGISTERED_MODEL, name)],
        ),
        after=train,
    )
    gate_cfg = config.gate
    gate = g.add(
        Node(
            "evaluate",
            "gate",
            GATE,
            params={
                "model_name": t.model_name,
                "criteria": gate_cfg.criteria,
                "mlflow_conn_id": config.locations.mlflow_conn_id,
                **gate_cfg.options,
            },
        ),
        after=select,
    )
    before_promote = gate
    if gate_cfg.require_approval:
        before_promote = g.add(
            Node(
                "evaluate",
                "approval",
                APPROVAL,
                params={"model_name": t.model_name, "timeout_hours": gate_cfg.approval_timeout_hours},
            ),
            after=gate,
        )
    promote = g.add(
        Node(
            "evaluate",
            "promote",
            PROMOTE,
            params={"model_name": t.model_name, "mlflow_conn_id": config.locations.mlflow_conn_id},
            outlets=[asset_key(CHAMPION, name)],
        ),
        after=before_promote,
    )
    d = config.deployment
    if d.enabled:
        deploy = g.add(
            Node(
                "deploy",
                "serve",
                DEPLOY,
                params={
                    "model_name": t.model_name,
                    "mlflow_conn_id": config.locations.mlflow_conn_id,
                    **d.options,
                },
                outlets=[asset_key(DEPLOYED, name)],
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
                        "mlflow_conn_id": config.locations.mlflow_conn_id,
                        **d.batch_options,
                    },
                    outlets=[asset_key(PREDICTIONS, name)],
                ),
                after=deploy,
            )
    return g


def monitoring_graph(config: PipelineConfig) -> Graph:
    """[wait for batch] → validate → drift → retraining event.

    ``linear``/``dag``: scheduled, a sensor waits for the batch; the retraining event triggers the
    training DAG. ``event``: an AssetWatcher on new batch files starts the DAG; the retraining
    event is an asset event the training DAG is scheduled on.
    """
    config.require("monitoring")
    assert config.monitoring
    m = config.monitoring
    name = config.name
    pattern = config.pattern
    if pattern == "event":
        if not m.watch_path:
            raise ConfigError(
                "monitoring.watch_path is empty: the event pattern watches that directory for new batches."
            )
        schedule: Any = (
            "watch",
            {
                "asset": asset_key(NEW_BATCH, name),
                "path": m.watch_path,
                "poll_interval": m.poll_interval_seconds,
            },
        )
    else:
        schedule = config.schedule
    g = Graph(
        dag_id=f"{name}_monitoring",
        pattern=pattern,
        schedule=schedule,
        description=f"Monitoring pipeline of {name!r} ({pattern} pattern): new data, quality, drift, retraining.",
        tags=["mlpipe", "monitoring", f"pattern:{pattern}", *config.tags],
    )
    first: Node | None = None
    if pattern != "event":
        first = g.add(
            Node(
                "detect",
                "wait_for_batch",
                WAIT_FOR_BATCH,
                params={"path": m.current, "poll_interval": m.poll_interval_seconds},
            )
        )
    quality = None
    if config.validation is not None:
        v = config.validation
        quality = g.add(
            Node(
                "monitor",
                "quality",
                QUALITY,
                params={"dataset": m.current, "suite": v.suite, "expectations": v.expectations, **v.options},
                outlets=[asset_key(VALIDATED_DATA, name)] if pattern == "event" else [],
            ),
            after=first,
        )
    drift = g.add(
        Node(
            "monitor",
            "drift",
            DRIFT,
            params={
                "reference": m.reference,
                "current": m.current,
                "drift_share_threshold": m.drift_share_threshold,
                **m.options,
            },
        ),
        after=quality or first,
    )
    if m.retrain_on_drift:
        g.add(
            Node(
                "retrain",
                "request" if pattern == "event" else "trigger_training",
                RETRAIN,
                params={"training_dag_id": f"{name}_training"},
                outlets=[asset_key(DRIFT_EVENT, name)],
            ),
            after=drift,
        )
    return g
