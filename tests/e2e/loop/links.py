"""Whether a link the UI shows resolves.

Every link must answer below HTTP 400 with a body. Airflow's and MLflow's UIs are single-page apps
that answer 200 for any route, so for their routes the object the route names (DAG, run, task
instance; MLflow run, model version) must also exist in that app's REST API.
"""

from __future__ import annotations

import json
import urllib.request
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlencode, urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import APIRequestContext

    from mlpipe_dev.local.stack import AirflowApi


def airflow_api_path(ui_path: str) -> str:
    """The REST path of what an Airflow UI route names.

    ``/dags/<dag>[/runs/<run>[/tasks/<task>[/mapped/<index>]]]`` -> ``/dags/<dag>[/dagRuns/<run>[/taskInstances/<task>[/<index>]]]``
    """
    parts = [unquote(p) for p in ui_path.strip("/").split("/")]
    if parts[0] != "dags" or len(parts) < 2:
        raise AssertionError(f"not a DAG, run or task page of the Airflow UI: {ui_path}")
    path = f"/dags/{quote(parts[1], safe='')}"
    for i, (ui, rest) in enumerate((("runs", "dagRuns"), ("tasks", "taskInstances"), ("mapped", ""))):
        at = 2 + 2 * i
        if len(parts) > at + 1 and parts[at] == ui:
            path += f"/{rest}/{quote(parts[at + 1], safe='')}" if rest else f"/{parts[at + 1]}"
    return path


def mlflow_object(mlflow_url: str, fragment: str) -> dict[str, object]:
    """The MLflow object a UI route (``#/experiments/<id>/runs/<run>``, ``#/models/<name>/versions/<v>``) names."""
    parts = [unquote(p) for p in fragment.strip("/").split("/")]
    if len(parts) == 4 and parts[0] == "experiments" and parts[2] == "runs":
        endpoint, query = "runs/get", {"run_id": parts[3]}
    elif len(parts) == 4 and parts[0] == "models" and parts[2] == "versions":
        endpoint, query = "model-versions/get", {"name": parts[1], "version": parts[3]}
    else:
        raise AssertionError(f"not a run or model version page of the MLflow UI: #{fragment}")
    url = f"{mlflow_url.rstrip('/')}/api/2.0/mlflow/{endpoint}?{urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def check_resolves(
    request: APIRequestContext, url: str, *, airflow_url: str, api: AirflowApi, mlflow_url: str
) -> None:
    """Fail unless ``url`` answers below 400 with a body and names something that exists."""
    answer = request.get(url)
    assert answer.status < 400, f"{url}: HTTP {answer.status} {answer.text()[:300]}"
    assert answer.body().strip(), f"{url}: empty answer"
    parts = urlsplit(url)
    if url.startswith(airflow_url) and parts.path.startswith("/dags/"):
        api.get(airflow_api_path(parts.path))  # raises on 404
    elif url.startswith(mlflow_url.rstrip("/")) and parts.fragment:
        assert mlflow_object(mlflow_url, parts.fragment), url
