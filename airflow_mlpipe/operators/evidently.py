"""Drift and quality checks with Evidently, and the asset event that asks for retraining.

Why an ``AssetAlias``: a task emits an event for every ``Asset`` in its outlets whenever it
succeeds, so an ordinary drift outlet would fire on every healthy batch too. The operator therefore
declares an alias of the drift asset as its outlet and adds the drift asset to the alias *only* when
drift or degradation was found; the retraining DAG is scheduled on the drift asset itself
(``schedule=[drift_asset]``) and starts only then. Other outlets (e.g. a "checked" asset) still get
an event with the summary on every successful check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, BaseOperator

from airflow_mlpipe.config.monitoring import DriftConfig, QualityConfig
from airflow_mlpipe.core.lineage import emit_asset_metadata
from airflow_mlpipe.core.links import XComLink, push_link
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.core.storage import task_dir
from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow.sdk import Context

#: What may count as a reason to retrain.
RETRAIN_REASONS = ("data_drift", "prediction_drift", "quality")


class DriftReportLink(XComLink):
    """Link to the Evidently HTML report of the task."""

    link_name = "Drift report"
    key = "mlpipe_drift_report"


def drift_alias(drift_asset: Asset) -> AssetAlias:
    """The alias through which :class:`EvidentlyDriftOperator` emits ``drift_asset`` conditionally."""
    return AssetAlias(name=f"{drift_asset.name}.when-drifted", group="mlpipe")


class EvidentlyDriftOperator(BaseOperator):
    """Compare a current batch with a reference table; report drift and live quality.

    Returns the drift summary (see ``docs/contract.md``) and writes ``drift_report.html`` and
    ``drift_summary.json`` under the task's artifact directory. When a reason in ``retrain_on``
    holds, an event for ``drift_asset`` is emitted (extra = compact summary) — never otherwise.

    :param reference_uri: reference table (e.g. the training data) URI or path.
    :param current_uri: current batch URI or path; empty, unreadable or all-null data is a
        :class:`~airflow_mlpipe.exceptions.DataError`, never "no drift".
    :param drift: :class:`~airflow_mlpipe.config.monitoring.DriftConfig` or a dict of its fields.
    :param quality: :class:`~airflow_mlpipe.config.monitoring.QualityConfig` or dict; quality is
        judged when its label column is present in the current batch.
    :param baseline_metrics: the champion's evaluation metrics (e.g. the gate XCom's
        ``metrics.champion``); when omitted and ``model_name`` is set they are read from the registry.
    :param model_name: registered model whose ``model_alias`` version is the baseline.
    :param model_alias: registry alias of the baseline version.
    :param mlflow_conn_id: MLflow connection for the registry lookup.
    :param drift_asset: asset whose event schedules retraining; emitted only on drift/degradation.
    :param retrain_on: which findings count: ``data_drift``, ``prediction_drift``, ``quality``.
    """

    template_fields: Sequence[str] = (
        "reference_uri",
        "current_uri",
        "baseline_metrics",
        "model_name",
        "model_alias",
        "mlflow_conn_id",
        "drift",
        "quality",
    )
    template_fields_renderers = {"drift": "json", "quality": "json", "baseline_metrics": "json"}
    operator_extra_links = (DriftReportLink(),)
    ui_color = "#ffe8d6"

    def __init__(
        self,
        *,
        reference_uri: str,
        current_uri: str,
        drift: DriftConfig | Mapping[str, Any] | None = None,
        quality: QualityConfig | Mapping[str, Any] | None = None,
        baseline_metrics: Mapping[str, Any] | None = None,
        model_name: str | None = None,
        model_alias: str = "champion",
        mlflow_conn_id: str = "mlpipe_mlflow_default",
        drift_asset: Asset | None = None,
        retrain_on: Sequence[str] = RETRAIN_REASONS,
        **kwargs: Any,
    ) -> None:
        unknown = [r for r in retrain_on if r not in RETRAIN_REASONS]
        if unknown or isinstance(retrain_on, str):
            raise ConfigError(f"retrain_on must be a list of {list(RETRAIN_REASONS)}, got {retrain_on!r}.")
        if drift_asset is not None:
            if not isinstance(drift_asset, Asset):
                raise ConfigError("drift_asset must be an airflow.sdk.Asset (e.g. core.lineage.stage_asset).")
            kwargs["outlets"] = [*(kwargs.get("outlets") or []), drift_alias(drift_asset)]
        super().__init__(**kwargs)
        self.reference_uri = reference_uri
        self.current_uri = current_uri
        # Configs are stored as given (they may hold templates) and validated at execute time.
        self.drift = drift
        self.quality = quality
        self.baseline_metrics = baseline_metrics
        self.model_name = model_name
        self.model_alias = model_alias
        self.mlflow_conn_id = mlflow_conn_id
        self.drift_asset = drift_asset
        self.retrain_on = tuple(retrain_on)

    def _baseline(self) -> tuple[dict[str, Any], str]:
        if self.baseline_metrics:
            return dict(self.baseline_metrics), "given"
        if self.model_name:
            from airflow_mlpipe.hooks.mlflow import MlflowHook
            from airflow_mlpipe.monitoring.baseline import registry_baseline

            found = registry_baseline(MlflowHook(self.mlflow_conn_id), self.model_name, self.model_alias)
            return found["metrics"], f"{found['source']} (version {found['version']})"
        raise ConfigError("Quality needs baseline_metrics or model_name to read the champion's metrics from.")

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.core.datasets import file_digest, read_table
        from airflow_mlpipe.monitoring.drift import run_drift_report
        from airflow_mlpipe.monitoring.quality import check_quality

        drift_cfg = DriftConfig.from_value(self.drift)
        quality_cfg = QualityConfig.from_value(self.quality)
        out_dir = task_dir(context)
        report_path = out_dir / "drift_report.html"
        push_link(context, DriftReportLink, str(report_path))

        reference = read_table(self.reference_uri)
        current = read_table(self.current_uri)
        extra_excluded = [quality_cfg.label_column] if quality_cfg else []
        if extra_excluded:
            drift_cfg.exclude_columns = (*drift_cfg.exclude_columns, *extra_excluded)
        snapshot, summary = run_drift_report(reference, current, drift_cfg)

        quality: dict[str, Any] | None = None
        if quality_cfg is not None and quality_cfg.label_column in current.columns:
            baseline, source = self._baseline()
            quality = check_quality(current, quality_cfg, baseline)
            quality["baseline_source"] = source
        summary["quality"] = quality
        reasons = self._reasons(summary)
        summary.update(
            report_uri=str(report_path),
            reference_uri=str(self.reference_uri),
            current_uri=str(self.current_uri),
            row_counts={"reference": len(reference), "current": len(current)},
            retrain_reasons=reasons,
            retrain_recommended=bool(reasons),
        )
        summary = jsonable(summary)
        report_path.write_text(snapshot.get_html_str(as_iframe=False))
        (out_dir / "drift_summary.json").write_text(json.dumps(summary, indent=2))
        self.log.info(
            "Drift share %.3f (threshold %.3f), drifted columns %s, retrain reasons %s",
            summary["drift_share"],
            summary["threshold"],
            summary["drifted_columns"],
            reasons,
        )
        compact = {
            "drift_detected": summary["drift_detected"],
            "drift_share": summary["drift_share"],
            "drifted_columns": summary["drifted_columns"],
            "retrain_reasons": reasons,
            "current_uri": summary["current_uri"],
            "report_uri": summary["report_uri"],
            # Tamper evidence: the audit recomputes it (airflow_mlpipe.governance.audit).
            "report_digest": file_digest(str(report_path)),
        }
        emit_asset_metadata(context, self.outlets, compact)
        if reasons and self.drift_asset is not None:
            context["outlet_events"][drift_alias(self.drift_asset)].add(self.drift_asset, extra=compact)
        return summary

    def _reasons(self, summary: Mapping[str, Any]) -> list[str]:
        found = {
            "data_drift": bool(summary["drift_detected"]),
            "prediction_drift": bool((summary.get("prediction_drift") or {}).get("drifted")),
            "quality": bool((summary.get("quality") or {}).get("degraded")),
        }
        return [r for r in self.retrain_on if found[r]]
