"""What every run of the demo loop must show, whatever executor and metadata DB it ran on."""

from __future__ import annotations

import re
from pathlib import Path

from mlpipe_dev import churn_data as churn
from mlpipe_dev.demo.runner import MONITORING_DAG, TRAINING_DAG, DemoResult


def check_loop(result: DemoResult) -> None:
    dags = [r["dag_id"] for r in result.runs]
    assert dags == [TRAINING_DAG, MONITORING_DAG, TRAINING_DAG]
    assert all(r["state"] == "success" for r in result.runs)
    # The retraining run was started by the drift asset event, not by a person or a cron schedule.
    assert result.runs[2]["run_id"].startswith("asset_triggered__")
    assert result.runs[1]["run_id"].startswith("asset_triggered__")

    before, after = result.champion_before, result.champion_after
    assert before["model_name"] == after["model_name"] == "churn"
    assert int(after["version"]) > int(before["version"])
    assert before["deployed"]["status"] == "deployed" and after["deployed"]["status"] == "deployed"
    assert result.prediction_before["model_version"] == str(before["version"])
    assert result.prediction_after["model_version"] == str(after["version"])
    assert len(result.prediction_after["predictions"]) == 3

    # The served model's quality on drifted data, from the scores the endpoint returned: the
    # retrained version is clearly better, also on drifted rows neither version learned from.
    quality = result.quality
    assert quality["metric"] == "roc_auc", quality
    for name, measured in quality["sets"].items():
        assert measured["before_version"] == [str(before["version"])], (name, measured)
        assert measured["after_version"] == [str(after["version"])], (name, measured)
        assert measured["after"] > measured["before"] + 0.02, (name, measured)
    assert any(name.startswith("unseen drifted day") for name in quality["sets"]), quality

    assert result.drift["drift_detected"] is True
    assert set(result.drift["drifted_columns"]) & set(churn.DRIFTED_FEATURES)
    assert not set(result.drift["drifted_columns"]) & {"region", "payment_method"}

    # Live traffic ran through the canary and the switch: every request answered.
    assert result.traffic["total"] >= 50
    assert result.traffic["failed"] == 0, result.traffic
    assert set(result.traffic["versions"]) == {str(before["version"]), str(after["version"])}

    lineage = result.lineage
    assert "error" not in lineage, lineage
    assert str(lineage["model"]["version"]) == str(after["version"])
    assert lineage["model"]["fingerprint"] == after["fingerprint"]
    assert lineage["data"]["digest"].startswith("sha256:")

    # The audit of the retrained version: the drift that caused it, the gate against the first
    # version, the rollout, every digest intact, and a page that renders offline.
    audit = result.audit
    assert "error" not in audit, audit
    assert audit["model"]["version"] == str(after["version"])
    assert any(e["extra"].get("drift_detected") for e in audit["triggered_by"]), audit["triggered_by"]
    assert audit["gate"]["champion_version"] == str(before["version"])
    assert audit["gate"]["metrics"]["champion"] and audit["gate"]["metrics"]["challenger"]
    assert audit["lifecycle"]["mlpipe.promotion.replaced_version"] == str(before["version"])
    assert audit["lifecycle"]["mlpipe.deploy.endpoint"] == result.endpoint
    assert audit["tampered"] == [] and audit["data"]["snapshot"]["digest"].startswith("sha256:")
    page = Path(audit["html_uri"].removeprefix("file://")).read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "<script" not in page

    # The reference config hands the stream to each deployed champion: every event sent after a
    # deployment has exactly one result, scored by that deployment's version, or is dead-lettered.
    assert result.stream_enabled
    assert [s["tag"] for s in result.stream] == ["before-drift", "after-retrain"]
    for stream, champion in zip(result.stream, (before, after), strict=True):
        valid = stream["sent"] - stream["malformed_sent"]
        assert stream["scored"] == stream["unique_scored"] == valid, stream
        assert stream["dead_ids"] == stream["expected_dead_ids"], stream
        assert stream["versions"] == {str(champion["version"]): valid}, stream
        assert stream["p50_latency_ms"] is not None and stream["p50_latency_ms"] >= 0

    # The reference config asks a person before each promotion; the demo answered through the REST
    # API as its user, and the audit names who approved the serving version.
    assert [(a["dag_id"], a["chosen"]) for a in result.approvals] == [(TRAINING_DAG, "Approve")] * 2
    approvals = audit["approvals"]
    assert [a["chosen"] for a in approvals] == [["Approve"]], approvals
    assert approvals[0]["responded_by"], approvals
