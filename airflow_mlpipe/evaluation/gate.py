"""The gate itself: score challenger and champion on one holdout, judge the criteria, decide."""

from __future__ import annotations

import dataclasses
from typing import Any

from airflow_mlpipe.config.evaluation import GateConfig, SliceCriterion
from airflow_mlpipe.core.conventions import ALIAS_CHALLENGER, ALIAS_CHAMPION, TaskType
from airflow_mlpipe.core.datasets import read_table
from airflow_mlpipe.core.metrics import compute, predict
from airflow_mlpipe.core.registry import LoadedModel, load_version, version_by_alias
from airflow_mlpipe.evaluation.criteria import CriterionResult, Evidence, Scored, judge
from airflow_mlpipe.evaluation.holdout import check_holdout, task_type_and_label
from airflow_mlpipe.exceptions import ConfigError, DataError


def upstream_challenger(model_name: str, results: dict[str, Any]) -> tuple[str, str] | None:
    """The version of ``model_name`` that the gate's upstream tasks registered, and which task did.

    :param results: upstream task id -> its XCom ``return_value``. A training result names the
        ``model_name`` and the ``version`` it registered (a search's ``register_best`` too); other
        results, and unregistered search candidates, are passed over.
    :returns: ``(version, task_id)``, or ``None`` when no upstream task registered a version.
    :raises ConfigError: upstream tasks registered different versions: the gate cannot choose.
    """
    found: dict[str, str] = {}
    for task_id, result in results.items():
        items = result if isinstance(result, list) else [result]
        for item in items:
            if isinstance(item, dict) and item.get("model_name") == model_name and item.get("version"):
                found.setdefault(str(item["version"]), task_id)
    if len(found) > 1:
        listed = ", ".join(f"v{v} from {t}" for v, t in sorted(found.items()))
        raise ConfigError(
            f"The gate's upstream tasks registered several versions of {model_name!r} ({listed}); "
            "name the one to evaluate with challenger_version (e.g. "
            "\"{{ ti.xcom_pull(task_ids='<task>')['version'] }}\")."
        )
    return next(iter(found.items()), None)


@dataclasses.dataclass
class GateOutcome:
    """The decision with everything needed to record it and to draw the report."""

    blessed: bool
    model_name: str
    challenger_version: str
    champion_version: str | None
    task_type: str
    label: str
    holdout_uri: str
    results: list[CriterionResult]
    evidence: Evidence

    @property
    def failed(self) -> list[CriterionResult]:
        return [r for r in self.results if not r.passed]

    def metrics(self) -> dict[str, Any]:
        ev = self.evidence
        return {
            "challenger": dict(ev.challenger.metrics.values),
            "champion": dict(ev.champion.metrics.values) if ev.champion is not None else None,
        }

    def summary(self, report_uri: str) -> dict[str, Any]:
        """The gate's XCom value (see docs/stages/evaluation.md)."""
        ev = self.evidence
        return {
            "blessed": self.blessed,
            "model_name": self.model_name,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "task_type": self.task_type,
            "label": self.label,
            "holdout_uri": self.holdout_uri,
            "row_count": len(ev.frame),
            "metrics": self.metrics(),
            "unavailable_metrics": {
                "challenger": dict(ev.challenger.metrics.unavailable),
                "champion": dict(ev.champion.metrics.unavailable) if ev.champion is not None else None,
            },
            "champion_note": ev.champion_note or None,
            "criteria": [{k: v for k, v in r.as_dict().items() if k != "details"} for r in self.results],
            "reasons": [f"{r.name}: {r.reason}" for r in self.failed],
            "report_uri": report_uri,
        }


def _score(model: LoadedModel, frame: Any, y_true: Any, task_type: str, positive_label: Any) -> Scored:
    preds = predict(model.model, frame[model.features], task_type)
    return Scored(model.version, preds, compute(task_type, y_true, preds, positive_label=positive_label))


def _labels(frame: Any, label: str, task_type: str, uri: str) -> Any:
    series = frame[label]
    missing = int(series.isna().sum())
    if missing:
        raise DataError(f"Label column {label!r} of holdout {uri} has {missing} missing value(s).")
    if TaskType.parse(task_type) is TaskType.REGRESSION and series.dtype.kind not in "fiub":
        raise DataError(
            f"Label column {label!r} of holdout {uri} is {series.dtype}, a regression label must be numeric."
        )
    return series.to_numpy()


def evaluate(
    client: Any,
    *,
    model_name: str,
    holdout_uri: str,
    config: GateConfig,
    challenger_version: str | None = None,
    challenger_alias: str = ALIAS_CHALLENGER,
    champion_alias: str = ALIAS_CHAMPION,
    trusted: bool = True,
) -> GateOutcome:
    """Evaluate the challenger (and the champion) on ``holdout_uri`` and judge ``config``.

    Must run inside ``MlflowHook.activate()`` (models are loaded through ``models:/`` URIs).

    :raises DataError: no challenger, holdout unreadable or missing label/slice/feature columns,
        a holdout that does not match a model's signature.
    :raises ConfigError: unknown task type, metric not defined for the task type, bad KPI function.
    """
    version = challenger_version or version_by_alias(client, model_name, challenger_alias)
    if not version:
        raise DataError(
            f"Registered model {model_name!r} has no version with alias {challenger_alias!r}; "
            "train and register a challenger first (or pass challenger_version)."
        )
    challenger = load_version(client, model_name, version=str(version), trusted=trusted)
    task_type, label = task_type_and_label(challenger, config.task_type, config.label)
    task_type = TaskType.parse(task_type).value
    config.check_task_type(task_type)

    frame = read_table(holdout_uri)
    needed = {label: "label"} | {c.column: "slice" for c in config.criteria if isinstance(c, SliceCriterion)}
    absent = [f"{role} column {col!r}" for col, role in needed.items() if col not in frame.columns]
    if absent:
        raise DataError(f"Holdout {holdout_uri} lacks the {', '.join(absent)}; it has {list(frame.columns)}.")
    check_holdout(frame, challenger, "challenger")
    y_true = _labels(frame, label, task_type, holdout_uri)

    champion: LoadedModel | None = None
    champion_version: str | None = None  # the version behind the champion alias, even when not compared
    note = ""
    if not config.compare_to_champion:
        note = "comparison with the champion is turned off (compare_to_champion=false)"
    else:
        champ_version = version_by_alias(client, model_name, champion_alias)
        champion_version = champ_version
        if champ_version is None:
            note = f"no champion yet: {model_name!r} has no {champion_alias!r} alias, nothing to compare with"
        elif champ_version == challenger.version:
            note = f"the challenger v{champ_version} already is the champion"
        else:
            champion = load_version(client, model_name, version=champ_version, trusted=trusted)
            check_holdout(frame, champion, "champion")

    ev = Evidence(
        task_type=task_type,
        frame=frame,
        y_true=y_true,
        challenger=_score(challenger, frame, y_true, task_type, config.positive_label),
        champion=_score(champion, frame, y_true, task_type, config.positive_label) if champion else None,
        champion_note=note,
        positive_label=config.positive_label,
    )
    results = judge(config.criteria, ev)
    return GateOutcome(
        blessed=all(r.passed for r in results),
        model_name=model_name,
        challenger_version=challenger.version,
        champion_version=champion_version,
        task_type=task_type,
        label=label,
        holdout_uri=holdout_uri,
        results=results,
        evidence=ev,
    )
