"""Snapshots, ``mlpipe reproduce`` and ``mlpipe audit`` on a real MLflow store and Airflow DB."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pendulum
import pytest

from airflow_mlpipe.cli import main
from airflow_mlpipe.config.training import EstimatorConfig, RegistryConfig, TrainingConfig
from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.hooks.mlflow import MlflowHook
from airflow_mlpipe.training.train import train_model

pytestmark = pytest.mark.integration
CONN = "no_such_connection_embedded"  # the embedded SQLite MLflow store under the artifact root
FOREST = "sklearn.ensemble.RandomForestClassifier"


@pytest.fixture(scope="module")
def hook() -> MlflowHook:
    return MlflowHook(CONN)


@pytest.fixture
def files(tmp_path: Path, breast_cancer_frame):
    holdout = breast_cancer_frame.sample(frac=0.25, random_state=7)
    train = breast_cancer_frame.drop(holdout.index)
    paths = {"train": tmp_path / "train.parquet", "holdout": tmp_path / "holdout.parquet"}
    train.to_parquet(paths["train"], index=False)
    holdout.to_parquet(paths["holdout"], index=False)
    return paths


def _train(hook, source: Path, name: str, params: dict, run: str) -> dict:
    return train_model(
        hook,
        source=str(source),
        estimator=EstimatorConfig(FOREST, params),
        training=TrainingConfig(label="target"),
        registry=RegistryConfig(name, reuse_cached=False),
        ids={"airflow.dag_id": "governance_tests", "airflow.run_id": run, "airflow.task_id": "train"},
        code="code-1",
    )


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([*args, "--conn-id", CONN])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_reproduce_matches_exactly_after_the_source_is_overwritten(hook, files, capsys, breast_cancer_frame):
    name = f"gov-{uuid.uuid4().hex[:8]}"
    first = _train(hook, files["train"], name, {"n_estimators": 15, "max_depth": 4}, "r1")
    again = _train(hook, files["train"], name, {"n_estimators": 8}, "r2")
    with hook.activate():
        client = hook.get_client()
        tags = client.get_model_version(name, first["version"]).tags
        tags2 = client.get_model_version(name, again["version"]).tags
    snapshot = tags[cv.TAG_SNAPSHOT_TRAINING_URI]
    assert "/snapshots/" in snapshot and str(files["train"]) not in snapshot
    # unchanged data costs nothing: the second version points at the same snapshot
    assert tags2[cv.TAG_SNAPSHOT_TRAINING_DIGEST] == tags[cv.TAG_SNAPSHOT_TRAINING_DIGEST]
    assert tags2[cv.TAG_SNAPSHOT_TRAINING_URI] == snapshot

    breast_cancer_frame.sample(frac=0.4, random_state=3).to_parquet(files["train"], index=False)
    rc, out, err = _cli(capsys, "reproduce", "--model", name, "--version", first["version"], "--json")
    report = json.loads(out)
    assert rc == 0, (err, report["differences"])
    assert report["match"] is True and report["comparison"] == "exact"
    assert report["metrics"]["reproduced"] == report["metrics"]["recorded"] == first["metrics"]
    proba = report["predictions"]["predict_proba"]
    assert proba["equal"] and proba["rows"] > 50 and proba["max_abs_diff"] == 0.0
    assert not [d for d in report["differences"] if d["kind"] in ("data", "parameters", "metrics")]
    with hook.activate():
        tags = hook.get_client().get_model_version(name, first["version"]).tags
    assert tags[cv.TAG_REPRODUCE_STATUS] == "match"
    assert Path(tags[cv.TAG_REPRODUCE_REPORT_URI].removeprefix("file://")).is_file()

    # One parameter changed in the recorded run: a precise mismatch report.
    run_id = first["run_id"]
    with hook.activate():
        client = hook.get_client()
        spec = json.loads(client.get_run(run_id).data.tags[cv.TAG_TRAINING_SPEC])
        spec["params"]["max_depth"] = 2
        client.set_tag(run_id, cv.TAG_TRAINING_SPEC, json.dumps(spec))
    rc, out, _ = _cli(capsys, "reproduce", "--model", name, "--version", first["version"], "--json")
    report = json.loads(out)
    assert rc == 1 and report["match"] is False
    params = [d for d in report["differences"] if d["kind"] == "parameters"]
    assert params == [{"kind": "parameters", "name": "max_depth", "recorded": "4", "reproduced": "2"}]
    assert {d["kind"] for d in report["differences"]} >= {"parameters", "predictions"}
    rc, out, _ = _cli(capsys, "reproduce", "--model", name, "--version", first["version"])
    assert "MISMATCH" in out and "[parameters] max_depth: recorded '4', reproduced '2'" in out


def test_reproduce_refuses_a_different_scikit_learn_and_names_it(hook, files, capsys):
    name = f"gov-{uuid.uuid4().hex[:8]}"
    result = _train(hook, files["train"], name, {"n_estimators": 5}, "r1")
    with hook.activate():
        hook.get_client().set_tag(result["run_id"], f"{cv.TAG_ENV_PREFIX}sklearn", "0.24.2")
    rc, _, err = _cli(capsys, "reproduce", "--model", name, "--version", result["version"])
    assert rc == 2
    assert re.search(r"scikit-learn: recorded 0\.24\.2, installed \d", err), err
    # Without the guard the comparison runs and names the difference instead of refusing.
    rc, out, err = _cli(
        capsys,
        "reproduce",
        "--model",
        name,
        "--version",
        result["version"],
        "--allow-environment-drift",
        "--json",
    )
    report = json.loads(out)
    assert rc == 0, err
    assert {"kind": "environment", "name": "scikit-learn", "recorded": "0.24.2"}.items() <= next(
        d for d in report["differences"] if d["kind"] == "environment"
    ).items()


def test_retention_keeps_what_serving_and_rollback_need(hook, files, breast_cancer_frame):
    from airflow_mlpipe.governance import snapshots

    name = f"gov-{uuid.uuid4().hex[:8]}"
    v1 = _train(hook, files["train"], name, {"n_estimators": 5}, "r1")
    breast_cancer_frame.head(300).to_parquet(files["train"], index=False)
    v2 = _train(hook, files["train"], name, {"n_estimators": 5}, "r2")
    breast_cancer_frame.tail(300).to_parquet(files["train"], index=False)
    v3 = _train(hook, files["train"], name, {"n_estimators": 5}, "r3")
    assert len(snapshots.stored(name)) == 3
    with hook.activate():
        client = hook.get_client()
        client.set_registered_model_alias(name, cv.ALIAS_CHAMPION, v1["version"])
        digest1 = client.get_model_version(name, v1["version"]).tags[cv.TAG_SNAPSHOT_TRAINING_DIGEST]
        digest2 = client.get_model_version(name, v2["version"]).tags[cv.TAG_SNAPSHOT_TRAINING_DIGEST]
        with pytest.raises(snapshots.SnapshotInUse, match=rf"v{v1['version']} \(champion\)"):
            snapshots.delete(client, name, digest1)
        result = snapshots.prune(client, name, snapshots.RetentionConfig(keep_last=1))
        assert result["deleted"] == [digest2]
        assert digest1 in snapshots.stored(name) and digest2 not in snapshots.stored(name)
        assert result["retained_versions"] == sorted([v1["version"], v3["version"]], key=int)
        # the guard is the alias: once nothing serves v1, its snapshot may go
        client.delete_registered_model_alias(name, cv.ALIAS_CHAMPION)
        snapshots.delete(client, name, digest1)
    assert digest1 not in snapshots.stored(name)
    with pytest.raises(ValueError, match="keep_aliases must include"):
        snapshots.RetentionConfig(keep_aliases=("challenger",))


def test_audit_tells_the_story_of_a_second_version_and_detects_tampering(
    hook, files, run_dag, capsys, breast_cancer_frame, monkeypatch
):
    from airflow.sdk import DAG, Asset
    from airflow.sdk.bases.operator import BaseOperator

    from airflow_mlpipe.operators._context import emit_asset_metadata
    from airflow_mlpipe.operators.evaluation import EvaluationGateOperator, PromoteModelOperator
    from airflow_mlpipe.operators.governance import AuditReportOperator

    name = f"gov-{uuid.uuid4().hex[:8]}"
    start = pendulum.datetime(2024, 1, 1)

    def gate_and_promote(version: str, dag_id: str, extra=()):
        with DAG(dag_id, schedule=None, start_date=start) as dag:
            gate = EvaluationGateOperator(
                task_id="gate",
                model_name=name,
                holdout_uri=str(files["holdout"]),
                challenger_version=version,
                config=["accuracy >= 0.8"],
                mlflow_conn_id=CONN,
            )
            gate >> PromoteModelOperator(
                task_id="promote", model_name=name, gate_task_id="gate", mlflow_conn_id=CONN
            )
            for task in extra:
                dag.add_task(task)
        result = run_dag(dag)
        assert result.state == "success"
        return result

    v1 = _train(hook, files["train"], name, {"n_estimators": 5, "max_depth": 2}, "r1")
    gate_and_promote(v1["version"], f"{name}_v1")

    report_file = files["train"].parent / "drift_report.html"
    report_file.write_text("<html>drift</html>")
    from airflow_mlpipe.core.datasets import file_digest

    class Monitor(BaseOperator):
        def execute(self, context):
            emit_asset_metadata(
                context,
                self.outlets,
                {
                    "drift_detected": True,
                    "drift_share": 0.6,
                    "drifted_columns": ["mean_radius"],
                    "retrain_reasons": ["data_drift"],
                    "report_uri": str(report_file),
                    "report_digest": file_digest(str(report_file)),
                },
            )

    with DAG(f"{name}_monitor", schedule=None, start_date=start) as monitor:
        Monitor(task_id="drift", outlets=[Asset(name=f"{name}.drift", uri=f"mlpipe://monitoring/{name}")])
    assert run_dag(monitor).state == "success"

    v2 = _train(hook, files["train"], name, {"n_estimators": 30, "max_depth": 6}, "r2")
    audit_task = AuditReportOperator(
        task_id="audit", model_name=name, version=v2["version"], mlflow_conn_id=CONN
    )
    run = gate_and_promote(v2["version"], f"{name}_v2")
    # The gate's "Audit report" link opens the version's audit in the Airflow UI (same origin).
    assert run.xcom("gate", key="mlpipe_audit_report") == f"/mlpipe/audit/{name}/{v2['version']}"
    with DAG(f"{name}_audit", schedule=None, start_date=start) as audit_dag:
        audit_dag.add_task(audit_task)
    result = run_dag(audit_dag)
    assert result.state == "success"
    html_path = Path(result.xcom("audit")["html_uri"].removeprefix("file://"))
    page = html_path.read_text()
    # self-contained: no external stylesheet, script, image or font
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "<svg" in page and "every recorded digest matches" in page
    record = json.loads(Path(result.xcom("audit")["json_uri"].removeprefix("file://")).read_text())
    assert record["gate"]["champion_version"] == v1["version"]
    assert set(record["gate"]["metrics"]) == {"challenger", "champion"}
    assert record["gate"]["criteria"][0]["metric"] == "accuracy"
    assert record["lifecycle"]["mlpipe.promotion.replaced_version"] == v1["version"]

    # v1 served while the drift was reported; its audit shows it, and a changed report is caught.
    rc, out, _ = _cli(capsys, "audit", "--model", name, "--version", v1["version"], "--json")
    first = json.loads(out)
    assert rc == 0 and first["served"]["replaced_by"] == v2["version"]
    assert [e["extra"]["drift_share"] for e in first["drift_while_serving"]] == [0.6]
    report_file.write_text("<html>edited</html>")
    snapshot = Path(first["data"]["snapshot"]["uri"].removeprefix("file://"))
    snapshot.write_bytes(snapshot.read_bytes() + b"x")
    rc, out, err = _cli(capsys, "audit", "--model", name, "--version", v1["version"], "--json")
    tampered = json.loads(out)["tampered"]
    assert rc == 1 and "training-set snapshot" in tampered and any("drift report" in t for t in tampered)
    assert "does not match its recorded digest" not in err  # --json prints the record only
    page = Path(json.loads(out)["html_uri"].removeprefix("file://")).read_text()
    assert "MISMATCH" in page and "changed after the fact" in page

    # The UI plugin renders the same audit when the link is opened, digests checked at that moment.
    ui = _ui_client(monkeypatch)
    opened = ui.get(f"/mlpipe/audit/{name}/{v1['version']}")
    assert opened.status_code == 200, opened.text
    assert opened.headers["content-type"].startswith("text/html") and "MISMATCH" in opened.text
    as_json = ui.get(f"/mlpipe/audit/{name}/{v2['version']}", params={"format": "json"}).json()
    assert (
        as_json["model"]["version"] == v2["version"] and as_json["gate"]["champion_version"] == v1["version"]
    )
    assert as_json["tampered"] == ["training-set snapshot"]  # content-addressed: shared with v1
    assert ui.get(f"/mlpipe/audit/{name}/999").status_code == 404
    assert ui.get(f"/mlpipe/audit/{name}/{v2['version']}", params={"format": "pdf"}).status_code == 400
    assert _ui_client(monkeypatch, everyone_admin=False).get(
        f"/mlpipe/audit/{name}/{v2['version']}"
    ).status_code in (401, 403)


def _ui_client(monkeypatch, *, everyone_admin: bool = True):
    """The api-server's app with the provider's plugin mounted, as the UI calls it."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "test-secret-for-the-ui-plugin")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", str(everyone_admin))
    purge_cached_app()
    return TestClient(create_app(apps="core"))
