"""The audit record of one model version: the whole story in one document, with its digests checked.

:func:`collect` gathers, from the MLflow registry and (when reachable) the Airflow metadata DB: the
lineage (:func:`airflow_mlpipe.provenance.model_lineage`), the stage events of the training run
(data batches with their validation results, feature definitions and their digest), the asset
events that started it (the drift that caused it), training parameters and environment, the gate's
criteria and numbers against the champion of the time, the approver, promotions, rollouts and
rollbacks with their reasons, the drift reports while the version served, and the latest
reproduction. :func:`integrity` recomputes every recorded digest and reports mismatches.
:func:`write` stores ``audit.json`` and a self-contained ``audit.html`` at :func:`location`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core import registry
from airflow_mlpipe.core.datasets import file_digest
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.core.storage import artifact_root, resolve, safe_segment
from airflow_mlpipe.governance import records, snapshots

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: version tag prefixes that describe what happened to a version after the gate
LIFECYCLE_PREFIXES = tuple(
    key.rpartition(".")[0] + "." for key in (cv.TAG_PROMOTED_AT, cv.TAG_DEPLOYED_AT, cv.TAG_ROLLOUT_STATUS)
) + ("mlpipe.rollout.", "mlpipe.rollback.")


def location(model_name: str, version: str) -> ObjectStoragePath:
    """Where the audit of ``model_name`` version ``version`` is written (the gate links there)."""
    return artifact_root() / "audit" / safe_segment(model_name) / f"v{version}"


def _check(what: str, uri: str | None, recorded: str | None) -> dict[str, Any]:
    if not uri or not recorded:
        return {"record": what, "uri": uri, "recorded": recorded, "actual": None, "status": "not recorded"}
    try:
        actual = snapshots.verify(uri, recorded)
    except Exception as exc:  # an unreadable store is a finding, not a crash of the audit
        actual, status = None, f"unreadable: {exc}"
    else:
        status = "missing" if actual is None else ("ok" if actual == recorded else "MISMATCH")
    return {"record": what, "uri": uri, "recorded": recorded, "actual": actual, "status": status}


def integrity(tags: Mapping[str, str], drift: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every digest the lineage carries, recomputed from what it describes."""
    checks = []
    if tags.get(cv.TAG_RECORD_DIGEST):
        actual = records.record_digest(tags)
        checks.append(
            {
                "record": "lineage tags",
                "uri": None,
                "recorded": tags[cv.TAG_RECORD_DIGEST],
                "actual": actual,
                "status": "ok" if actual == tags[cv.TAG_RECORD_DIGEST] else "MISMATCH",
            }
        )
    else:
        checks.append(
            {
                "record": "lineage tags",
                "uri": None,
                "recorded": None,
                "actual": None,
                "status": "not recorded",
            }
        )
    checks.append(
        _check(
            "training-set snapshot",
            tags.get(cv.TAG_SNAPSHOT_TRAINING_URI),
            tags.get(cv.TAG_SNAPSHOT_TRAINING_DIGEST),
        )
    )
    checks.append(
        _check(
            "holdout snapshot",
            tags.get(cv.TAG_SNAPSHOT_HOLDOUT_URI),
            tags.get(cv.TAG_SNAPSHOT_HOLDOUT_DIGEST),
        )
    )
    checks.append(
        _check(
            "gate report", tags.get(f"{cv.TAG_GATE_PREFIX}report_uri"), tags.get(cv.TAG_GATE_REPORT_DIGEST)
        )
    )
    checks.append(
        _check(
            "reproduction report",
            tags.get(cv.TAG_REPRODUCE_REPORT_URI),
            tags.get(cv.TAG_REPRODUCE_REPORT_DIGEST),
        )
    )
    for event in drift:
        extra = event["extra"]
        checks.append(
            _check(f"drift report {event['timestamp']}", extra.get("report_uri"), extra.get("report_digest"))
        )
    return checks


def _gate(client: Any, tags: Mapping[str, str]) -> dict[str, Any]:
    prefix = cv.TAG_CRITERION_PREFIX
    criteria = []
    for key, value in sorted(tags.items()):
        if key.startswith(prefix):
            try:
                criteria.append({"name": key.removeprefix(prefix), **json.loads(value)})
            except ValueError:
                criteria.append({"name": key.removeprefix(prefix), "raw": value})
    metrics: dict[str, dict[str, float]] = {}
    run_id = tags.get(f"{cv.TAG_GATE_PREFIX}run_id")
    if run_id:
        try:
            for key, value in client.get_run(run_id).data.metrics.items():
                role, _, name = key.partition(".")
                if role in ("challenger", "champion"):
                    metrics.setdefault(role, {})[name] = value
        except Exception as exc:
            metrics = {"error": {str(exc): 0.0}}
    return {
        "blessed": tags.get(cv.TAG_BLESSED),
        "champion_version": tags.get(f"{cv.TAG_GATE_PREFIX}champion_version") or None,
        "holdout_uri": tags.get(f"{cv.TAG_GATE_PREFIX}holdout_uri"),
        "report_uri": tags.get(f"{cv.TAG_GATE_PREFIX}report_uri"),
        "evaluation_run_id": run_id,
        "criteria": criteria,
        "metrics": metrics,
    }


def _airflow(lineage: Mapping[str, Any], model_name: str, version: str) -> dict[str, Any]:
    """Triggering events, approvals and drift reports from the Airflow metadata DB (best effort)."""
    ids = lineage.get("airflow") or {}
    try:
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.models.dagrun import DagRun
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            triggered_by = []
            run = (
                session.query(DagRun)
                .filter(DagRun.dag_id == ids.get("dag_id"), DagRun.run_id == ids.get("run_id"))
                .one_or_none()
            )
            for event in run.consumed_asset_events if run is not None else []:
                triggered_by.append(
                    {
                        "asset": event.uri,
                        "timestamp": event.timestamp,
                        "dag_id": event.source_dag_id,
                        "task_id": event.source_task_id,
                        "extra": dict(event.extra or {}),
                    }
                )
            approvals = [
                {
                    "task_id": ti.task_id,
                    "responded_by": detail.responded_by,
                    "chosen": detail.chosen_options,
                    "responded_at": detail.responded_at,
                }
                for detail, ti in session.query(HITLDetail, TaskInstance)
                .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
                .filter(TaskInstance.dag_id == ids.get("dag_id"), TaskInstance.run_id == ids.get("run_id"))
                .all()
            ]
            drift_rows = (
                session.query(
                    AssetModel.uri, AssetEvent.timestamp, AssetEvent.source_dag_id, AssetEvent.extra
                )
                .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
                .order_by(AssetEvent.timestamp)
                .limit(5000)
                .all()
            )
    except Exception as exc:
        return {"error": f"Airflow metadata DB not reachable: {type(exc).__name__}: {exc}"}
    seen: set[tuple[Any, ...]] = set()
    drift = []
    for uri, ts, dag_id, extra in drift_rows:
        extra = dict(extra or {})
        key = (ts, extra.get("report_uri"))
        if "drift_share" in extra and key not in seen:  # one report may feed several assets
            seen.add(key)
            drift.append({"asset": uri, "timestamp": ts, "dag_id": dag_id, "extra": extra})
    return {"triggered_by": triggered_by, "approvals": approvals, "drift_events": drift}


def _served_window(client: Any, model_name: str, version: str, tags: Mapping[str, str]) -> dict[str, Any]:
    start = tags.get(cv.TAG_PROMOTED_AT) or tags.get(cv.TAG_DEPLOYED_AT)
    end = None
    replaced_by = None
    for mv in registry.versions(client, model_name):
        other = dict(mv.tags or {})
        if other.get(cv.TAG_PROMOTED_FROM) == str(version):
            when = other.get(cv.TAG_PROMOTED_AT)
            if when and (end is None or when < end):
                end, replaced_by = when, str(mv.version)
    return {"from": start, "until": end, "replaced_by": replaced_by}


def _in_window(timestamp: Any, window: Mapping[str, Any]) -> bool:
    if not window.get("from"):
        return False
    when = timestamp if isinstance(timestamp, dt.datetime) else dt.datetime.fromisoformat(str(timestamp))
    start = dt.datetime.fromisoformat(str(window["from"]))
    end = dt.datetime.fromisoformat(str(window["until"])) if window.get("until") else None
    return start <= when and (end is None or when < end)


def collect(client: Any, model_name: str, version: str, *, airflow: bool = True) -> dict[str, Any]:
    """The audit record of ``model_name`` version ``version`` (JSON-safe)."""
    from airflow_mlpipe.provenance import airflow_asset_events, model_lineage

    lineage = model_lineage(client, model_name, version_number=str(version))
    tags = dict(lineage["tags"])
    run_tags: dict[str, str] = {}
    if lineage["run"].get("run_id"):
        try:
            run_tags = dict(client.get_run(lineage["run"]["run_id"]).data.tags)
        except Exception:  # lineage already notes an unreadable run
            run_tags = {}
    events: dict[str, Any] = (
        airflow_asset_events(lineage) if airflow else {"error": "not read (airflow=False)", "events": []}
    )
    context: dict[str, Any] = (
        _airflow(lineage, model_name, str(version)) if airflow else {"error": "not read (airflow=False)"}
    )
    window = _served_window(client, model_name, str(version), tags)
    drift_all = context.get("drift_events") or []
    served_drift = [e for e in drift_all if _in_window(e["timestamp"], window)]
    stage_events = events.get("events") or []
    reproduction: dict[str, Any] | None = None
    if tags.get(cv.TAG_REPRODUCE_REPORT_URI):
        try:
            reproduction = json.loads(resolve(tags[cv.TAG_REPRODUCE_REPORT_URI]).read_text())
        except Exception as exc:
            reproduction = {"error": f"report not readable: {exc}"}
    spec = None
    if tags.get(cv.TAG_TRAINING_SPEC):
        spec = json.loads(tags[cv.TAG_TRAINING_SPEC])
    checks = integrity(tags, served_drift)
    return jsonable(
        {
            "generated_at": dt.datetime.now(dt.UTC).isoformat(),
            "model": lineage["model"],
            "code_version": lineage["code_version"],
            "data": {
                **lineage["data"],
                "snapshot": {
                    "uri": tags.get(cv.TAG_SNAPSHOT_TRAINING_URI),
                    "digest": tags.get(cv.TAG_SNAPSHOT_TRAINING_DIGEST),
                },
                "batches": [e for e in stage_events if "validation" in e["asset"] or "success" in e["extra"]],
            },
            "features": {
                **lineage["features"],
                "definitions": [e for e in stage_events if "definitions" in e["extra"]],
            },
            "training": {
                "run": lineage["run"],
                "specification": spec,
                "environment": {
                    k.removeprefix(cv.TAG_ENV_PREFIX): v
                    for k, v in run_tags.items()
                    if k.startswith(cv.TAG_ENV_PREFIX)
                },
            },
            "gate": {
                **_gate(client, tags),
                "holdout_snapshot": {
                    "uri": tags.get(cv.TAG_SNAPSHOT_HOLDOUT_URI),
                    "digest": tags.get(cv.TAG_SNAPSHOT_HOLDOUT_DIGEST),
                },
            },
            "approvals": context.get("approvals") or [],
            "triggered_by": context.get("triggered_by") or [],
            "lifecycle": {k: v for k, v in sorted(tags.items()) if k.startswith(LIFECYCLE_PREFIXES)},
            "deployments": [e for e in stage_events if e["extra"].get("deployed_at")],
            "served": window,
            "drift_while_serving": served_drift,
            "reproduction": reproduction,
            "integrity": checks,
            "tampered": [c["record"] for c in checks if c["status"] not in ("ok", "not recorded")],
            "stage_events": stage_events,
            "airflow_error": events.get("error") or context.get("error"),
        }
    )


def write(report: Mapping[str, Any]) -> dict[str, str]:
    """Write ``audit.json`` and ``audit.html`` to :func:`location`; return their URIs and digests."""
    from airflow_mlpipe.governance.html import render

    home = location(str(report["model"]["name"]), str(report["model"]["version"]))
    home.mkdir(parents=True, exist_ok=True)
    json_path, html_path = home / "audit.json", home / "audit.html"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True))
    html_path.write_text(render(report))
    return {
        "json_uri": str(json_path),
        "html_uri": str(html_path),
        "html_digest": file_digest(str(html_path)),
    }
