"""Provenance of the model that serves: which data, features, params and code produced it, and when
it was deployed — read back from what the stages recorded.

Sources, in order of authority:

1. the MLflow registry: the model version behind the alias (``champion`` by default) and its tags
   (:mod:`airflow_mlpipe.core.conventions`: training data URI/digest, feature service, features,
   code version, fingerprint, gate outcome, deployment time/endpoint/bento, ``airflow.*`` ids);
2. its MLflow run: parameters, metrics and logged dataset inputs;
3. the Airflow metadata DB, when reachable: the asset events of the Airflow run that trained the
   model and of the deployments of that version (their ``extra`` holds what each stage emitted).

Nothing is imported at module level beyond the standard library.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from airflow_mlpipe.core import conventions as c
from airflow_mlpipe.core.registry import get_version
from airflow_mlpipe.core.results import jsonable


def _ms_to_iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat()


def _json_list(text: str | None) -> list[Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return [text]
    return value if isinstance(value, list) else [value]


def model_lineage(
    client: Any, model_name: str, alias: str = c.ALIAS_CHAMPION, *, version_number: str | None = None
) -> dict[str, Any]:
    """Provenance of ``model_name@alias`` (or of ``version_number``) from an ``mlflow.MlflowClient``.

    :raises ConfigError: the model, the alias or the version does not exist (the message lists the
        aliases).
    """
    version = get_version(
        client, model_name, alias=alias if version_number is None else None, version=version_number
    )
    tags = dict(version.tags or {})
    run: dict[str, Any] = {"run_id": version.run_id}
    if version.run_id:
        try:
            r = client.get_run(version.run_id)
        except Exception as exc:  # a deleted run must not hide the registry record
            run["error"] = f"run not readable: {exc}"
        else:
            run.update(
                experiment_id=r.info.experiment_id,
                run_name=r.info.run_name,
                started_at=_ms_to_iso(r.info.start_time),
                params=dict(r.data.params),
                metrics=dict(r.data.metrics),
                inputs=[
                    {
                        "name": di.dataset.name,
                        "digest": di.dataset.digest,
                        "source_type": di.dataset.source_type,
                        "source": di.dataset.source,
                        "context": next((t.value for t in di.tags if t.key == "mlflow.data.context"), None),
                    }
                    for di in (r.inputs.dataset_inputs if r.inputs else [])
                ],
                code_version=r.data.tags.get("mlflow.source.git.commit"),
            )
    airflow = {k.removeprefix("airflow."): v for k, v in tags.items() if k.startswith("airflow.")}
    gate = {k.removeprefix(c.TAG_GATE_PREFIX): v for k, v in tags.items() if k.startswith(c.TAG_GATE_PREFIX)}
    return jsonable(
        {
            "model": {
                "name": model_name,
                "alias": alias if version_number is None else None,
                "version": str(version.version),
                "model_uri": f"models:/{model_name}/{version.version}",
                "registered_at": _ms_to_iso(version.creation_timestamp),
                "source": version.source,
                "aliases": list(getattr(version, "aliases", []) or []),
                "task_type": tags.get(c.TAG_TASK_TYPE),
                "label": tags.get(c.TAG_LABEL),
                "fingerprint": tags.get(c.TAG_FINGERPRINT),
            },
            "data": {
                "uri": tags.get(c.TAG_TRAINING_DATA_URI),
                "digest": tags.get(c.TAG_TRAINING_DATA_DIGEST),
            },
            "features": {
                "service": tags.get(c.TAG_FEATURE_SERVICE),
                "service_version": tags.get(c.TAG_FEATURE_SERVICE_VERSION),
                "columns": _json_list(tags.get(c.TAG_FEATURES)),
            },
            "code_version": tags.get(c.TAG_CODE_VERSION) or run.get("code_version"),
            "run": run,
            "gate": gate,
            "deployment": {
                "deployed_at": tags.get(c.TAG_DEPLOYED_AT),
                "endpoint": tags.get(c.TAG_DEPLOY_ENDPOINT),
                "bento_tag": tags.get(c.TAG_DEPLOY_BENTO),
            },
            "airflow": airflow,
            "tags": tags,
        }
    )


_DB_SETTINGS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET",
)


def missing_airflow_db() -> str | None:
    """Why the Airflow metadata DB cannot be read from this environment, or ``None``.

    Checked before Airflow is imported or the DB is opened: importing Airflow without a home creates
    ``~/airflow``, and opening a SQLite URL creates an empty database file.
    """
    home = os.environ.get("AIRFLOW_HOME")
    if not home and not any(os.environ.get(k) for k in _DB_SETTINGS):
        default = Path("~/airflow").expanduser()
        if not (default / "airflow.cfg").exists():
            return (
                "Airflow's metadata DB is unknown: AIRFLOW_HOME is not set and "
                f"{default} has no airflow.cfg. Set AIRFLOW_HOME (or AIRFLOW__DATABASE__SQL_ALCHEMY_CONN) "
                "as for your Airflow deployment, or pass --no-airflow for lineage from the registry alone."
            )
    from airflow.configuration import conf

    url = conf.get("database", "sql_alchemy_conn")
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?")[0])
        if not path.is_file() or path.stat().st_size == 0:
            return (
                f"Airflow's metadata DB {path} does not exist (AIRFLOW_HOME={home or '~/airflow'}); "
                "point AIRFLOW_HOME at the home of your Airflow deployment, or pass --no-airflow."
            )
    return None


def airflow_asset_events(record: dict[str, Any], *, limit: int = 50) -> dict[str, Any]:
    """Asset events of the run that trained the model and of deployments of its version.

    Uses the Airflow metadata DB configured in this environment; returns ``{"error": ...}`` when
    it cannot be reached (lineage from the registry alone is still complete).
    """
    airflow = record.get("airflow") or {}
    version = record["model"]["version"]
    name = record["model"]["name"]
    missing = missing_airflow_db()
    if missing:
        return {"error": missing, "events": []}
    try:
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = (
                session.query(
                    AssetModel.uri,
                    AssetEvent.timestamp,
                    AssetEvent.source_dag_id,
                    AssetEvent.source_run_id,
                    AssetEvent.source_task_id,
                    AssetEvent.extra,
                )
                .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
                .order_by(AssetEvent.timestamp.desc())
                .limit(5000)
                .all()
            )
    except Exception as exc:
        return {"error": f"Airflow metadata DB not reachable: {type(exc).__name__}: {exc}", "events": []}
    events = []
    for uri, ts, dag_id, run_id, task_id, extra in rows:
        extra = dict(extra or {})
        from_training_run = dag_id == airflow.get("dag_id") and run_id == airflow.get("run_id")
        about_version = str(extra.get("version", "")) == version and extra.get("model_name") in (None, name)
        if from_training_run or about_version:
            events.append(
                {
                    "asset": uri,
                    "timestamp": ts,
                    "dag_id": dag_id,
                    "run_id": run_id,
                    "task_id": task_id,
                    "extra": extra,
                }
            )
    events.reverse()  # oldest first: the order the stages ran in
    deployed = [e for e in events if e["extra"].get("deployed_at") and e["extra"].get("status") != "noop"]
    return jsonable(
        {
            "events": events[-limit:],
            "last_deployment": deployed[-1] if deployed else None,
        }
    )


def render_text(record: dict[str, Any]) -> str:
    """A human summary of a lineage record."""
    m, d, f, run = record["model"], record["data"], record["features"], record["run"]
    dep = record["deployment"]
    lines = [
        f"Model     {m['name']} version {m['version']} (alias {m['alias']}, {m.get('task_type') or '?'}"
        f", label {m.get('label') or '?'})",
        f"  uri       {m['model_uri']}   registered {m.get('registered_at') or '?'}",
        f"Data      {d.get('uri') or '(not recorded)'}",
        f"  digest    {d.get('digest') or '(not recorded)'}",
        f"Features  service {f.get('service') or '(none)'}"
        + (f" v{f['service_version']}" if f.get("service_version") else ""),
        f"  columns   {', '.join(map(str, f.get('columns') or [])) or '(not recorded)'}",
        f"Code      {record.get('code_version') or '(not recorded)'}",
        f"Run       {run.get('run_id') or '?'} (experiment {run.get('experiment_id', '?')})",
    ]
    for key, value in sorted((run.get("params") or {}).items()):
        lines.append(f"  param     {key} = {value}")
    for key, value in sorted((run.get("metrics") or {}).items()):
        lines.append(
            f"  metric    {key} = {value:.6g}" if isinstance(value, float) else f"  metric    {key} = {value}"
        )
    for item in run.get("inputs") or []:
        lines.append(
            f"  input     {item.get('name')} ({item.get('context') or 'input'}) digest {item.get('digest')}"
        )
    if record.get("gate"):
        lines.append("Gate      " + ", ".join(f"{k}={v}" for k, v in sorted(record["gate"].items())))
    deployed_at = dep.get("deployed_at")
    events = record.get("asset_events") or {}
    last = events.get("last_deployment")
    if not deployed_at and last:
        deployed_at = last["extra"].get("deployed_at") or last["timestamp"]
    lines.append(
        f"Deployed  {deployed_at or '(not deployed)'}"
        + (f" at {dep['endpoint']}" if dep.get("endpoint") else "")
        + (f" (bento {dep['bento_tag']})" if dep.get("bento_tag") else "")
    )
    if record.get("airflow"):
        a = record["airflow"]
        lines.append(f"Airflow   dag {a.get('dag_id')} run {a.get('run_id')} task {a.get('task_id')}")
    if events.get("error"):
        lines.append(f"Assets    {events['error']}")
    for e in events.get("events") or []:
        lines.append(f"  event     {e['timestamp']} {e['asset']} ← {e['dag_id']}.{e['task_id']}")
    return "\n".join(lines)
