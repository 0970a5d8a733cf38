"""The serving model's quality on drifted data, before and after the retraining, from served scores.

The demo knows the labels of the drifted data it generates. It sends those rows to the served
``/predict`` API while the first champion serves and again once the retrained version serves, and
computes the pipeline's own metric (``training.search.metric`` of the config, ROC AUC by default)
from the returned class probabilities with :func:`airflow_mlpipe.core.metrics.compute`, the function
training and the gate use. Two sets of rows:

* the drifted batch that lands and starts the retraining — the new version learned from most of
  these rows, so its number there is partly in-sample;
* the drifted day after it, which the demo never lands: drifted data neither version saw, the
  honest before/after comparison.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from airflow_mlpipe.core import metrics

#: rows per ``/predict`` request
CHUNK = 250


class QualityProbe:
    """Measures served quality on labelled row sets; see the module docstring."""

    def __init__(self, metric: str, task_type: str, sets: dict[str, tuple[list[dict[str, Any]], list[Any]]]):
        """:param sets: name → (request rows, labels), the rows without entity keys and timestamps."""
        metrics.check_metric(task_type, metric)
        self.metric = metric
        self.task_type = task_type
        self.sets = sets
        self.measured: dict[str, dict[str, Any]] = {
            name: {"rows": len(rows)} for name, (rows, _) in sets.items()
        }

    @classmethod
    def for_churn(cls, spec: Any, dags_folder: Path) -> QualityProbe:
        """The landed drifted batch (``spec.drift_day``) and the unseen drifted day after it."""
        from airflow_mlpipe.config.pipeline import PipelineConfig
        from mlpipe_dev import churn_data as churn

        config = PipelineConfig.from_yaml(Path(dags_folder) / "config" / "churn.yaml")
        search = (config.training.search if config.training else None) or {}
        sets = {}
        for index, name in ((spec.drift_day, "drifted batch"), (spec.drift_day + 1, "unseen drifted day")):
            features, labels = churn.generate_day(spec, index)
            rows = json.loads(
                features.drop(columns=[churn.ENTITY, churn.TIMESTAMP]).to_json(orient="records")
            )
            sets[f"{name} {spec.day(index).isoformat()}"] = (rows, labels[churn.LABEL].tolist())
        return cls(str(search.get("metric") or "roc_auc"), "classification", sets)

    def measure(self, when: str, endpoint: str) -> None:
        """Score every set on ``endpoint`` and keep the metric (and the answering version) as ``when``."""
        from airflow_mlpipe.monitoring.quality import served_predictions

        for name, (rows, labels) in self.sets.items():
            answers = [predict(endpoint, rows[i : i + CHUNK]) for i in range(0, len(rows), CHUNK)]
            values = metrics.compute(self.task_type, labels, served_predictions(answers), only=[self.metric])
            self.measured[name][when] = values.get(self.metric)
            self.measured[name][f"{when}_version"] = sorted({str(a.get("model_version")) for a in answers})
            if values.unavailable:
                self.measured[name][f"{when}_unavailable"] = values.unavailable

    def result(self) -> dict[str, Any]:
        return {"metric": self.metric, "sets": self.measured}

    @staticmethod
    def summary_lines(quality: dict[str, Any]) -> list[str]:
        if not quality:
            return ["  served quality        : not measured"]
        lines = [f"  served {quality['metric']} before → after retraining (from served scores):"]
        for name, m in quality["sets"].items():
            before, after = m.get("before"), m.get("after")
            shown = " → ".join("-" if v is None else f"{v:.3f}" for v in (before, after))
            versions = "/".join(",".join(m.get(f"{w}_version", ["-"])) for w in ("before", "after"))
            lines.append(f"    {name:<32} {shown}  (v{versions}, {m['rows']} labelled rows)")
        return lines


def predict(endpoint: str, rows: list[dict[str, Any]], timeout: float = 60) -> dict[str, Any]:
    """``POST <endpoint>/predict`` with ``{"rows": rows}``; the served answer."""
    req = urllib.request.Request(
        f"{endpoint.rstrip('/')}/predict",
        data=json.dumps({"rows": rows}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return dict(json.loads(resp.read()))
