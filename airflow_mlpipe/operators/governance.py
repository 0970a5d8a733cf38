"""Governance operators: reproduce a registered version and write its audit report, as DAG tasks.

The logic lives in :mod:`airflow_mlpipe.governance`; nothing here imports a heavy library at
module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlpipe.core.links import audit_url
from airflow_mlpipe.exceptions import QualityGateFailed
from airflow_mlpipe.hooks.mlflow import MlflowHook
from airflow_mlpipe.operators._context import XComLink, push_link
from airflow_mlpipe.operators._results import push_then_raise

if TYPE_CHECKING:
    from airflow.sdk import Context


class AuditReportLink(XComLink):
    """The version's audit report, rendered by the UI plugin when opened (``/mlpipe/audit/<model>/<v>``)."""

    link_name = "Audit report"
    key = "mlpipe_audit_report"


def push_audit_link(context: Context, model_name: str, version: str) -> None:
    """Point the task's "Audit report" link at the version's audit page in the Airflow UI."""
    push_link(context, AuditReportLink, audit_url(model_name, version))


class ReproduceModelOperator(BaseOperator):
    """Retrain a registered version from its snapshot and recorded specification, and compare.

    Pushes the reproduction report (``match``, ``differences``, metrics, predictions) to XCom and
    tags the version with the outcome; on a mismatch the task fails after pushing it (unless
    ``fail_on_mismatch`` is false). A different scikit-learn, numpy or scipy fails the task before
    training, naming the packages.

    :param model_name: registered model name.
    :param version: the version to reproduce.
    :param tolerance: for estimators that are not deterministic (a ``random_state`` left unset).
    :param allow_environment_drift: compare even when scikit-learn, numpy or scipy differ.
    :param code_version: the code version of this environment (compared with the recorded one).
    :param fail_on_mismatch: fail the task when the reproduction differs.
    :param mlflow_conn_id: Airflow connection of the MLflow server.
    """

    template_fields: Sequence[str] = ("model_name", "version", "code_version", "mlflow_conn_id")
    operator_extra_links = (AuditReportLink(),)

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        tolerance: float = 1e-6,
        allow_environment_drift: bool = False,
        code_version: str | None = None,
        fail_on_mismatch: bool = True,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.tolerance = tolerance
        self.allow_environment_drift = allow_environment_drift
        self.code_version = code_version
        self.fail_on_mismatch = fail_on_mismatch
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.training.reproduce import ReproduceConfig, record, render_text, reproduce

        config = ReproduceConfig(
            tolerance=self.tolerance,
            allow_environment_drift=self.allow_environment_drift,
            code_version=self.code_version,
        )
        push_audit_link(context, self.model_name, str(self.version))
        hook = MlflowHook(self.mlflow_conn_id)
        with hook.activate():
            client = hook.get_client()
            report = reproduce(client, self.model_name, str(self.version), config)
            report["report_uri"] = record(client, report)
        self.log.info("%s", render_text(report))
        if not report["match"] and self.fail_on_mismatch:
            push_then_raise(
                context,
                report,
                QualityGateFailed(
                    f"{self.model_name} v{self.version} did not reproduce: "
                    + "; ".join(f"{d['kind']} {d['name']}" for d in report["differences"]),
                    report,
                ),
            )
        return report


class AuditReportOperator(BaseOperator):
    """Write the audit report (HTML and JSON) of a registered version and check its digests.

    XCom: ``{"html_uri", "json_uri", "html_digest", "tampered": [records]}``. A record whose digest
    no longer matches fails the task (after pushing the result) unless ``fail_on_tampering`` is false.

    :param model_name: registered model name.
    :param version: the version to audit.
    :param fail_on_tampering: fail when a recorded digest does not match what it describes.
    :param mlflow_conn_id: Airflow connection of the MLflow server.
    """

    template_fields: Sequence[str] = ("model_name", "version", "mlflow_conn_id")
    operator_extra_links = (AuditReportLink(),)

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        fail_on_tampering: bool = True,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.fail_on_tampering = fail_on_tampering
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.governance import audit

        push_audit_link(context, self.model_name, str(self.version))
        hook = MlflowHook(self.mlflow_conn_id)
        with hook.activate():
            report = audit.collect(hook.get_client(), self.model_name, str(self.version))
        result = {**audit.write(report), "tampered": report["tampered"]}
        if report["tampered"] and self.fail_on_tampering:
            push_then_raise(
                context,
                result,
                QualityGateFailed(
                    f"Audit of {self.model_name} v{self.version}: changed after the fact: {report['tampered']}",
                    result,
                ),
            )
        return result
