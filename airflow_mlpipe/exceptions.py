"""The provider's exception hierarchy.

Every error the provider raises on purpose derives from :class:`MlpipeError`, so DAG authors can
catch the provider's errors without catching everything. Configuration and data errors are also
``ValueError`` so that generic code treating bad input as ``ValueError`` keeps working.
"""

from __future__ import annotations


class MlpipeError(Exception):
    """Base class of every error raised on purpose by airflow-mlpipe."""


class ConfigError(MlpipeError, ValueError):
    """A configuration object or operator argument is invalid; the message says what to change."""


class DataError(MlpipeError, ValueError):
    """Input data is missing, unreadable, empty or of the wrong shape."""


class MissingDependencyError(MlpipeError, ImportError):
    """An optional dependency of a stage is not installed; the message gives the pip command."""


class QualityGateFailed(MlpipeError):
    """A gate (data validation, evaluation) decided the input must not move on.

    :param summary: the JSON-serialisable summary that was also pushed to XCom.
    """

    def __init__(self, message: str, summary: dict | None = None) -> None:
        super().__init__(message)
        self.summary = summary or {}
