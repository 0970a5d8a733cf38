"""The lineage of the serving version as the Models page draws it: one node per stage, each linking
to the Airflow task that ran it or to the MLflow object it produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LineageNode:
    """One step of the serving version's lineage; ``href`` is an Airflow page or an MLflow object."""

    kind: str
    label: str
    detail: str
    href: str | None


def task_page(dag_id: str, run_id: str, task_id: str | None = None) -> str:
    """The Airflow UI page of a DAG run, or of one of its task instances (same origin)."""
    from urllib.parse import quote

    from airflow_mlpipe.core.links import base_path

    page = f"{base_path()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return f"{page}/tasks/{quote(task_id, safe='')}" if task_id else page


def lineage_nodes(
    record: dict[str, Any], results: list[dict[str, Any]], rollouts: list[Any], mlflow_url: str | None
) -> list[LineageNode]:
    """Data batches → validation → feature views → training set → run → version → deployment."""
    ids = record.get("airflow") or {}
    dag_id, run_id = ids.get("dag_id"), ids.get("run_id")
    in_run = [r for r in results if r["dag_id"] == dag_id and r["run_id"] == run_id]

    def stage(key: str) -> dict[str, Any] | None:
        return next((r for r in in_run if key in r["value"]), None)

    def page(found: dict[str, Any] | None) -> str | None:
        return task_page(found["dag_id"], found["run_id"], found["task_id"]) if found else None

    validation, views, tset = stage("data_docs_uri"), stage("feature_views"), stage("training_set_uri")
    model, run, data = record["model"], record["run"], record["data"]
    nodes = [
        LineageNode(
            "data",
            "Data batches",
            str((validation or {}).get("value", {}).get("dataset_uri") or data.get("uri") or "?"),
            task_page(dag_id, run_id) if dag_id and run_id else None,
        ),
        LineageNode(
            "validation",
            "Validation",
            f"success={(validation or {}).get('value', {}).get('success')}",
            page(validation),
        ),
        LineageNode(
            "features",
            "Feature views",
            ", ".join(
                str(v.get("name", v)) for v in (views or {}).get("value", {}).get("feature_views") or []
            ),
            page(views),
        ),
        LineageNode(
            "training_set",
            "Training set",
            f"{(tset or {}).get('value', {}).get('row_count', '?')} rows, {data.get('digest') or ''}"[:60],
            page(tset),
        ),
        LineageNode(
            "run",
            "MLflow run",
            str(run.get("run_name") or run.get("run_id") or "?"),
            f"{mlflow_url}/#/experiments/{run.get('experiment_id')}/runs/{run.get('run_id')}"
            if mlflow_url and run.get("run_id")
            else None,
        ),
        LineageNode(
            "version",
            "Model version",
            f"{model['name']} v{model['version']}",
            f"{mlflow_url}/#/models/{model['name']}/versions/{model['version']}" if mlflow_url else None,
        ),
    ]
    deployed = [r for r in rollouts if r.version == str(model["version"]) and r.status != "noop"]
    if deployed:
        last = deployed[-1]
        nodes.append(
            LineageNode(
                "deployment",
                "Deployment",
                f"{last.status} {last.deployed_at or ''}"[:40],
                task_page(last.dag_id, last.run_id, last.task_id),
            )
        )
    return nodes
