"""Task logs say what the stage did: library chatter is silenced where it starts, narrowly.

* Great Expectations logs an INFO line for each public-API function it registers while it is
  imported (about 200 lines of "Skipping registering …"): that one logger is held at WARNING.
* skops, when it saves or loads a model, looks objects up in every loaded module; in a task each
  of Airflow's deprecated module aliases answers with a ``DeprecatedImportWarning`` (about 1,160
  lines on a task's first model load). :func:`library_output` ignores those warnings, and only
  those raised by that lookup.
* MLflow writes its log records to stderr through a handler of its own, which a task log shows
  at ERROR, and draws progress bars there: inside :func:`library_output` its records go through
  the task's logging at their own level, the lines it prints there itself ("Created version '3'
  of model …") are logged at INFO instead, and the hook turns the progress bars off
  (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``, unless set).

Every other warning and log record of these libraries still shows.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator

#: loggers that report on a library's own workings while it is imported -> the lowest level kept
_IMPORT_CHATTER = {"great_expectations": {"great_expectations._docs_decorators": logging.WARNING}}
#: where skops looks objects up in every loaded module (``skops.io._utils.whichmodule``)
_SKOPS_MODULE_SCAN = r"skops\.io\._utils"


def before_import(top_level: str) -> None:
    """Quiet the loggers a library chatters on while it is imported (call before importing it)."""
    for name, level in _IMPORT_CHATTER.get(top_level, {}).items():
        logger = logging.getLogger(name)
        if logger.level < level:
            logger.setLevel(level)


@contextlib.contextmanager
def library_output() -> Iterator[None]:
    """Inside the block: no deprecation warnings from skops's module scan, and MLflow's log records
    go to the task's own logging at their level instead of MLflow's stderr handler."""
    mlflow_logger = logging.getLogger("mlflow")
    saved = (list(mlflow_logger.handlers), mlflow_logger.propagate)
    # The stream MLflow prints to (``eprint``) when MLflow is imported already. Its on/off switch is
    # no help: MLflow turns it back on while saving a model.
    stream = getattr(sys.modules.get("mlflow.utils.logging_utils"), "MLFLOW_LOGGING_STREAM", None)
    own_write = None if stream is None else vars(stream).get("write")
    with warnings.catch_warnings():
        # Airflow's DeprecatedImportWarning is a FutureWarning; core does not import Airflow.
        warnings.filterwarnings("ignore", category=FutureWarning, module=_SKOPS_MODULE_SCAN)
        mlflow_logger.handlers, mlflow_logger.propagate = [], True
        if stream is not None:
            stream.write = _log_printed
        try:
            yield
        finally:
            mlflow_logger.handlers, mlflow_logger.propagate = saved
            if stream is not None:
                if own_write is None:
                    del stream.write  # the class's method shows through again
                else:
                    stream.write = own_write


def _log_printed(text: str) -> None:
    if text.strip():
        logging.getLogger("mlflow").info("%s", text.strip())
