"""The plugin's FastAPI app, mounted by the api-server under ``/mlpipe`` (same origin as the UI).

Every route resolves the caller with Airflow's own ``get_user`` (JWT in the ``Authorization``
header or the UI's session cookie) and asks Airflow's auth manager for permission:

* ``GET /reports/<dag_id>/<run_id>/<task>/<file>`` — a file the stages wrote under the artifact root,
  read through ``ObjectStoragePath`` (any object store); needs read access to the DAG's task
  instances;
* ``GET /audit/<model>/<version>`` — the version's audit report (HTML, or ``?format=json``), rendered
  from the registry and the metadata DB when asked for, digests checked; needs read access to DAGs
  (the story of a version spans several DAGs, as on the Models page);
* ``GET /models`` and ``GET /models/<name>`` — the Models page; needs read access to DAGs. Action
  buttons appear only where the user may answer the approval / trigger the rollback DAG, and the
  actions themselves go through Airflow's REST API, which checks again.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from airflow_mlpipe.exceptions import ConfigError


def _may(user: Any, method: str, dag_id: str | None, entity: str | None = None) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return bool(
        get_auth_manager().is_authorized_dag(
            method=method,  # type: ignore[arg-type]
            access_entity=DagAccessEntity(entity) if entity else None,
            details=DagDetails(id=dag_id),
            user=user,
        )
    )


def _require(allowed: bool) -> None:
    if not allowed:
        raise HTTPException(status_code=403, detail="Forbidden")


def create_app() -> FastAPI:
    """The app the plugin mounts (built once, when the api-server mounts it)."""
    from airflow_mlpipe.core.links import base_path

    app = FastAPI(title="airflow-mlpipe", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/reports/{relative:path}")
    def report(relative: str, user: GetUserDep) -> Response:
        from airflow_mlpipe.ui.reports import dag_id_of, media_type, resolve_report

        try:
            dag_id = dag_id_of(relative)
        except ConfigError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        _require(_may(user, "GET", dag_id, "TASK_INSTANCE"))
        path = resolve_report(relative)
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            raise HTTPException(status_code=404, detail=f"No report {relative!r} under the artifact root")
        return Response(path.read_bytes(), media_type=media_type(path.name))

    @app.get("/audit/{name:path}/{version}")
    def audit(
        name: str, version: str, user: GetUserDep, fmt: str = Query("html", alias="format")
    ) -> Response:
        from airflow_mlpipe.core.registry import version_exists
        from airflow_mlpipe.governance.audit import collect
        from airflow_mlpipe.governance.html import render
        from airflow_mlpipe.hooks.mlflow import MlflowHook

        _require(_may(user, "GET", None))
        if fmt not in ("html", "json"):
            raise HTTPException(status_code=400, detail=f"format must be 'html' or 'json', not {fmt!r}")
        client = MlflowHook().get_client()
        if not version_exists(client, name, version):
            raise HTTPException(status_code=404, detail=f"No version {version!r} of model {name!r}")
        report = collect(client, name, version)
        if fmt == "json":
            return Response(json.dumps(report, sort_keys=True), media_type="application/json")
        return HTMLResponse(render(report))

    @app.get("/models", response_class=HTMLResponse)
    def models(user: GetUserDep) -> str:
        from airflow_mlpipe.hooks.mlflow import MlflowHook
        from airflow_mlpipe.ui.loop import managed_models
        from airflow_mlpipe.ui.page import render_index

        _require(_may(user, "GET", None))
        return render_index(managed_models(MlflowHook().get_client()), f"{base_path()}/mlpipe")

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model(name: str, user: GetUserDep) -> str:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        from airflow_mlpipe.hooks.mlflow import MlflowHook
        from airflow_mlpipe.ui.loop import managed_models, read_loop
        from airflow_mlpipe.ui.page import render_model

        _require(_may(user, "GET", None))
        hook = MlflowHook()
        names = managed_models(hook.get_client())
        if name not in names:
            raise HTTPException(status_code=404, detail=f"No model {name!r}; models: {names}")
        rollback_dag = f"{name}_rollback"
        with create_session() as session:
            loop = read_loop(hook, session, name, single_model=len(names) == 1)
            if session.get(DagModel, rollback_dag) is None:
                rollback_dag = None  # type: ignore[assignment]
        can_answer = {d for d in loop.dag_ids if _may(user, "PUT", d, "HITL_DETAIL")}
        return render_model(
            loop,
            api=f"{base_path()}/api/v2",
            can_answer=can_answer,
            rollback_dag=rollback_dag,
            can_rollback=bool(rollback_dag) and _may(user, "POST", rollback_dag, "RUN"),
        )

    return app
