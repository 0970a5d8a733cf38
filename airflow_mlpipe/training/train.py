"""The training stage's steps as plain functions (used by the operators and the benchmark).

* :func:`train_model` — train one estimator, log it, register it (or reuse a cached version).
* :func:`start_search` — open the parent run of a search and list its candidates.
* :func:`train_model` with ``parent`` and ``register=False`` — one search candidate (a child run).
* :func:`register_best` — pick the best candidate by a metric and register only that one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.training import EstimatorConfig, RegistryConfig, SearchConfig, TrainingConfig
from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.governance import records
from airflow_mlpipe.training import tracking
from airflow_mlpipe.training.data import TrainingSet, check_training_set, infer_task_type, load_training_set
from airflow_mlpipe.training.estimators import (
    allows_nan,
    build_estimator,
    estimator_factory,
    estimator_task_type,
    skops_trusted_types,
)
from airflow_mlpipe.training.fit import fit_and_score
from airflow_mlpipe.training.search import expand_candidates, select_best

if TYPE_CHECKING:
    from airflow_mlpipe.hooks.mlflow import MlflowHook

log = logging.getLogger(__name__)
TAG_PARENT_RUN = "mlflow.parentRunId"
LinkCallback = Callable[[str, str], None]  # (run id, run URL)


def _noop(run_id: str, url: str) -> None:
    return None


def _run_name(ids: Mapping[str, str]) -> str:
    name = ids.get("airflow.task_id", "training")
    return f"{name}.{ids['airflow.map_index']}" if "airflow.map_index" in ids else name


def _task_type(estimator: Any, data: TrainingSet, config: TrainingConfig, name: str) -> TaskType:
    declared = estimator_task_type(estimator)
    given = TaskType.parse(config.task_type) if config.task_type else None
    if given and declared and given is not declared:
        raise ConfigError(f"task_type is {given.value!r} but {name} is a {declared.value} estimator.")
    return given or declared or infer_task_type(data.y)


def _result(
    hook: MlflowHook,
    *,
    registry: RegistryConfig,
    data: TrainingSet,
    task_type: TaskType,
    fp: str,
    run_id: str,
    experiment_id: str,
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    cached: bool,
    version: Any | None = None,
    model_uri: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model_name": registry.model_name,
        "run_id": run_id,
        "experiment_id": experiment_id,
        "run_url": hook.run_url(experiment_id, run_id),
        "metrics": dict(metrics),
        "params": dict(params),
        "fingerprint": fp,
        "cached": cached,
        "task_type": task_type.value,
        "label": data.label,
        "features": list(data.features),
        "training_data": {"uri": data.uri, "digest": data.digest},
        "feature_service": data.feature_service,
        "feature_service_version": data.feature_service_version,
        **extra,
    }
    if version is not None:
        out.update(
            version=str(version.version),
            model_uri=f"models:/{registry.model_name}/{version.version}",
            alias=registry.alias,
        )
    else:
        out["model_uri"] = model_uri
    return jsonable(out)


def _run_metrics(client: Any, run_id: str) -> dict[str, float]:
    return dict(client.get_run(run_id).data.metrics)


def train_model(
    hook: MlflowHook,
    *,
    source: str | Mapping[str, Any],
    estimator: EstimatorConfig,
    training: TrainingConfig,
    registry: RegistryConfig,
    ids: Mapping[str, str],
    code: str,
    parent: Mapping[str, Any] | None = None,
    register: bool = True,
    on_run: LinkCallback = _noop,
) -> dict[str, Any]:
    """Train ``estimator`` on ``source`` in a new MLflow run and (by default) register it.

    Reuses, in order: the version an earlier try of this task registered (idempotency key); with
    ``registry.reuse_cached``, a registered version (or, for a search candidate, a finished run)
    with the same fingerprint. ``on_run`` receives the run id and URL before fitting starts.
    """
    with hook.activate() as mlflow:
        client = hook.get_client()
        hook.retry(lambda: client.search_experiments(max_results=1))  # fail fast when unreachable
        experiment_id = (
            str(parent["experiment_id"])
            if parent
            else hook.get_or_create_experiment(str(registry.experiment_name))
        )
        data = load_training_set(source, training)
        probe = build_estimator(estimator, training.seed)
        task_type = _task_type(probe, data, training, estimator.name)
        check_training_set(data, task_type, training, allows_nan(probe))
        fp = tracking.fingerprint(data, estimator, training, task_type, code)
        key = tracking.idempotency_key(fp, ids)
        common: dict[str, Any] = dict(
            registry=registry,
            data=data,
            task_type=task_type,
            fp=fp,
            experiment_id=experiment_id,
            parent_run_id=str(parent["parent_run_id"]) if parent else None,
        )

        def reuse(version: Any, *, cached: bool) -> dict[str, Any]:
            """Point the alias at an existing version instead of training again."""
            extra: dict[str, Any] = {} if cached else {"resumed": True}
            on_run(version.run_id, hook.run_url(experiment_id, version.run_id))
            client.set_registered_model_alias(registry.model_name, registry.alias, str(version.version))
            return _result(
                hook,
                **common,
                run_id=version.run_id,
                metrics=_run_metrics(client, version.run_id),
                params=estimator.params,
                cached=cached,
                version=version,
                **extra,
            )

        if register:
            previous = tracking.find_version_by_key(client, registry.model_name, key)
            if previous is not None:
                log.info(
                    "Version %s was registered by an earlier try of this task; resuming.", previous.version
                )
                return reuse(previous, cached=False)
            if registry.reuse_cached:
                cached = tracking.find_cached_version(client, registry.model_name, fp)
                if cached is not None:
                    log.info(
                        "Reusing cached model %s version %s (fingerprint %s): same data, estimator, "
                        "parameters and code; not retraining.",
                        registry.model_name,
                        cached.version,
                        fp,
                    )
                    return reuse(cached, cached=True)
        elif registry.reuse_cached:
            run = tracking.find_cached_run(client, experiment_id, fp)
            if run is not None:
                log.info("Reusing cached run %s (fingerprint %s); not retraining.", run.info.run_id, fp)
                on_run(run.info.run_id, hook.run_url(experiment_id, run.info.run_id))
                return _result(
                    hook,
                    **common,
                    run_id=run.info.run_id,
                    metrics=dict(run.data.metrics),
                    params=estimator.params,
                    cached=True,
                    model_uri=run.data.tags[cv.TAG_MODEL_URI],
                )

        tags = tracking.provenance_tags(data, task_type, fp, code, estimator, ids)
        # Snapshot step: the data is kept by digest and the specification recorded for reproduction.
        tags.update(
            records.training_tags(data, estimator, training, task_type.value, registry.model_name, tags)
        )
        run_tags = dict(tags)
        if parent:
            run_tags[TAG_PARENT_RUN] = str(parent["parent_run_id"])
        run = client.create_run(experiment_id, tags=run_tags, run_name=_run_name(ids))
        run_id = run.info.run_id
        on_run(run_id, hook.run_url(experiment_id, run_id))
        # The fluent API refuses a run of another experiment than the process's active one.
        mlflow.set_experiment(experiment_id=experiment_id)
        make_estimator, encoded = estimator_factory(estimator, training, data.X)
        with mlflow.start_run(run_id=run_id):
            outcome = fit_and_score(
                make_estimator,
                data.X,
                data.y,
                task_type,
                training,
                estimator.name,
            )
            trusted = (
                skops_trusted_types(outcome.model, registry.trusted_type_prefixes)
                if registry.serialization_format == "skops"
                else None
            )
            params = {
                "training.estimator": estimator.name,
                "training.seed": training.seed,
                "training.task_type": task_type.value,
                "training.n_train": outcome.n_train,
                "training.n_test": outcome.n_test,
                **(
                    {"training.cv_folds": training.cv_folds}
                    if training.cv_folds
                    else {
                        "training.test_size": training.test_size,
                        "training.refit_on_all": training.refit_on_all,
                    }
                ),
                **({"training.encoded_columns": json.dumps(encoded)} if encoded else {}),
                **estimator.params,
            }
            model_uri = tracking.log_training_run(
                mlflow,
                run_id=run_id,
                data=data,
                model=outcome.model,
                metrics=outcome.metrics,
                params=params,
                tags=tags,
                registry=registry,
                trusted_types=trusted,
            )
        if not register:
            return _result(
                hook,
                **common,
                run_id=run_id,
                metrics=outcome.metrics,
                params=estimator.params,
                cached=False,
                model_uri=model_uri,
            )
        version = tracking.register(
            mlflow, client, model_uri=model_uri, registry=registry, tags=tags, key=key
        )
        log.info("Registered %s version %s (alias %r).", registry.model_name, version.version, registry.alias)
        return _result(
            hook,
            **common,
            run_id=run_id,
            metrics=outcome.metrics,
            params=estimator.params,
            cached=False,
            version=version,
        )


def start_search(
    hook: MlflowHook,
    *,
    estimator: EstimatorConfig,
    search: SearchConfig,
    registry: RegistryConfig,
    ids: Mapping[str, str],
    on_run: LinkCallback = _noop,
) -> dict[str, Any]:
    """Open the search's parent run and list the candidates (one mapped task each)."""
    import json

    candidates = expand_candidates(search)
    with hook.activate():
        client = hook.get_client()
        hook.retry(lambda: client.search_experiments(max_results=1))
        experiment_id = hook.get_or_create_experiment(str(registry.experiment_name))
        tags = {
            **dict(ids),
            cv.TAG_ESTIMATOR: estimator.name,
            cv.TAG_SEARCH_CANDIDATES: str(len(candidates)),
            cv.TAG_SEARCH_SPACE: json.dumps(search.param_grid or search.param_distributions)[:5000],
        }
        run = client.create_run(experiment_id, tags=tags, run_name=f"{_run_name(ids)}.search")
        on_run(run.info.run_id, hook.run_url(experiment_id, run.info.run_id))
    return {
        "parent_run_id": run.info.run_id,
        "experiment_id": experiment_id,
        "candidates": candidates,
        "run_url": hook.run_url(experiment_id, run.info.run_id),
    }


def register_best(
    hook: MlflowHook,
    *,
    candidates: Sequence[Mapping[str, Any]],
    search: SearchConfig,
    registry: RegistryConfig,
    ids: Mapping[str, str],
    on_run: LinkCallback = _noop,
) -> dict[str, Any]:
    """Register the best candidate by ``search``'s metric (only that one) and close the parent run."""
    results = [c for c in candidates if isinstance(c, Mapping)]
    if not results:
        raise ConfigError("The search produced no candidate results to choose from.")
    task_type = TaskType.parse(results[0]["task_type"])
    metric, direction = search.resolve_metric(task_type)
    best = select_best(results, metric, direction)
    parent_run_id = str(best["parent_run_id"])
    with hook.activate() as mlflow:
        client = hook.get_client()
        on_run(parent_run_id, hook.run_url(str(best["experiment_id"]), parent_run_id))
        best_run = client.get_run(best["run_id"])
        tags = {
            k: v
            for k, v in best_run.data.tags.items()
            if k.startswith(cv.TAG_PREFIX) and not k.startswith((cv.TAG_ENV_PREFIX, cv.TAG_MODEL_URI))
        }
        tags.update(ids)
        fp = str(best["fingerprint"])
        key = tracking.idempotency_key(fp, ids)
        cached = False
        version = tracking.find_version_by_key(client, registry.model_name, key)
        if version is None and registry.reuse_cached:
            version = tracking.find_cached_version(client, registry.model_name, fp)
            cached = version is not None
            if version is not None:
                log.info(
                    "Reusing cached model %s version %s (fingerprint %s).",
                    registry.model_name,
                    version.version,
                    fp,
                )
        if version is None:
            version = tracking.register(
                mlflow, client, model_uri=str(best["model_uri"]), registry=registry, tags=tags, key=key
            )
        else:
            client.set_registered_model_alias(registry.model_name, registry.alias, str(version.version))
        client.log_metric(parent_run_id, f"best_{metric}", float(best["metrics"][metric]))
        client.set_tag(parent_run_id, cv.TAG_SEARCH_BEST_RUN, str(version.run_id))
        client.set_terminated(parent_run_id, "FINISHED")
        log.info(
            "Best of %d candidates by %s (%s): run %s -> %s version %s.",
            len(results),
            metric,
            direction,
            best["run_id"],
            registry.model_name,
            version.version,
        )
    out = dict(best)
    out.update(
        model_name=registry.model_name,
        version=str(version.version),
        model_uri=f"models:/{registry.model_name}/{version.version}",
        alias=registry.alias,
        run_id=str(version.run_id),
        cached=cached or bool(best.get("cached")),
        search={
            "metric": metric,
            "direction": direction,
            "n_candidates": len(results),
            "parent_run_id": parent_run_id,
            "best_run_id": best["run_id"],
            "candidates": [
                {"run_id": r["run_id"], "params": r["params"], "metrics": r["metrics"]} for r in results
            ],
        },
    )
    return jsonable(out)
