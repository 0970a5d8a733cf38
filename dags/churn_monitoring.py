"""Churn monitoring: each new daily batch is claimed, validated and checked for drift; drift asks
for retraining (the training DAG is scheduled on the drift asset).

Built by the monitoring factory from ``config/churn.yaml``; see docs/concepts/patterns.md.
"""

from __future__ import annotations

from pathlib import Path

from airflow_mlpipe.factories.pipelines import monitoring_dag

dag = monitoring_dag(Path(__file__).parent / "config" / "churn.yaml")
