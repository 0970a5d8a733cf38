"""The lineage of the serving version as the Models page draws it: one node per stage, each linking
to the Airflow task that ran it or to the MLflow object it produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LineageNode:
    """One step of the serving version's lineage; ``href`` is an Airflow page or an MLflow object.

    ``detail`` is the short line shown in the box; ``tooltip`` the whole record (URIs, digests, times).
    """

    kind: str
    label: str
    detail: str
    href: str | None
    tooltip: str = ""


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
    checked = (validation or {}).get("value", {})
    view_names = [
        str(v.get("feature_view") or v.get("name") or "?") if isinstance(v, dict) else str(v)
        for v in (views or {}).get("value", {}).get("feature_views") or []
    ]
    rows = (tset or {}).get("value", {}).get("row_count")
    dataset = str(checked.get("dataset_uri") or data.get("uri") or "?")
    nodes = [
        LineageNode(
            "data",
            "Data batches",
            "/".join(dataset.rstrip("/").split("/")[-2:]),
            task_page(dag_id, run_id) if dag_id and run_id else None,
            dataset,
        ),
        LineageNode(
            "validation",
            "Validation",
            {True: "passed", False: "failed"}.get(checked.get("success"), "?")
            + (f", {checked['row_count']} rows" if checked.get("row_count") is not None else ""),
            page(validation),
            str(checked.get("suite") or ""),
        ),
        LineageNode("features", "Feature views", ", ".join(view_names) or "?", page(views)),
        LineageNode(
            "training_set",
            "Training set",
            f"{rows} rows" if rows is not None else "?",
            page(tset),
            str(data.get("digest") or ""),
        ),
        LineageNode(
            "run",
            "MLflow run",
            str(run.get("run_name") or run.get("run_id") or "?"),
            f"{mlflow_url}/#/experiments/{run.get('experiment_id')}/runs/{run.get('run_id')}"
            if mlflow_url and run.get("run_id")
            else None,
            str(run.get("run_id") or ""),
        ),
        LineageNode(
            "version",
            "Model version",
            f"{model['name']} v{model['version']}",
            f"{mlflow_url}/#/models/{model['name']}/versions/{model['version']}" if mlflow_url else None,
            str(model.get("fingerprint") or ""),
        ),
    ]
    deployed = [r for r in rollouts if r.version == str(model["version"]) and r.status != "noop"]
    if deployed:
        last = deployed[-1]
        nodes.append(
            LineageNode(
                "deployment",
                "Deployment",
                f"{last.status} v{last.version}",
                task_page(last.dag_id, last.run_id, last.task_id),
                f"{last.status} at {last.deployed_at or '?'} by {last.dag_id} {last.run_id}",
            )
        )
    return nodes
