"""What the training stage records in MLflow: fingerprints, provenance tags, runs and registry versions.

A version's tags are the contract with the gate and deploy stages (``core.conventions``); the
fingerprint tag makes re-runs on unchanged inputs reuse a version, and the idempotency tag makes a
retried task find the version an earlier attempt already registered instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from airflow_mlpipe.config.training import EstimatorConfig, RegistryConfig, TrainingConfig
from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core import registry as model_registry
from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.training.data import TrainingSet

_ENV_PACKAGES = {
    "sklearn": "scikit-learn",
    "mlflow": "mlflow",
    "numpy": "numpy",
    "pandas": "pandas",
    "scipy": "scipy",
}


def _sha(payload: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def code_version(
    override: str | None = None, *, bundle_version: str | None = None, dag_file: str | None = None
) -> str:
    """The explicit version, else the DAG bundle version, else a hash of the DAG file, else ``"unknown"``.

    :param override: a version given by the user (the operator's ``code_version``).
    :param bundle_version: the DAG bundle version of the run, when the bundle is versioned.
    :param dag_file: the DAG file the task was defined in.
    """
    if override:
        return override
    if bundle_version:
        return f"bundle:{bundle_version}"
    if dag_file and Path(dag_file).is_file():
        return "dagfile:" + hashlib.sha256(Path(dag_file).read_bytes()).hexdigest()[:16]
    return "unknown"


def fingerprint(
    data: TrainingSet, estimator: EstimatorConfig, config: TrainingConfig, task_type: TaskType, code: str
) -> str:
    """The cache key: training data digest, estimator and parameters, training settings, code version."""
    return _sha(
        {
            "data": data.digest,
            "label": data.label,
            "features": data.features,
            "estimator": estimator.name,
            "params": estimator.params,
            "task_type": task_type.value,
            "test_size": config.test_size,
            "cv_folds": config.cv_folds,
            "seed": config.seed,
            "encode_categorical": config.encode_categorical,
            "refit_on_all": config.refit_on_all,
            "code": code,
        }
    )


def idempotency_key(fp: str, ids: Mapping[str, str]) -> str:
    """Fingerprint plus the task's dag/run/task (and map index) ids — the same for every try."""
    keep = {
        k: v
        for k, v in ids.items()
        if k in ("airflow.dag_id", "airflow.run_id", "airflow.task_id", "airflow.map_index")
    }
    return _sha({"fingerprint": fp, "ids": keep})


def environment() -> dict[str, str]:
    """Python and key package versions (recorded as tags)."""
    env = {"python": platform.python_version()}
    for short, dist in _ENV_PACKAGES.items():
        try:
            env[short] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return env


def pip_requirements(serialization_format: str) -> list[str]:
    """Pinned requirements of the logged model, given explicitly (MLflow's inference costs ~20 s)."""
    names = ["mlflow", "scikit-learn", "numpy", "pandas", "scipy"]
    names.append({"skops": "skops", "cloudpickle": "cloudpickle"}.get(serialization_format, ""))
    out = []
    for name in filter(None, names):
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return out


def provenance_tags(
    data: TrainingSet,
    task_type: TaskType,
    fp: str,
    code: str,
    estimator: EstimatorConfig,
    ids: Mapping[str, str],
) -> dict[str, str]:
    """Tags shared by the run and the registered version (see ``core.conventions``)."""
    tags = {
        cv.TAG_FINGERPRINT: fp,
        cv.TAG_TASK_TYPE: task_type.value,
        cv.TAG_LABEL: data.label,
        cv.TAG_FEATURES: json.dumps(data.features),
        cv.TAG_TRAINING_DATA_URI: data.uri,
        cv.TAG_TRAINING_DATA_DIGEST: data.digest,
        cv.TAG_CODE_VERSION: code,
        cv.TAG_ESTIMATOR: estimator.name,
        **dict(ids),
    }
    if data.feature_service:
        tags[cv.TAG_FEATURE_SERVICE] = data.feature_service
    if data.feature_service_version:
        tags[cv.TAG_FEATURE_SERVICE_VERSION] = data.feature_service_version
    return tags


def log_training_run(
    mlflow: Any,
    *,
    run_id: str,
    data: TrainingSet,
    model: Any,
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    registry: RegistryConfig,
    trusted_types: list[str] | None,
) -> str:
    """Log params, metrics, tags, environment, dataset and model into the active run ``run_id``.

    :return: the logged model's URI (registered later, only when the run is chosen).
    """
    from mlflow.models import infer_signature

    mlflow.log_params({k: ("None" if v is None else v) for k, v in params.items()})
    mlflow.log_metrics(dict(metrics))
    mlflow.set_tags({**tags, **{cv.TAG_ENV_PREFIX + k: v for k, v in environment().items()}})
    dataset = mlflow.data.from_pandas(
        data.frame,
        source=data.uri,
        targets=data.label,
        name=Path(data.uri.rstrip("/")).name or "training_set",
        digest=data.digest.split(":")[-1][:32],  # the tracking store keeps at most 36 characters
    )
    mlflow.log_input(dataset, context="training")
    example = data.X.head(5)
    signature = infer_signature(example, model.predict(example))
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(registry.serialization_format),
        serialization_format=registry.serialization_format,
        skops_trusted_types=trusted_types,
    )
    uri = str(info.model_uri)
    mlflow.set_tag(cv.TAG_MODEL_URI, uri)  # written last: its presence means the run is complete
    return uri


def find_version_by_key(client: Any, name: str, key: str) -> Any | None:
    """The version a previous try of this very task registered, if any."""
    found = model_registry.versions(client, name, tags={cv.TAG_IDEMPOTENCY_KEY: key})
    return found[0] if found else None


def find_cached_version(client: Any, name: str, fp: str) -> Any | None:
    """The newest registered version trained from the same fingerprint, if any."""
    found = model_registry.versions(client, name, tags={cv.TAG_FINGERPRINT: fp})
    found = [v for v in found if v.status == "READY"]
    return found[0] if found else None


def find_cached_run(client: Any, experiment_id: str, fp: str) -> Any | None:
    """The newest finished run (with a logged model) of the same fingerprint in the experiment."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{cv.TAG_FINGERPRINT}` = '{fp}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    return next((r for r in runs if cv.TAG_MODEL_URI in r.data.tags), None)


def register(
    mlflow: Any, client: Any, *, model_uri: str, registry: RegistryConfig, tags: Mapping[str, str], key: str
) -> Any:
    """Register ``model_uri`` once per idempotency key and point the alias at it.

    A retry after a kill between registering and aliasing finds the version by its key and only
    moves the alias, so the registry never gets a duplicate version.
    """
    version = find_version_by_key(client, registry.model_name, key)
    if version is None:
        version = mlflow.register_model(
            model_uri, registry.model_name, tags={**tags, cv.TAG_IDEMPOTENCY_KEY: key}
        )
    client.set_registered_model_alias(registry.model_name, registry.alias, str(version.version))
    return version
