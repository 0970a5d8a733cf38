"""Task processes that start with the stages' libraries already imported.

Airflow 3 runs each task in a process forked from an executor worker. A module imported before that
fork is in every task process for free, instead of costing each task its import (5–20 s for Great
Expectations, Feast, MLflow or Evidently on a small machine):

- LocalExecutor: Airflow's own settings, ``[scheduler] mp_start_method = forkserver`` and
  ``[scheduler] mp_forkserver_preload = <modules>`` (the workers are forked from a forkserver that
  imported them); :data:`.preload.DEFAULT_MODULES` is the list for the provider's stages.
- CeleryExecutor: :mod:`.celery`, Airflow's Celery configuration plus a worker that imports
  ``[mlpipe] preload_modules`` before its pool forks (Celery's pool is not Python's
  ``multiprocessing``, so the settings above do not reach it).

See docs/howto/production.md, "Task start-up".
"""
