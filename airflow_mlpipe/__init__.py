"""airflow-mlpipe: ML pipeline building blocks for Apache Airflow."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    # The version lives once, in pyproject.toml; the installed distribution reports it.
    __version__ = version("airflow-mlpipe")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
