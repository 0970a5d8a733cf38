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

# MLflow tag keys (on runs and model versions): each defined once here, with the one module that
# writes it and the modules that read it (TAG_OWNERS; tests/unit/core/test_registry_tags.py checks
# the code against that table).
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
TAG_IDEMPOTENCY_KEY = "mlpipe.training.idempotency_key"
TAG_ESTIMATOR = "mlpipe.training.estimator"
TAG_MODEL_URI = "mlpipe.training.model_uri"  # logged (not yet registered) model of a run
TAG_ENV_PREFIX = "mlpipe.env."
TAG_SEARCH_CANDIDATES = "mlpipe.search.candidates"  # on the parent run of a search
TAG_SEARCH_SPACE = "mlpipe.search.space"
TAG_SEARCH_BEST_RUN = "mlpipe.search.best_run_id"
TAG_BLESSED = "mlpipe.gate.blessed"  # "true" | "false"
TAG_GATE_PREFIX = "mlpipe.gate."  # the gate's record: run id, report, champion, holdout
TAG_GATE_METRIC_PREFIX = "mlpipe.gate.metric."  # + metric name: the value the gate judged
TAG_CRITERION_PREFIX = "mlpipe.gate.criterion."  # + criterion name: JSON of its result
TAG_GATE_MODEL_NAME = "mlpipe.gate.model_name"  # on the evaluation run
TAG_LOCK_OWNER = "mlpipe.lock.owner"
TAG_LOCK_EXPIRES = "mlpipe.lock.expires_at"
TAG_PROMOTED_AT = "mlpipe.promotion.promoted_at"
TAG_PROMOTED_FROM = "mlpipe.promotion.replaced_version"
TAG_DEPLOYED_AT = "mlpipe.deploy.deployed_at"
TAG_DEPLOY_ENDPOINT = "mlpipe.deploy.endpoint"
TAG_DEPLOY_BENTO = "mlpipe.deploy.bento_tag"
# Outcome of a rollout on the model version (written by evaluation.promotion.mark_rollout for the
# release in airflow_mlpipe.deploy.release).
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

_TRACKING = "airflow_mlpipe.training.tracking"
_GATE = "airflow_mlpipe.operators.evaluation"
_PROMOTION = "airflow_mlpipe.evaluation.promotion"
_LINEAGE = "airflow_mlpipe.provenance"
# Every stage reads a version's identity (fingerprint, task type, label, features) through the
# registry module; the gate names the task-type and label tags in its error messages.
_REGISTRY = "airflow_mlpipe.core.registry"
_HOLDOUT = "airflow_mlpipe.evaluation.holdout"

#: tag constant -> (the module that writes it, the modules that read it)
TAG_OWNERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "TAG_FINGERPRINT": (_TRACKING, (_TRACKING, _REGISTRY, _LINEAGE)),
    "TAG_TASK_TYPE": (_TRACKING, (_REGISTRY, _HOLDOUT, _LINEAGE)),
    "TAG_LABEL": (_TRACKING, (_REGISTRY, _HOLDOUT, _LINEAGE, "airflow_mlpipe.monitoring.retraining")),
    "TAG_FEATURES": (_TRACKING, (_REGISTRY, _LINEAGE)),
    "TAG_TRAINING_DATA_URI": (_TRACKING, (_LINEAGE, "airflow_mlpipe.monitoring.retraining")),
    "TAG_TRAINING_DATA_DIGEST": (_TRACKING, (_LINEAGE,)),
    "TAG_FEATURE_SERVICE": (_TRACKING, (_LINEAGE,)),
    "TAG_FEATURE_SERVICE_VERSION": (_TRACKING, (_LINEAGE,)),
    "TAG_CODE_VERSION": (_TRACKING, (_LINEAGE,)),
    "TAG_IDEMPOTENCY_KEY": (_TRACKING, (_TRACKING,)),
    "TAG_ESTIMATOR": (_TRACKING, ("airflow_mlpipe.training.train",)),
    "TAG_MODEL_URI": (_TRACKING, (_TRACKING, "airflow_mlpipe.training.train")),
    "TAG_ENV_PREFIX": (_TRACKING, ("airflow_mlpipe.training.train",)),
    "TAG_SEARCH_CANDIDATES": ("airflow_mlpipe.training.train", ()),
    "TAG_SEARCH_SPACE": ("airflow_mlpipe.training.train", ()),
    "TAG_SEARCH_BEST_RUN": ("airflow_mlpipe.training.train", ()),
    "TAG_BLESSED": (_GATE, (_PROMOTION,)),
    "TAG_GATE_PREFIX": (_GATE, (_LINEAGE,)),
    "TAG_GATE_METRIC_PREFIX": (_GATE, ("airflow_mlpipe.monitoring.baseline",)),
    "TAG_CRITERION_PREFIX": (_GATE, (_GATE,)),
    "TAG_GATE_MODEL_NAME": (_GATE, ()),
    "TAG_LOCK_OWNER": (_PROMOTION, (_PROMOTION,)),
    "TAG_LOCK_EXPIRES": (_PROMOTION, (_PROMOTION,)),
    "TAG_PROMOTED_AT": (_PROMOTION, ()),
    "TAG_PROMOTED_FROM": (_PROMOTION, ()),
    "TAG_DEPLOYED_AT": ("airflow_mlpipe.deploy.rollout", (_LINEAGE,)),
    "TAG_DEPLOY_ENDPOINT": ("airflow_mlpipe.deploy.rollout", (_LINEAGE,)),
    "TAG_DEPLOY_BENTO": ("airflow_mlpipe.deploy.rollout", (_LINEAGE,)),
    # one writer (mark_rollout); the release decides the values
    "TAG_ROLLOUT_STATUS": (_PROMOTION, ()),
    "TAG_ROLLOUT_CHECK": (_PROMOTION, ()),
    "TAG_ROLLOUT_REASON": (_PROMOTION, ()),
    "TAG_ROLLOUT_FIGURES": (_PROMOTION, ()),
    "TAG_ROLLOUT_AT": (_PROMOTION, ()),
}


_RECORDS = "airflow_mlpipe.governance.records"
_REPRODUCE = "airflow_mlpipe.training.reproduce"
_AUDIT = "airflow_mlpipe.governance.audit"
_SNAPSHOTS = "airflow_mlpipe.governance.snapshots"
_SNAPSHOT_READERS = (_REPRODUCE, _AUDIT, _SNAPSHOTS)
TAG_OWNERS.update(
    {
        "TAG_SNAPSHOT_TRAINING_URI": (_RECORDS, _SNAPSHOT_READERS),
        "TAG_SNAPSHOT_TRAINING_DIGEST": (_RECORDS, _SNAPSHOT_READERS),
        "TAG_SNAPSHOT_HOLDOUT_URI": (_RECORDS, _SNAPSHOT_READERS),
        "TAG_SNAPSHOT_HOLDOUT_DIGEST": (_RECORDS, (_AUDIT, _SNAPSHOTS)),
        "TAG_TRAINING_SPEC": (_RECORDS, (_REPRODUCE, _AUDIT)),
        "TAG_RECORD_DIGEST": (_RECORDS, (_REPRODUCE, _AUDIT)),
        "TAG_GATE_REPORT_DIGEST": (_RECORDS, (_AUDIT,)),
        "TAG_REPRODUCE_STATUS": (_REPRODUCE, ()),
        "TAG_REPRODUCE_AT": (_REPRODUCE, ()),
        "TAG_REPRODUCE_REPORT_URI": (_REPRODUCE, (_AUDIT,)),
        "TAG_REPRODUCE_REPORT_DIGEST": (_REPRODUCE, (_AUDIT,)),
    }
)
# Governance reads back the whole record of a version: the record digest covers the lineage tags,
# a reproduction rebuilds from them, the audit shows the gate's and the lifecycle's.
for _tag, _readers in {
    "TAG_FINGERPRINT": (_RECORDS,),
    "TAG_TRAINING_DATA_URI": (_RECORDS,),
    "TAG_TRAINING_DATA_DIGEST": (_RECORDS,),
    "TAG_FEATURE_SERVICE": (_RECORDS,),
    "TAG_FEATURE_SERVICE_VERSION": (_RECORDS,),
    "TAG_CODE_VERSION": (_RECORDS, _REPRODUCE),
    "TAG_FEATURES": (_RECORDS, _REPRODUCE),
    "TAG_LABEL": (_RECORDS, _REPRODUCE),
    "TAG_TASK_TYPE": (_RECORDS, _REPRODUCE),
    "TAG_ENV_PREFIX": (_REPRODUCE, _AUDIT),
    "TAG_BLESSED": (_AUDIT,),
    "TAG_GATE_PREFIX": (_AUDIT,),
    "TAG_CRITERION_PREFIX": (_AUDIT,),
    "TAG_PROMOTED_AT": (_AUDIT,),
    "TAG_PROMOTED_FROM": (_AUDIT,),
    "TAG_DEPLOYED_AT": (_AUDIT,),
    "TAG_ROLLOUT_STATUS": (_AUDIT,),
}.items():
    TAG_OWNERS[_tag] = (TAG_OWNERS[_tag][0], (*TAG_OWNERS[_tag][1], *_readers))
# The Models page of the UI plugin shows versions with their gate verdict and deployment history.
for _tag in (
    "TAG_FINGERPRINT",
    "TAG_BLESSED",
    "TAG_GATE_PREFIX",
    "TAG_DEPLOYED_AT",
    "TAG_ROLLOUT_STATUS",
    "TAG_ROLLOUT_AT",
):
    TAG_OWNERS[_tag] = (TAG_OWNERS[_tag][0], (*TAG_OWNERS[_tag][1], "airflow_mlpipe.ui.loop"))


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
