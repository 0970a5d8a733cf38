"""Report URLs: same-origin links for files under the artifact root, and nothing outside it."""

from __future__ import annotations

import pytest

from airflow_mlpipe.core.links import report_url
from airflow_mlpipe.core.storage import artifact_root
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.ui.reports import dag_id_of, media_type, resolve_report


def test_a_report_under_the_root_becomes_a_same_origin_plugin_url() -> None:
    path = (
        artifact_root()
        / "churn_training"
        / "manual__2024-01-01T00:00:00+00:00"
        / "gate"
        / "evaluation report.html"
    )
    url = report_url(path)
    assert url == (
        "/mlpipe/reports/churn_training/manual__2024-01-01T00%3A00%3A00%2B00%3A00/gate/evaluation%20report.html"
    )
    # the plugin resolves it back to the same file
    assert str(resolve_report(url.removeprefix("/mlpipe/reports/"))) == str(path)


def test_a_file_outside_the_root_keeps_its_uri() -> None:
    assert report_url("file:///elsewhere/report.html") == "file:///elsewhere/report.html"


def test_links_follow_the_api_base_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/team-a/")
    assert report_url(artifact_root() / "d" / "r" / "t" / "x.html") == "/team-a/mlpipe/reports/d/r/t/x.html"


@pytest.mark.parametrize(
    "relative",
    ["", "/etc/passwd", "d/../../etc/passwd", "d/%2e%2e/x", "d//x", "d/./x", "d\\..\\x", "d/x%00.html"],
)
def test_nothing_outside_the_artifact_root_can_be_named(relative: str) -> None:
    with pytest.raises(ConfigError):
        resolve_report(relative)


def test_the_dag_is_the_first_segment_and_types_are_served_right() -> None:
    assert dag_id_of("churn_training/run/validate/data_docs/index.html") == "churn_training"
    assert media_type("index.html") == "text/html; charset=utf-8"
    assert media_type("app.js").endswith("charset=utf-8")
    assert media_type("plot.png") == "image/png"
    assert media_type("model.skops") == "application/octet-stream"


def test_audit_links_are_same_origin_and_quote_the_model_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_mlpipe.core.links import audit_url

    assert audit_url("churn", "2") == "/mlpipe/audit/churn/2"
    assert audit_url("a/b c", "10") == "/mlpipe/audit/a%2Fb%20c/10"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://host:8080/airflow/")
    assert audit_url("churn", "2") == "/airflow/mlpipe/audit/churn/2"
