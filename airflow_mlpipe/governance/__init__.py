"""Governance: content-addressed snapshots, reproduction of registered versions, audit reports.

* :mod:`~airflow_mlpipe.governance.snapshots` — the training set and holdout of every version kept
  under the artifact root by digest, and their retention;
* :mod:`~airflow_mlpipe.governance.records` — what the training and gate stages record for a
  reproduction, and the digests that make later edits detectable;
* :mod:`~airflow_mlpipe.governance.audit` / :mod:`~airflow_mlpipe.governance.html` — one report
  per version (JSON and self-contained HTML).

Reproducing a version re-runs the training stage, so it lives there
(:mod:`~airflow_mlpipe.training.reproduce`); training writes the governance records, never the
other way round.

Nothing here imports a heavy library at module level.
"""
