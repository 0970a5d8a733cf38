"""Importing the stages' libraries works in any process, also one whose ``__main__`` has no file.

``python -c``, a multiprocessing forkserver (the LocalExecutor's preload) and the benchmarks' child
scripts run so. With pyspark installed but not Spark Connect's dependencies, importing
``great_expectations`` (which imports ``pyspark.sql.connect`` when pyspark is there) ended such a
process with ``sys.exit(0)`` and printed only "Skipping doctests": the ``spark`` extra installs
``pyspark[connect]``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_mlpipe.executors.preload import DEFAULT_MODULES


@pytest.mark.parametrize("module", DEFAULT_MODULES)
def test_a_library_imports_in_a_process_without_a_main_file(module):
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}; print('imported')"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("imported"), (
        done.stdout,
        done.stderr[-2000:],
    )
