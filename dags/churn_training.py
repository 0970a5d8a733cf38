"""Churn training: validate the batches, build a point-in-time training set with Feast, train
candidates in parallel, gate against the champion, promote, deploy.

Built by the training factory from ``config/churn.yaml``; see docs/concepts/patterns.md.
"""

from __future__ import annotations

from pathlib import Path

from airflow_mlpipe.factories.pipelines import training_dag

dag = training_dag(Path(__file__).parent / "config" / "churn.yaml")
