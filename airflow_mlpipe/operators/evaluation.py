"""Evaluation gate and promotion operators (MLflow registry).

``EvaluationGateOperator`` blesses or blocks the ``challenger``: a blocked model pushes its summary
to XCom and then skips (so downstream deployment is *skipped*, not failed, and the champion never
moves). ``PromoteModelOperator`` moves ``champion`` to the blessed version under a registry lock.
:func:`airflow_mlpipe.operators.approval.add_human_approval` puts Airflow's own
``ApprovalOperator`` between the two.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlpipe.config.evaluation import GateConfig
from airflow_mlpipe.core.conventions import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    ALIAS_PREVIOUS,
    TAG_BLESSED,
    TAG_CRITERION_PREFIX,
    TAG_GATE_METRIC_PREFIX,
    TAG_GATE_MODEL_NAME,
    TAG_GATE_PREFIX,
)
from airflow_mlpipe.core.links import report_url
from airflow_mlpipe.core.registry import delete_tags, get_version, set_tags
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.core.storage import local_path
from airflow_mlpipe.hooks.mlflow import MlflowHook
from airflow_mlpipe.operators._context import XComLink, airflow_ids, emit_asset_metadata, push_link, task_dir
from airflow_mlpipe.operators._results import push_then_raise
from airflow_mlpipe.operators.governance import AuditReportLink, push_audit_link

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlpipe.evaluation.gate import GateOutcome

REPORT_NAME = "evaluation_report.html"


class EvaluationReportLink(XComLink):
    """Extra link to the gate's rendered HTML report, served by the provider's UI plugin."""

    link_name = "Evaluation report"
    key = "mlpipe_evaluation_report"


class EvaluationGateOperator(BaseOperator):
    """Evaluate ``challenger`` and ``champion`` on one holdout and bless or block the challenger.

    Pushes the gate summary (``blessed``, metrics of both models, every criterion with observed
    value, threshold and reason, ``report_uri``) to XCom, tags the challenger's model version
    (``mlpipe.gate.blessed`` and one ``mlpipe.gate.criterion.<name>`` tag per criterion), logs the
    report to an MLflow evaluation run and, when blessed, attaches the summary to the outlet asset
    events. When not blessed it raises ``AirflowSkipException`` after pushing the summary.

    :param model_name: registered model name.
    :param holdout_uri: parquet/CSV holdout dataset with the label (and slice) columns.
    :param config: :class:`~airflow_mlpipe.config.evaluation.GateConfig`, its dict, a list of
        criteria, YAML text or a YAML file path.
    :param challenger_version: evaluate this version (e.g. templated from the training XCom);
        default: the version a directly upstream training task (or a search's ``register_best``)
        registered, read from its XCom; without such a task, the version behind
        ``challenger_alias``. Upstream tasks that registered different versions are a ConfigError.
    :param model_task_type: overrides the config and the model's ``mlpipe.task_type`` tag.
    :param label_column: overrides the config and the model's ``mlpipe.label`` tag.
    :param experiment_name: MLflow experiment of the evaluation runs (default ``<model>-evaluation``).
    :param trust_model_artifacts: allow MLflow to deserialize the registry's models (they come from
        this pipeline's training stage); see ``airflow_mlpipe.core.registry``.
    :param skip_when_blocked: raise ``AirflowSkipException`` when not blessed (default); with
        ``False`` the task succeeds and returns ``blessed: false``.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "holdout_uri",
        "config",
        "challenger_version",
        "challenger_alias",
        "champion_alias",
        "model_task_type",
        "label_column",
        "experiment_name",
        "mlflow_conn_id",
    )
    template_fields_renderers = {"config": "json"}
    operator_extra_links = (EvaluationReportLink(), AuditReportLink())
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        model_name: str,
        holdout_uri: str,
        config: GateConfig | Mapping[str, Any] | Sequence[Any] | str,
        challenger_version: str | None = None,
        challenger_alias: str = ALIAS_CHALLENGER,
        champion_alias: str = ALIAS_CHAMPION,
        model_task_type: str | None = None,
        label_column: str | None = None,
        experiment_name: str | None = None,
        trust_model_artifacts: bool = True,
        skip_when_blocked: bool = True,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.holdout_uri = holdout_uri
        # Dicts and YAML stay as given so they can be templated; a GateConfig is validated already.
        self.config = config.to_dict() if isinstance(config, GateConfig) else config
        self.challenger_version = challenger_version
        self.challenger_alias = challenger_alias
        self.champion_alias = champion_alias
        self.model_task_type = model_task_type
        self.label_column = label_column
        self.experiment_name = experiment_name
        self.trust_model_artifacts = trust_model_artifacts
        self.skip_when_blocked = skip_when_blocked
        self.mlflow_conn_id = mlflow_conn_id

    def gate_config(self) -> GateConfig:
        config = GateConfig.from_mapping(self.config)
        if self.model_task_type:
            config = dataclasses.replace(config, task_type=self.model_task_type)
        if self.label_column:
            config = dataclasses.replace(config, label=self.label_column)
        return config

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlpipe.evaluation.gate import evaluate

        config = self.gate_config()  # bad configuration fails before anything is written
        hook = MlflowHook(self.mlflow_conn_id)
        report_path = task_dir(context) / REPORT_NAME
        with hook.activate():
            client = hook.get_client()
            exp_id = hook.get_or_create_experiment(self.experiment_name or f"{self.model_name}-evaluation")
            run = client.create_run(
                exp_id,
                run_name=f"gate {self.model_name}",
                tags={**airflow_ids(context), TAG_GATE_MODEL_NAME: self.model_name},
            )
            run_id = run.info.run_id
            push_link(context, EvaluationReportLink, report_url(report_path))
            try:
                outcome = evaluate(
                    client,
                    model_name=self.model_name,
                    holdout_uri=self.holdout_uri,
                    config=config,
                    challenger_version=self._challenger_version(context),
                    challenger_alias=self.challenger_alias,
                    champion_alias=self.champion_alias,
                    trusted=self.trust_model_artifacts,
                )
                push_audit_link(context, self.model_name, outcome.challenger_version)
                summary = outcome.summary(str(report_path))
                summary["evaluation_run_id"] = run_id
                self._record(client, run_id, outcome, summary, report_path)
            except BaseException:
                client.set_terminated(run_id, "FAILED")
                raise
            client.set_terminated(run_id, "FINISHED")
        summary = jsonable(summary)
        if outcome.blessed:
            self.log.info("BLESSED %s v%s", self.model_name, outcome.challenger_version)
            emit_asset_metadata(context, self.outlets, _asset_extra(summary))
            return summary
        reasons = "\n  ".join(summary["reasons"])
        self.log.warning("NOT BLESSED %s v%s:\n  %s", self.model_name, outcome.challenger_version, reasons)
        if not self.skip_when_blocked:
            return summary
        push_then_raise(
            context,
            summary,
            AirflowSkipException(
                f"{self.model_name} v{outcome.challenger_version} is not blessed; "
                f"{len(summary['reasons'])} criterion check(s) failed: {'; '.join(summary['reasons'])}"
            ),
        )

    def _challenger_version(self, context: Context) -> str | None:
        """The given version, else the one an upstream training task registered, else ``None`` (alias)."""
        from airflow_mlpipe.evaluation.gate import upstream_challenger

        if self.challenger_version:
            return str(self.challenger_version)
        ti = context["ti"]
        results = {}
        for task_id in sorted(self.upstream_task_ids):
            result = ti.xcom_pull(task_ids=task_id)
            # a mapped task's results come as a lazy sequence
            is_many = isinstance(result, Sequence) and not isinstance(result, (str, bytes))
            results[task_id] = list(result) if is_many else result
        found = upstream_challenger(self.model_name, results)
        if found is None:
            self.log.info(
                "No upstream task registered a version: evaluating alias %r.", self.challenger_alias
            )
            return None
        self.log.info("Evaluating v%s, registered by upstream task %s.", *found)
        return found[0]

    def _record(
        self, client: Any, run_id: str, outcome: GateOutcome, summary: dict[str, Any], report_path: Any
    ) -> None:
        """Write the report, log the evaluation run and tag the challenger's model version."""
        from airflow_mlpipe.evaluation.report import render
        from airflow_mlpipe.governance.records import gate_tags

        document = render(outcome)
        with tempfile.TemporaryDirectory(prefix="mlpipe-gate-") as tmp:
            with open(os.path.join(tmp, REPORT_NAME), "w", encoding="utf-8") as fh:
                fh.write(document)
            with open(os.path.join(tmp, "gate_summary.json"), "w", encoding="utf-8") as fh:
                json.dump(
                    jsonable({**summary, "criteria_details": [r.as_dict() for r in outcome.results]}),
                    fh,
                    indent=2,
                )
            client.log_artifacts(run_id, tmp, "evaluation")
        local = local_path(report_path)
        if local is not None:  # atomic: a reader never sees half a report
            tmp_file = f"{local}.tmp-{os.getpid()}"
            with open(tmp_file, "w", encoding="utf-8") as fh:
                fh.write(document)
            os.replace(tmp_file, local)
        else:
            with report_path.open("w") as fh:
                fh.write(document)

        from mlflow.entities import Metric, Param

        metrics = [
            Metric(f"{role}.{name}", float(value), 0, 0)
            for role, values in summary["metrics"].items()
            for name, value in (values or {}).items()
            if value is not None
        ] + [Metric(f"criterion.{r.name}.passed", float(r.passed), 0, 0) for r in outcome.results]
        params = [
            Param("model_name", outcome.model_name),
            Param("challenger_version", outcome.challenger_version),
            Param("champion_version", str(outcome.champion_version)),
            Param("holdout_uri", outcome.holdout_uri[:6000]),
            Param("blessed", str(outcome.blessed).lower()),
        ]
        client.log_batch(run_id, metrics=metrics, params=params)

        name, version = outcome.model_name, outcome.challenger_version
        blessed = "true" if outcome.blessed else "false"
        if not outcome.blessed:  # never leave a stale "true" behind if a later write fails
            set_tags(client, name, version, {TAG_BLESSED: blessed})
        stale = [
            k
            for k in (get_version(client, name, version=version).tags or {})
            if k.startswith(TAG_CRITERION_PREFIX)
            and k[len(TAG_CRITERION_PREFIX) :] not in {r.name for r in outcome.results}
        ]
        delete_tags(client, name, version, stale)
        fields = ("kind", "metric", "observed", "threshold", "op", "passed")
        set_tags(
            client,
            name,
            version,
            {
                TAG_CRITERION_PREFIX + r.name: json.dumps(jsonable({f: getattr(r, f) for f in fields}))
                for r in outcome.results
            },
        )
        metrics_judged = outcome.evidence.challenger.metrics.values
        record_of_gate = {
            "run_id": run_id,
            "report_uri": str(report_path),
            "champion_version": str(outcome.champion_version or ""),
            "holdout_uri": outcome.holdout_uri,
        }
        set_tags(
            client,
            name,
            version,
            {TAG_GATE_METRIC_PREFIX + metric: repr(float(value)) for metric, value in metrics_judged.items()}
            | {TAG_GATE_PREFIX + key: text for key, text in record_of_gate.items()}
            | gate_tags(name, outcome.holdout_uri, str(report_path)),
        )
        if outcome.blessed:
            set_tags(client, name, version, {TAG_BLESSED: blessed})


def _asset_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "model_name": summary["model_name"],
        "version": summary["challenger_version"],
        "model_uri": f"models:/{summary['model_name']}/{summary['challenger_version']}",
        "blessed": summary["blessed"],
        "champion_version": summary["champion_version"],
        "metrics": summary["metrics"]["challenger"],
        "report_uri": summary["report_uri"],
    }


class PromoteModelOperator(BaseOperator):
    """Make a blessed version the ``champion``; the former champion becomes ``previous``.

    Safe against concurrent promotions from different DAGs (registry-level lock, aliases verified
    after writing) and idempotent (promoting the champion again is a ``noop``).

    :param model_name: registered model name.
    :param version: version to promote; default: the gate's XCom (``gate_task_id``), else the
        version behind the ``challenger`` alias.
    :param gate_task_id: task id of the :class:`EvaluationGateOperator` to take the version from.
    :param require_blessed: refuse versions without ``mlpipe.gate.blessed=true``.
    :param lock_ttl: seconds after which an abandoned promotion lock is broken.
    :param lock_timeout: seconds to wait for a concurrent promotion to finish.
    :param as_candidate: only nominate the version (alias ``candidate``); a deployment with
        ``promote=True`` makes it champion once it serves. The factories set this when the
        pipeline deploys.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "version",
        "gate_task_id",
        "champion_alias",
        "previous_alias",
        "challenger_alias",
        "mlflow_conn_id",
    )
    ui_color = "#e4ffe9"

    def __init__(
        self,
        *,
        model_name: str,
        version: str | None = None,
        gate_task_id: str | None = None,
        require_blessed: bool = True,
        champion_alias: str = ALIAS_CHAMPION,
        previous_alias: str = ALIAS_PREVIOUS,
        challenger_alias: str = ALIAS_CHALLENGER,
        lock_ttl: float = 300.0,
        lock_timeout: float = 120.0,
        as_candidate: bool = False,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.as_candidate = as_candidate
        self.version = version
        self.gate_task_id = gate_task_id
        self.require_blessed = require_blessed
        self.champion_alias = champion_alias
        self.previous_alias = previous_alias
        self.challenger_alias = challenger_alias
        self.lock_ttl = lock_ttl
        self.lock_timeout = lock_timeout
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlpipe.core.registry import version_by_alias
        from airflow_mlpipe.evaluation.promotion import nominate, promote
        from airflow_mlpipe.exceptions import DataError

        version = str(self.version) if self.version else None
        if version is None and self.gate_task_id:
            gate = context["ti"].xcom_pull(task_ids=self.gate_task_id) or {}
            if gate and not gate.get("blessed"):
                raise AirflowSkipException(f"The gate {self.gate_task_id!r} did not bless the challenger.")
            version = gate.get("challenger_version")
        hook = MlflowHook(self.mlflow_conn_id)
        with hook.activate():
            client = hook.get_client()
            version = version or version_by_alias(client, self.model_name, self.challenger_alias)
            if not version:
                raise DataError(
                    f"Nothing to promote: {self.model_name!r} has no {self.challenger_alias!r} alias."
                )
            if self.as_candidate:
                result = nominate(client, self.model_name, str(version), require_blessed=self.require_blessed)
                self.log.info(
                    "%s v%s is the candidate; champion moves once it serves", self.model_name, version
                )
                emit_asset_metadata(context, self.outlets, result)
                return result
            result = promote(
                client,
                self.model_name,
                str(version),
                require_blessed=self.require_blessed,
                champion_alias=self.champion_alias,
                previous_alias=self.previous_alias,
                lock_ttl=self.lock_ttl,
                lock_timeout=self.lock_timeout,
            ).as_dict()
        self.log.info(
            "%s: %s v%s is champion (previous: %s)",
            result["status"],
            self.model_name,
            version,
            result["previous_version"],
        )
        emit_asset_metadata(context, self.outlets, result)
        return result
