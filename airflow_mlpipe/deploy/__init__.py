"""Deployment logic (BentoML bentos, local serving targets, rollout, batch scoring).

The operators in :mod:`airflow_mlpipe.operators.bentoml` are thin wrappers around these modules.
Nothing here imports a heavy library at module level.
"""
