"""What the Models page shows, read from the two places the stages record into.

* the MLflow registry (through :class:`~airflow_mlpipe.hooks.mlflow.MlflowHook`): versions, aliases,
  gate verdicts and criteria (``mlpipe.gate.*`` tags), provenance (:mod:`airflow_mlpipe.provenance`);
* the Airflow metadata DB: the JSON results (XCom ``return_value``) of the stage tasks — deployments
  with their smoke/canary results, drift and quality per monitored batch, training runs — and the
  human-in-the-loop requests of those runs (pending approvals, who approved).

Results are recognised by their documented keys (docs/contract.md), so any DAG built from the
stage operators shows up, not only factory-made ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from airflow_mlpipe.core import conventions as c
from airflow_mlpipe.core.links import report_url
from airflow_mlpipe.ui.lineage import LineageNode, lineage_nodes

#: How many recent stage results the page reads (newest first).
RESULT_LIMIT = 2000


@dataclass
class Version:
    """One registered model version as the page shows it."""

    version: str
    aliases: list[str]
    created_at: str | None
    blessed: bool | None
    criteria: list[dict[str, Any]]
    run_id: str | None
    run_url: str | None
    report_url: str | None
    training_run: dict[str, str] = field(default_factory=dict)
    deployed_at: str | None = None
    rolled_back_at: str | None = None


@dataclass
class Rollout:
    """One deployment task's result: the rollout of a version (or its rollback)."""

    dag_id: str
    run_id: str
    task_id: str
    version: str
    status: str
    deployed_at: str | None
    previous_version: str | None
    smoke_test: dict[str, Any] | None
    canary: dict[str, Any] | None
    watch: dict[str, Any] | None
    rolled_back_from: str | None
    reason: str | None
    approver: str | None = None


@dataclass
class Batch:
    """One monitored batch: drift share, live quality and its Evidently report."""

    dag_id: str
    run_id: str
    at: str
    drift_share: float
    threshold: float | None
    drift_detected: bool
    quality: float | None
    quality_metric: str | None
    report_url: str | None
    retrain_reasons: list[str]


@dataclass
class Approval:
    """A human-in-the-loop request of one of the model's runs."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    subject: str
    options: list[str]
    responded_by: str | None
    chosen: list[str] | None


@dataclass
class ModelLoop:
    """Everything the page shows for one model."""

    name: str
    versions: list[Version]
    rollouts: list[Rollout]
    batches: list[Batch]
    retrainings: list[dict[str, str]]
    approvals: list[Approval]
    lineage: dict[str, Any] | None
    lineage_nodes: list[LineageNode]
    mlflow_url: str | None
    dag_ids: list[str]


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _iso(ms: int | None) -> str | None:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat() if ms else None


def _link(uri: str | None) -> str | None:
    return report_url(uri) if uri else None


def managed_models(client: Any) -> list[str]:
    """Registered models the provider trained (a version carries the training fingerprint tag)."""
    names = []
    for model in client.search_registered_models(max_results=1000):
        versions = client.search_model_versions(f"name='{model.name}'", max_results=5)
        if any(c.TAG_FINGERPRINT in (v.tags or {}) for v in versions):
            names.append(model.name)
    return sorted(names)


def read_versions(client: Any, hook: Any, name: str) -> list[Version]:
    """Every version of ``name`` with aliases, gate verdict, criteria and links; newest first."""
    aliases: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'", max_results=1000):
        tags = dict(mv.tags or {})
        criteria = [
            {"name": k.removeprefix(c.TAG_CRITERION_PREFIX), **(_json(v) or {})}
            for k, v in sorted(tags.items())
            if k.startswith(c.TAG_CRITERION_PREFIX)
        ]
        blessed = tags.get(c.TAG_BLESSED)
        run_url = None
        if mv.run_id:
            try:
                run_url = hook.run_url(client.get_run(mv.run_id).info.experiment_id, mv.run_id)
            except Exception:  # a deleted run must not hide the version
                run_url = None
        rows.append(
            Version(
                version=str(mv.version),
                aliases=sorted(aliases.get(str(mv.version), [])),
                created_at=_iso(mv.creation_timestamp),
                blessed=None if blessed is None else blessed == "true",
                criteria=criteria,
                run_id=mv.run_id,
                run_url=run_url,
                report_url=_link(tags.get(f"{c.TAG_GATE_PREFIX}report_uri")),
                training_run={
                    k.removeprefix("airflow."): v for k, v in tags.items() if k.startswith("airflow.")
                },
                deployed_at=tags.get(c.TAG_DEPLOYED_AT),
                rolled_back_at=(
                    tags.get(c.TAG_ROLLOUT_AT)
                    if tags.get(c.TAG_ROLLOUT_STATUS) == c.RolloutStatus.ROLLED_BACK.value
                    else None
                ),
            )
        )
    return sorted(rows, key=lambda v: int(v.version) if v.version.isdigit() else 0, reverse=True)


def stage_results(session: Any, limit: int = RESULT_LIMIT) -> list[dict[str, Any]]:
    """Recent task results (XCom ``return_value`` dicts) with their run's ids, type and time."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = (
        select(XComModel, DagRun.run_type, DagRun.run_after)
        .join(DagRun, (DagRun.dag_id == XComModel.dag_id) & (DagRun.run_id == XComModel.run_id))
        .where(XComModel.key == "return_value")
        .order_by(XComModel.timestamp.desc())
        .limit(limit)
    )
    out = []
    for row, run_type, run_after in session.execute(query).all():
        try:
            value = XComModel.deserialize_value(row)
        except Exception:  # a value this process cannot read is not a stage result
            continue
        if isinstance(value, dict):
            out.append(
                {
                    "dag_id": row.dag_id,
                    "run_id": row.run_id,
                    "task_id": row.task_id,
                    "run_type": str(getattr(run_type, "value", run_type)),
                    "at": (run_after or row.timestamp).isoformat(),
                    "value": value,
                }
            )
    out.reverse()  # oldest first
    return out


def _quality(summary: dict[str, Any]) -> tuple[float | None, str | None]:
    metrics = (summary.get("quality") or {}).get("metrics") or {}
    for metric, entry in sorted(metrics.items()):
        value = entry.get("live") if isinstance(entry, dict) else entry
        if isinstance(value, (int, float)):
            return float(value), metric
    return None, None


def split_results(
    results: list[dict[str, Any]], name: str, single_model: bool
) -> tuple[list[Rollout], list[Batch], list[dict[str, str]], set[str]]:
    """Rollouts, monitored batches and training runs of ``name`` among the stage results.

    A drift summary names its model when the monitoring task was given one; unnamed ones belong to
    the only model when there is one.
    """
    rollouts: list[Rollout] = []
    batches: list[Batch] = []
    trainings: dict[tuple[str, str], dict[str, str]] = {}  # one per run (candidates share it)
    dag_ids: set[str] = set()
    default = name if single_model else None
    for r in results:
        v = r["value"]
        if "bento_tag" in v and "status" in v and v.get("model_name") == name:
            dag_ids.add(r["dag_id"])
            rollouts.append(
                Rollout(
                    dag_id=r["dag_id"],
                    run_id=r["run_id"],
                    task_id=r["task_id"],
                    version=str(v.get("version")),
                    status=str(v["status"]),
                    deployed_at=v.get("deployed_at"),
                    previous_version=v.get("previous_version"),
                    smoke_test=v.get("smoke_test"),
                    canary=v.get("canary"),
                    watch=v.get("watch"),
                    rolled_back_from=v.get("rolled_back_from"),
                    reason=v.get("reason"),
                )
            )
        elif "drift_share" in v and "report_uri" in v and (v.get("model_name") or default) == name:
            dag_ids.add(r["dag_id"])
            quality, metric = _quality(v)
            batches.append(
                Batch(
                    dag_id=r["dag_id"],
                    run_id=r["run_id"],
                    at=r["at"],
                    drift_share=float(v["drift_share"]),
                    threshold=v.get("threshold"),
                    drift_detected=bool(v.get("drift_detected")),
                    quality=quality,
                    quality_metric=metric,
                    report_url=_link(v["report_uri"]),
                    retrain_reasons=list(v.get("retrain_reasons") or []),
                )
            )
        elif "fingerprint" in v and "cached" in v and v.get("model_name") == name:
            dag_ids.add(r["dag_id"])
            trainings.setdefault(
                (r["dag_id"], r["run_id"]), {k: r[k] for k in ("dag_id", "run_id", "run_type", "at")}
            )
    return rollouts, batches, list(trainings.values()), dag_ids


def tagged_dags(session: Any, name: str) -> set[str]:
    """DAGs tagged with the model's name (e.g. a release approval DAG that returns no stage result)."""
    from airflow.models.dag import DagTag
    from sqlalchemy import select

    return set(session.scalars(select(DagTag.dag_id).where(DagTag.name == name)))


def read_approvals(session: Any, dag_ids: set[str]) -> list[Approval]:
    """Human-in-the-loop requests of the model's DAGs, newest first."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    if not dag_ids:
        return []
    query = (
        select(
            HITLDetail, TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index
        )
        .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
        .where(TaskInstance.dag_id.in_(sorted(dag_ids)))
        .order_by(HITLDetail.created_at.desc())
        .limit(200)
    )
    out = []
    for detail, dag_id, run_id, task_id, map_index in session.execute(query).unique().all():
        who = detail.responded_by or {}
        out.append(
            Approval(
                dag_id=dag_id,
                run_id=run_id,
                task_id=task_id,
                map_index=int(map_index),
                subject=detail.subject,
                options=list(detail.options or []),
                responded_by=(who.get("name") or who.get("id")) if who else None,
                chosen=list(detail.chosen_options) if detail.chosen_options else None,
            )
        )
    return out


def _attach_approvers(rollouts: list[Rollout], approvals: list[Approval]) -> None:
    by_run = {(a.dag_id, a.run_id): a for a in approvals if a.responded_by}
    for r in rollouts:
        found = by_run.get((r.dag_id, r.run_id))
        if found is not None:
            r.approver = f"{found.responded_by} ({', '.join(found.chosen or [])})"


def read_loop(hook: Any, session: Any, name: str, *, single_model: bool) -> ModelLoop:
    """Everything the page shows for ``name``."""
    from airflow_mlpipe.provenance import model_lineage

    client = hook.get_client()
    versions = read_versions(client, hook, name)
    results = stage_results(session)
    rollouts, batches, trainings, dag_ids = split_results(results, name, single_model)
    for v in versions:
        if v.training_run.get("dag_id"):
            dag_ids.add(v.training_run["dag_id"])
    dag_ids |= tagged_dags(session, name)
    approvals = read_approvals(session, dag_ids)
    _attach_approvers(rollouts, approvals)
    try:
        lineage: dict[str, Any] | None = model_lineage(client, name)
    except Exception:  # no champion yet: the page still shows the versions
        lineage = None
    base = hook.display_uri.rstrip("/")
    mlflow_url = base if base.startswith(("http://", "https://")) else None
    return ModelLoop(
        name=name,
        versions=versions,
        rollouts=rollouts,
        batches=batches,
        retrainings=[t for t in trainings if t["run_type"] == "asset_triggered"],
        approvals=approvals,
        lineage=lineage,
        lineage_nodes=lineage_nodes(lineage, results, rollouts, mlflow_url) if lineage else [],
        mlflow_url=mlflow_url,
        dag_ids=sorted(dag_ids),
    )
