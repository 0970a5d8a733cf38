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
# Governance (airflow_mlpipe.governance): content-addressed snapshots under the artifact root, the
# training specification a reproduction rebuilds from, digests that make later edits detectable.
TAG_SNAPSHOT_TRAINING_URI = "mlpipe.snapshot.training.uri"
TAG_SNAPSHOT_TRAINING_DIGEST = "mlpipe.snapshot.training.digest"
TAG_SNAPSHOT_HOLDOUT_URI = "mlpipe.snapshot.holdout.uri"
TAG_SNAPSHOT_HOLDOUT_DIGEST = "mlpipe.snapshot.holdout.digest"
TAG_TRAINING_SPEC = "mlpipe.training.spec"  # JSON: estimator, params, label, features, split, seed
TAG_RECORD_DIGEST = "mlpipe.record.digest"  # digest of the version's lineage tags (governance.records)
TAG_GATE_REPORT_DIGEST = "mlpipe.digest.gate_report"
TAG_REPRODUCE_STATUS = "mlpipe.reproduce.status"  # "match" | "mismatch"
TAG_REPRODUCE_AT = "mlpipe.reproduce.at"
TAG_REPRODUCE_REPORT_URI = "mlpipe.reproduce.report_uri"
TAG_REPRODUCE_REPORT_DIGEST = "mlpipe.reproduce.report_digest"
TAG_ENV_PREFIX = "mlpipe.env."  # on training runs: Python and package versions


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
