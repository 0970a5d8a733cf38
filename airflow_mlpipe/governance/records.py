"""What the stages record so a version can be reproduced and audited, and the digests that prove
the record was not changed afterwards.

* :func:`training_tags` — called by the training stage: snapshot the training set, the training
  specification (estimator, parameters, split, seed) and the record digest;
* :func:`gate_tags` — called by the gate: snapshot the holdout it scored, digest its report;
* :func:`record_digest` — the digest over a version's lineage tags (:data:`RECORD_KEYS`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core.datasets import file_digest
from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow_mlpipe.config.training import EstimatorConfig, TrainingConfig
    from airflow_mlpipe.training.data import TrainingSet

#: the lineage tags a version's record digest covers (what was trained, from what, how)
RECORD_KEYS = (
    cv.TAG_TRAINING_DATA_URI,
    cv.TAG_TRAINING_DATA_DIGEST,
    cv.TAG_SNAPSHOT_TRAINING_URI,
    cv.TAG_SNAPSHOT_TRAINING_DIGEST,
    cv.TAG_TRAINING_SPEC,
    cv.TAG_FEATURES,
    cv.TAG_LABEL,
    cv.TAG_TASK_TYPE,
    cv.TAG_FINGERPRINT,
    cv.TAG_CODE_VERSION,
    cv.TAG_FEATURE_SERVICE,
    cv.TAG_FEATURE_SERVICE_VERSION,
)


def digest_of(payload: Any) -> str:
    """sha256 of the canonical JSON of ``payload``."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def record_digest(tags: Mapping[str, str]) -> str:
    """The digest of the lineage tags in :data:`RECORD_KEYS` (absent keys are left out)."""
    return digest_of({k: tags[k] for k in RECORD_KEYS if k in tags})


def package_version() -> str:
    """The installed airflow-mlpipe version (``airflow_mlpipe.__version__``)."""
    from airflow_mlpipe import __version__

    return __version__


def training_spec(estimator: EstimatorConfig, training: TrainingConfig, task_type: str) -> dict[str, Any]:
    """Everything besides the data and the features that decides the fitted model."""
    return {
        "estimator": estimator.name,
        "params": dict(estimator.params),
        "task_type": task_type,
        "test_size": training.test_size,
        "cv_folds": training.cv_folds,
        "seed": training.seed,
        "encode_categorical": training.encode_categorical,
        "refit_on_all": training.refit_on_all,
        "mlpipe_version": package_version(),
    }


def parse_spec(text: str | None, where: str) -> dict[str, Any]:
    """The recorded training specification, or a :class:`ConfigError` saying it is missing."""
    if not text:
        raise ConfigError(
            f"{where} has no {cv.TAG_TRAINING_SPEC!r} tag: it was trained before reproduction was "
            "recorded, so it cannot be rebuilt."
        )
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: the {cv.TAG_TRAINING_SPEC!r} tag is not JSON: {exc}") from None
    if not isinstance(spec, dict) or "estimator" not in spec:
        raise ConfigError(f"{where}: the {cv.TAG_TRAINING_SPEC!r} tag lacks the estimator.")
    return spec


def training_tags(
    data: TrainingSet,
    estimator: EstimatorConfig,
    training: TrainingConfig,
    task_type: str,
    model_name: str,
    provenance: Mapping[str, str],
) -> dict[str, str]:
    """Snapshot the training set and return the governance tags to add to ``provenance``."""
    from airflow_mlpipe.governance import snapshots

    snap = snapshots.take(data.uri, model_name)
    tags = {
        cv.TAG_SNAPSHOT_TRAINING_URI: snap.uri,
        cv.TAG_SNAPSHOT_TRAINING_DIGEST: snap.digest,
        cv.TAG_TRAINING_SPEC: json.dumps(training_spec(estimator, training, task_type), sort_keys=True),
    }
    tags[cv.TAG_RECORD_DIGEST] = record_digest({**provenance, **tags})
    return tags


def gate_tags(model_name: str, holdout_uri: str, report_uri: str) -> dict[str, str]:
    """Snapshot the gate's holdout and digest its report (tags for the challenger's version)."""
    from airflow_mlpipe.governance import snapshots

    snap = snapshots.take(holdout_uri, model_name)
    return {
        cv.TAG_SNAPSHOT_HOLDOUT_URI: snap.uri,
        cv.TAG_SNAPSHOT_HOLDOUT_DIGEST: snap.digest,
        cv.TAG_GATE_REPORT_DIGEST: file_digest(report_uri),
    }
