"""Names every stage agrees on: registry aliases, MLflow tag keys, task types, XCom keys.

Stages hand each other *names* (model name, version, alias, URIs) through XCom and record their
provenance as MLflow tags with the keys below, so lineage can be read back from the registry alone.
"""

from __future__ import annotations

import enum

# Registry aliases (MLflow model version aliases; the deprecated stages are never used).
ALIAS_CHALLENGER = "challenger"
ALIAS_CHAMPION = "champion"
ALIAS_PREVIOUS = "previous"
# A blessed version waiting for its rollout; ``champion`` moves to it only once it serves.
ALIAS_CANDIDATE = "candidate"

# MLflow tag keys (on runs and model versions).
TAG_PREFIX = "mlpipe."
TAG_FINGERPRINT = "mlpipe.fingerprint"  # training cache key: data digest + estimator + params + code
TAG_TASK_TYPE = "mlpipe.task_type"  # "classification" | "regression"
TAG_LABEL = "mlpipe.label"  # label column name
TAG_FEATURES = "mlpipe.features"  # JSON list of feature column names, in model input order
TAG_TRAINING_DATA_URI = "mlpipe.training_data.uri"
TAG_TRAINING_DATA_DIGEST = "mlpipe.training_data.digest"
TAG_FEATURE_SERVICE = "mlpipe.feature_service"  # Feast feature service name (when features came from Feast)
TAG_FEATURE_SERVICE_VERSION = "mlpipe.feature_service.version"
TAG_CODE_VERSION = "mlpipe.code_version"
TAG_BLESSED = "mlpipe.gate.blessed"  # "true" | "false"
TAG_GATE_PREFIX = "mlpipe.gate."
TAG_DEPLOYED_AT = "mlpipe.deploy.deployed_at"
TAG_DEPLOY_ENDPOINT = "mlpipe.deploy.endpoint"
TAG_DEPLOY_BENTO = "mlpipe.deploy.bento_tag"
# Outcome of a rollout on the model version (one writer: airflow_mlpipe.deploy.release).
TAG_ROLLOUT_STATUS = "mlpipe.rollout.status"  # RolloutStatus value
TAG_ROLLOUT_CHECK = "mlpipe.rollout.check"  # RolloutCheck value that decided a rejection/rollback
TAG_ROLLOUT_REASON = "mlpipe.rollout.reason"  # human-readable reasons, with the observed numbers
TAG_ROLLOUT_FIGURES = "mlpipe.rollout.figures"  # JSON of the measured figures of the failed check
TAG_ROLLOUT_AT = "mlpipe.rollout.decided_at"


class RolloutStatus(enum.StrEnum):
    """Where a version is in the rollout state machine (docs/stages/deployment.md)."""

    CANDIDATE = "candidate"  # blessed (and approved), not yet serving
    SERVING = "serving"  # passed smoke test, canary and watch window; champion
    REJECTED = "rejected"  # failed before it served all traffic; never champion
    ROLLED_BACK = "rolled_back"  # served all traffic, then was replaced by the version before it


class RolloutCheck(enum.StrEnum):
    """The step of a rollout that rejected a version or rolled it back."""

    START = "start"  # the backend never became ready
    SMOKE = "smoke"  # holdout predictions differ or the backend does not answer
    CANARY = "canary"  # errors, latency or health on a share of live traffic
    WATCH = "watch"  # errors, latency or health after the full switch
    MANUAL = "manual"  # an operator asked for the rollback


class TaskType(enum.StrEnum):
    """The kind of supervised task a model solves; decides metrics and serving output."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"

    @classmethod
    def parse(cls, value: str | TaskType) -> TaskType:
        from airflow_mlpipe.exceptions import ConfigError

        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"Unknown task type {value!r}; use one of {[t.value for t in cls]}.") from None
