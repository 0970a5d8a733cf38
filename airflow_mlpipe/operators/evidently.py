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

from airflow_mlpipe.config.monitoring import DriftConfig, PredictionLogConfig, QualityConfig
from airflow_mlpipe.core.links import report_url
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.operators._context import XComLink, emit_asset_metadata, push_link, task_dir

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
        judged when its label column is present in the current batch, or from ``prediction_log``.
    :param prediction_log: :class:`~airflow_mlpipe.config.monitoring.PredictionLogConfig` or dict:
        judge the serving version's logged predictions against the labels known now
        (:mod:`airflow_mlpipe.monitoring.prediction_log`) instead of labels in the batch; needs
        ``quality``. A degradation asks for retraining with the reason ``quality``.
    :param baseline_metrics: the champion's evaluation metrics (e.g. the gate XCom's
        ``metrics.champion``); when omitted and ``model_name`` is set they are read from the registry.
    :param model_name: registered model whose ``model_alias`` version is the baseline.
    :param model_alias: registry alias of the baseline version.
    :param mlflow_conn_id: MLflow connection for the registry lookup.
    :param drift_asset: asset whose event schedules retraining; emitted only on drift/degradation.
    :param retrain_on: which findings count: ``data_drift``, ``prediction_drift``, ``quality``.
    :param rebase_reference: compare with the training data of the serving version
        (``model_name`` at ``model_alias``) once one serves; ``reference_uri`` until then. The
        reference used is recorded in the result and the asset event (``reference``).
    :param timestamp_column: event time column of the batch; its earliest value is reported as
        ``batch_start`` and, with a retraining request, as ``drift_since`` (the training window of
        the requested run starts there).
    :param cooldown_batches: after a retraining request, hold further requests for this many
        batches while the same version serves (0: every drifted batch asks).
    :param refresh_batches: after a retraining request, each of this many later batches asks once
        more (reason ``refresh``, with the first request's ``drift_since``) once the version it
        was asked for serves: the model then learns from the new regime as its batches arrive
        (:mod:`airflow_mlpipe.monitoring.retraining`). ``0`` (default): no refresh.
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
        "prediction_log",
        "timestamp_column",
    )
    template_fields_renderers = {
        "drift": "json",
        "quality": "json",
        "prediction_log": "json",
        "baseline_metrics": "json",
    }
    operator_extra_links = (DriftReportLink(),)
    ui_color = "#ffe8d6"

    def __init__(
        self,
        *,
        reference_uri: str,
        current_uri: str,
        drift: DriftConfig | Mapping[str, Any] | None = None,
        quality: QualityConfig | Mapping[str, Any] | None = None,
        prediction_log: PredictionLogConfig | Mapping[str, Any] | None = None,
        baseline_metrics: Mapping[str, Any] | None = None,
        model_name: str | None = None,
        model_alias: str = "champion",
        mlflow_conn_id: str = "mlpipe_mlflow_default",
        drift_asset: Asset | None = None,
        retrain_on: Sequence[str] = RETRAIN_REASONS,
        rebase_reference: bool = False,
        timestamp_column: str | None = None,
        cooldown_batches: int = 0,
        refresh_batches: int = 0,
        **kwargs: Any,
    ) -> None:
        if rebase_reference and not model_name:
            raise ConfigError("rebase_reference needs model_name: whose training data is the reference?")
        for name, count in (("cooldown_batches", cooldown_batches), ("refresh_batches", refresh_batches)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {count!r}.")
        unknown = [r for r in retrain_on if r not in RETRAIN_REASONS]
        if unknown or isinstance(retrain_on, str):
            raise ConfigError(f"retrain_on must be a list of {list(RETRAIN_REASONS)}, got {retrain_on!r}.")
        if prediction_log is not None and quality is None:
            raise ConfigError("prediction_log needs quality: the metrics and threshold to judge the log by.")
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
        self.prediction_log = prediction_log
        self.baseline_metrics = baseline_metrics
        self.model_name = model_name
        self.model_alias = model_alias
        self.mlflow_conn_id = mlflow_conn_id
        self.drift_asset = drift_asset
        self.retrain_on = tuple(retrain_on)
        self.rebase_reference = rebase_reference
        self.timestamp_column = timestamp_column
        self.cooldown_batches = cooldown_batches
        self.refresh_batches = refresh_batches

    def _baseline(self) -> tuple[dict[str, Any], str, str | None]:
        """The baseline metrics, where they came from, and the version they belong to (if known)."""
        if self.baseline_metrics:
            return dict(self.baseline_metrics), "given", None
        if self.model_name:
            from airflow_mlpipe.hooks.mlflow import MlflowHook
            from airflow_mlpipe.monitoring.baseline import registry_baseline

            found = registry_baseline(MlflowHook(self.mlflow_conn_id), self.model_name, self.model_alias)
            return found["metrics"], f"{found['source']} (version {found['version']})", found["version"]
        raise ConfigError("Quality needs baseline_metrics or model_name to read the champion's metrics from.")

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.core.datasets import file_digest, read_table
        from airflow_mlpipe.monitoring.drift import run_drift_report
        from airflow_mlpipe.monitoring.quality import check_quality

        drift_cfg = DriftConfig.from_mapping(self.drift)
        quality_cfg = QualityConfig.from_mapping(self.quality)
        out_dir = task_dir(context)
        report_path = out_dir / "drift_report.html"
        push_link(context, DriftReportLink, report_url(report_path))

        current = read_table(self.current_uri)
        reference, reference_info = self._reference(current)
        extra_excluded = [quality_cfg.label_column] if quality_cfg else []
        if extra_excluded:
            drift_cfg.exclude_columns = (*drift_cfg.exclude_columns, *extra_excluded)
        snapshot, summary = run_drift_report(reference, current, drift_cfg)

        quality: dict[str, Any] | None = None
        log_cfg = PredictionLogConfig.from_mapping(self.prediction_log) if self.prediction_log else None
        if quality_cfg is not None and log_cfg is not None:
            import datetime as dt

            from airflow_mlpipe.monitoring.prediction_log import logged_quality

            baseline, source, version = self._baseline()
            now = dt.datetime.now(dt.UTC)
            quality = logged_quality(log_cfg, quality_cfg, baseline, as_of=now, model_version=version)
            quality["baseline_source"] = source
        elif quality_cfg is not None and quality_cfg.label_column in current.columns:
            baseline, source, _ = self._baseline()
            quality = check_quality(current, quality_cfg, baseline)
            quality["baseline_source"] = source
        summary["quality"] = quality
        reasons = self._reasons(summary)
        batch_start = self._batch_start(current)
        ask, held, state = self._cooldown(context, bool(reasons), reference_info.get("version"), batch_start)
        drift_since = batch_start
        if ask and not reasons:  # a refresh after an earlier drift: its window starts at that drift
            from airflow_mlpipe.monitoring.retraining import REFRESH_REASON

            reasons, drift_since = [REFRESH_REASON], state.get("drift_since")
        summary.update(
            model_name=self.model_name,
            report_uri=str(report_path),
            reference_uri=reference_info["uri"],
            reference=reference_info,
            current_uri=str(self.current_uri),
            row_counts={"reference": len(reference), "current": len(current)},
            retrain_reasons=reasons,
            retrain_recommended=ask,
            retrain_held=held,
            batch_start=batch_start,
            drift_since=drift_since if ask else None,
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
            "reference": reference_info,
            "retrain_recommended": ask,
            "drift_since": summary["drift_since"],
            "quality": _compact_quality(summary.get("quality")),
            # Tamper evidence: the audit recomputes it (airflow_mlpipe.governance.audit).
            "report_digest": file_digest(str(report_path)),
        }
        emit_asset_metadata(context, self.outlets, compact)
        if ask and self.drift_asset is not None:
            context["outlet_events"][drift_alias(self.drift_asset)].add(self.drift_asset, extra=compact)
        return summary

    def _reference(self, current: Any) -> tuple[Any, dict[str, Any]]:
        """The reference table and where it came from (configured, or the serving version's data)."""
        from airflow_mlpipe.core.datasets import read_table

        info: dict[str, Any] = {"uri": str(self.reference_uri), "source": "configured", "version": None}
        if self.model_name and (self.rebase_reference or self.cooldown_batches or self.refresh_batches):
            from airflow_mlpipe.hooks.mlflow import MlflowHook
            from airflow_mlpipe.monitoring.retraining import serving_reference

            serving = serving_reference(MlflowHook(self.mlflow_conn_id), self.model_name, self.model_alias)
            if serving is not None:
                info["version"] = serving["version"]
                if self.rebase_reference and serving["uri"]:
                    info.update(uri=serving["uri"], source="serving_training_data")
                    # training data also holds ids, timestamps and the label: compare what batches carry
                    table = read_table(serving["uri"])
                    shared = [c for c in table.columns if c in current.columns and c != serving["label"]]
                    return table[shared], info
        return read_table(info["uri"]), info

    def _cooldown(
        self, context: Context, wants: bool, serving_version: str | None, batch_start: str | None
    ) -> tuple[bool, str | None, dict[str, Any]]:
        """Whether to ask for retraining now; when held, why; the state kept for the next batch
        (it lives beside the DAG's runs)."""
        if not self.cooldown_batches and not self.refresh_batches:
            return wants, None, {}
        from airflow_mlpipe.core.storage import artifact_root, safe_segment
        from airflow_mlpipe.monitoring.retraining import cooldown_decision

        path = artifact_root() / safe_segment(context["ti"].dag_id) / "retrain_state.json"
        state = json.loads(path.read_text()) if path.exists() else None
        ask, state, note = cooldown_decision(
            state,
            serving_version,
            wants,
            self.cooldown_batches,
            refresh_batches=self.refresh_batches,
            batch_start=batch_start,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state))
        self.log.info("Retraining: %s", note)
        return ask, None if ask or not wants else note, state

    def _batch_start(self, current: Any) -> str | None:
        if not self.timestamp_column:
            return None
        if self.timestamp_column not in current.columns:
            # A retraining request then carries no drift start: its training window is not cut.
            self.log.warning(
                "timestamp_column %r is not a column of the batch (%s): the batch start is unknown",
                self.timestamp_column,
                list(current.columns),
            )
            return None
        from airflow_mlpipe.features.training_set import time_range

        found = time_range(current, self.timestamp_column)
        return found["start"] if found else None

    def _reasons(self, summary: Mapping[str, Any]) -> list[str]:
        found = {
            "data_drift": bool(summary["drift_detected"]),
            "prediction_drift": bool((summary.get("prediction_drift") or {}).get("drifted")),
            "quality": bool((summary.get("quality") or {}).get("degraded")),
        }
        return [r for r in self.retrain_on if found[r]]


def _compact_quality(quality: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the asset event (and so the lineage of a retraining) records of the quality check."""
    if not quality:
        return None
    return {
        "judged": quality.get("judged"),
        "degraded": quality.get("degraded"),
        "labelled_rows": quality.get("labelled_rows"),
        "source": quality.get("source", "batch"),
        "model_version": quality.get("model_version"),
        "metrics": {
            name: {k: m.get(k) for k in ("live", "baseline", "degradation")}
            for name, m in (quality.get("metrics") or {}).items()
        },
    }
