"""The stages' heavy libraries, imported once in a process that task processes are forked from.

A task of the pipeline imports Great Expectations, Feast, MLflow, scikit-learn, Evidently or
BentoML: 5–20 s each on a small machine, paid by every task in a fresh process. Imported before the
executor forks, they cost once per worker start. DAG parsing is not affected: the DAG processor
never imports them (``tests/unit/test_import_cost.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import MissingDependencyError

#: Airflow config section and option naming the modules (comma-separated; empty: preload nothing)
SECTION, OPTION = "mlpipe", "preload_modules"
#: the libraries the provider's tasks import, in dependency order (pandas before its users); also
#: the value for ``[scheduler] mp_forkserver_preload`` with LocalExecutor (:func:`forkserver_settings`)
DEFAULT_MODULES = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.metrics",
    "mlflow",
    "mlflow.sklearn",
    "great_expectations",
    "feast",
    "evidently",
    "bentoml",
)

log = logging.getLogger(__name__)


def forkserver_settings(modules: Iterable[str] = DEFAULT_MODULES) -> dict[str, str]:
    """Airflow's own settings (as environment variables) that start LocalExecutor workers from a
    forkserver which imported ``modules``: the scheduler stays light, every worker and every task
    process forked from one has them."""
    return {
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(modules),
    }


def configured_modules() -> list[str]:
    """The modules a Celery worker preloads (:mod:`.celery`): ``[mlpipe] preload_modules`` (env
    ``AIRFLOW__MLPIPE__PRELOAD_MODULES``), :data:`DEFAULT_MODULES` when the option is not set."""
    from airflow.configuration import conf

    raw = conf.get(SECTION, OPTION, fallback=None)
    if raw is None:
        return list(DEFAULT_MODULES)
    return [name.strip() for name in raw.split(",") if name.strip()]


def preload(modules: Iterable[str]) -> dict[str, float]:
    """Import ``modules``; return the seconds each import took.

    A module that is not installed is skipped (its extra is not installed: no task needs it), and
    one that fails to import is logged and skipped: the task that needs it imports it itself and
    fails there, with its own error.
    """
    took: dict[str, float] = {}
    for name in modules:
        started = time.perf_counter()
        try:
            require(name)
        except MissingDependencyError:
            log.info("preload: %s is not installed; skipped", name)
            continue
        except Exception as exc:  # a broken library must not stop the executor
            log.warning(
                "preload: importing %s failed (%s: %s); tasks import it themselves",
                name,
                type(exc).__name__,
                exc,
            )
            continue
        took[name] = round(time.perf_counter() - started, 3)
    if took:
        log.info("preload: imported %s in %.1f s", ", ".join(took), sum(took.values()))
    return took
