"""Training operators: scikit-learn estimators trained, tracked and registered in MLflow.

* :class:`MlflowTrainModelOperator` — train one estimator, register it, point ``challenger`` at it
  (or reuse a cached version with the same fingerprint). With ``register=False`` it is one
  candidate of a search (a child run).
* :class:`MlflowStartSearchOperator` / :class:`MlflowRegisterBestModelOperator` — open a search's
  parent run and list its candidates; pick the best candidate and register only that one.
* :func:`training_search_tasks` — the three wired together with dynamic task mapping.

The logic lives in :mod:`airflow_mlpipe.training`; nothing here imports a heavy library at module level.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperator

from airflow_mlpipe.config.training import (
    DEFAULT_TRUSTED_PREFIXES,
    EstimatorConfig,
    RegistryConfig,
    SearchConfig,
    TrainingConfig,
    callable_path,
)
from airflow_mlpipe.core.conventions import ALIAS_CHALLENGER
from airflow_mlpipe.hooks.mlflow import MlflowHook
from airflow_mlpipe.operators._context import XComLink, airflow_ids, emit_asset_metadata, push_link

if TYPE_CHECKING:
    from airflow.sdk import Context, TaskGroup


class MlflowRunLink(XComLink):
    """The MLflow run of the task (pushed before training starts, so it works when the task fails)."""

    link_name = "MLflow run"
    key = "mlflow_run_url"


def _asset_extra(result: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("model_name", "version", "model_uri", "run_id", "fingerprint", "cached", "metrics", "task_type")
    return {k: result.get(k) for k in keys}


class _RunTracking:
    """Remembers the MLflow run a task opened so ``on_kill`` can mark it killed."""

    def _track(self, context: Context, hook: MlflowHook) -> Callable[[str, str], None]:
        self._mlflow_hook, self._run_id = hook, None

        def on_run(run_id: str, url: str) -> None:
            self._run_id = run_id
            push_link(context, MlflowRunLink, url)

        return on_run

    def on_kill(self) -> None:
        hook, run_id = getattr(self, "_mlflow_hook", None), getattr(self, "_run_id", None)
        if hook is not None and run_id:
            try:
                client = hook.get_client()
                if client.get_run(run_id).info.status == "RUNNING":
                    client.set_terminated(run_id, "KILLED")
            except Exception:  # best effort: the task is being killed anyway
                pass


class MlflowTrainModelOperator(_RunTracking, BaseOperator):
    """Train a scikit-learn estimator, log it to MLflow and register a new model version.

    :param training_set: dataset URI (parquet/CSV) or the features stage's XCom result.
    :param model_name: registered model name.
    :param estimator: import path of an estimator class or of a factory returning an estimator/Pipeline.
    :param estimator_params: parameters set on the estimator (``"step__param"`` for pipeline steps).
    :param label_column: label column (default: from the features stage result).
    :param features: feature columns in model input order (default: all but label and excluded).
    :param exclude_columns: columns never used as features (entity ids, timestamps).
    :param model_task_type: ``"classification"`` / ``"regression"``; inferred when omitted.
    :param test_size: holdout share (stratified for classification).
    :param cv_folds: cross-validate with this many folds instead of a holdout.
    :param seed: seed of the split and of the estimator's ``random_state``.
    :param refit_on_all: with the holdout split, register the model refitted on every row (the
        metrics stay those of the holdout).
    :param encode_categorical: one-hot encode string/category columns for an estimator that is not
        a ``Pipeline`` (default ``True``; unknown values at serving time encode as zeros).
    :param experiment_name: MLflow experiment (default: the model name).
    :param alias: alias moved to the new version (default ``challenger``).
    :param reuse_cached: reuse a registered version with the same fingerprint instead of retraining.
    :param serialization_format: ``"skops"`` (default), ``"cloudpickle"`` or ``"pickle"``.
    :param trusted_type_prefixes: module prefixes whose types a skops model file may contain.
    :param code_version: recorded and fingerprinted code version (default: bundle version or DAG file hash).
    :param register: ``False`` for a search candidate: log the run only.
    :param parent_run: the search's parent run (result of :class:`MlflowStartSearchOperator`).
    :param mlflow_conn_id: MLflow connection (missing: embedded SQLite under the artifact root).
    """

    template_fields: Sequence[str] = (
        "training_set",
        "model_name",
        "experiment_name",
        "estimator_params",
        "label_column",
        "features",
        "exclude_columns",
        "alias",
        "code_version",
        "parent_run",
        "mlflow_conn_id",
    )
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#d5ecff"

    def __init__(
        self,
        *,
        training_set: str | Mapping[str, Any],
        model_name: str,
        estimator: str | Callable[..., Any],
        estimator_params: Mapping[str, Any] | None = None,
        label_column: str | None = None,
        features: list[str] | None = None,
        exclude_columns: list[str] | None = None,
        model_task_type: str | None = None,
        test_size: float = 0.2,
        cv_folds: int | None = None,
        seed: int = 42,
        refit_on_all: bool = False,
        encode_categorical: bool = True,
        experiment_name: str | None = None,
        alias: str = ALIAS_CHALLENGER,
        reuse_cached: bool = True,
        serialization_format: str = "skops",
        trusted_type_prefixes: Sequence[str] = DEFAULT_TRUSTED_PREFIXES,
        code_version: str | None = None,
        register: bool = True,
        parent_run: Mapping[str, Any] | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.estimator = EstimatorConfig(estimator).estimator  # validates the path now, at parse time
        self.training_set = training_set
        self.model_name = model_name
        self.estimator_params = estimator_params or {}
        self.label_column = label_column
        self.features = features
        self.exclude_columns = exclude_columns or []
        self.model_task_type = model_task_type
        self.test_size = test_size
        self.cv_folds = cv_folds
        self.seed = seed
        self.refit_on_all = refit_on_all
        self.encode_categorical = encode_categorical
        self.experiment_name = experiment_name
        self.alias = alias
        self.reuse_cached = reuse_cached
        self.serialization_format = serialization_format
        self.trusted_type_prefixes = tuple(trusted_type_prefixes)
        self.code_version = code_version
        self.register = register
        self.parent_run = parent_run
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.training.tracking import code_version
        from airflow_mlpipe.training.train import train_model

        hook = MlflowHook(self.mlflow_conn_id)
        result = train_model(
            hook,
            source=self.training_set,
            estimator=EstimatorConfig(self.estimator, dict(self.estimator_params or {})),
            training=TrainingConfig(
                label=self.label_column,
                features=self.features,
                exclude_columns=self.exclude_columns,
                task_type=self.model_task_type,
                test_size=self.test_size,
                cv_folds=self.cv_folds,
                seed=self.seed,
                refit_on_all=self.refit_on_all,
                encode_categorical=self.encode_categorical,
            ),
            registry=_registry(self),
            ids=airflow_ids(context),
            code=code_version(
                self.code_version,
                bundle_version=getattr(context.get("dag_run"), "bundle_version", None),
                dag_file=getattr(context.get("dag"), "fileloc", None),
            ),
            parent=self.parent_run,
            register=self.register,
            on_run=self._track(context, hook),
        )
        if self.register:
            emit_asset_metadata(context, self.outlets, _asset_extra(result))
        return result


def _registry(op: MlflowTrainModelOperator) -> RegistryConfig:
    return RegistryConfig(
        model_name=op.model_name,
        experiment_name=op.experiment_name,
        alias=op.alias,
        reuse_cached=op.reuse_cached,
        serialization_format=op.serialization_format,
        trusted_type_prefixes=op.trusted_type_prefixes,
        code_version=op.code_version,
    )


def _search(search: SearchConfig | Mapping[str, Any]) -> SearchConfig:
    return search if isinstance(search, SearchConfig) else SearchConfig(**dict(search))


class MlflowStartSearchOperator(_RunTracking, BaseOperator):
    """Open a hyperparameter search's parent run; return one ``expand_kwargs`` entry per candidate.

    The return value is ``[{"estimator_params": {...}, "parent_run": {"parent_run_id", "experiment_id",
    "run_url"}}, ...]``, ready for ``MlflowTrainModelOperator.partial(...).expand_kwargs(start.output)``.

    :param model_name: registered model name (names the experiment by default).
    :param estimator: estimator import path (recorded on the parent run).
    :param search: a :class:`SearchConfig` or its fields as a dict.
    :param estimator_params: base parameters every candidate starts from.
    :param experiment_name: MLflow experiment (default: the model name).
    :param mlflow_conn_id: MLflow connection.
    """

    template_fields: Sequence[str] = ("model_name", "experiment_name", "estimator_params", "mlflow_conn_id")
    operator_extra_links = (MlflowRunLink(),)

    def __init__(
        self,
        *,
        model_name: str,
        estimator: str | Callable[..., Any],
        search: SearchConfig | Mapping[str, Any],
        estimator_params: Mapping[str, Any] | None = None,
        experiment_name: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.estimator = EstimatorConfig(estimator).estimator
        self.search = _search(search)
        self.model_name = model_name
        self.estimator_params = estimator_params or {}
        self.experiment_name = experiment_name
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_mlpipe.training.train import start_search

        hook = MlflowHook(self.mlflow_conn_id)
        result = start_search(
            hook,
            estimator=EstimatorConfig(self.estimator, dict(self.estimator_params)),
            search=self.search,
            registry=RegistryConfig(model_name=self.model_name, experiment_name=self.experiment_name),
            ids=airflow_ids(context),
            on_run=self._track(context, hook),
        )
        parent = {k: result[k] for k in ("parent_run_id", "experiment_id", "run_url")}
        return [
            {"estimator_params": {**self.estimator_params, **c}, "parent_run": parent}
            for c in result["candidates"]
        ]


class MlflowRegisterBestModelOperator(_RunTracking, BaseOperator):
    """Pick the best search candidate by a metric (direction-aware) and register only that one.

    :param candidates: the candidate results (the mapped training task's output); they name the
        search's parent run, which this task closes.
    :param model_name: registered model name.
    :param search: the search (its ``metric`` and ``direction`` decide; defaults by task type).
    :param alias: alias moved to the chosen version (default ``challenger``).
    :param reuse_cached: reuse a registered version with the winner's fingerprint.
    :param mlflow_conn_id: MLflow connection.
    """

    template_fields: Sequence[str] = ("candidates", "model_name", "alias", "mlflow_conn_id")
    operator_extra_links = (MlflowRunLink(),)

    def __init__(
        self,
        *,
        candidates: Sequence[Mapping[str, Any]] | Any,
        model_name: str,
        search: SearchConfig | Mapping[str, Any],
        alias: str = ALIAS_CHALLENGER,
        reuse_cached: bool = True,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        parent_run: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.candidates = candidates
        self.parent_run = parent_run  # accepted for compatibility; the candidates name their parent run
        self.model_name = model_name
        self.search = _search(search)
        self.alias = alias
        self.reuse_cached = reuse_cached
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.training.train import register_best

        hook = MlflowHook(self.mlflow_conn_id)
        result = register_best(
            hook,
            candidates=list(self.candidates),
            search=self.search,
            registry=RegistryConfig(
                model_name=self.model_name, alias=self.alias, reuse_cached=self.reuse_cached
            ),
            ids=airflow_ids(context),
            on_run=self._track(context, hook),
        )
        emit_asset_metadata(context, self.outlets, _asset_extra(result))
        return result


@dataclasses.dataclass
class TrainingSearchTasks:
    """The tasks :func:`training_search_tasks` created; ``>>``/``<<`` act on the whole group."""

    group: TaskGroup
    start: MlflowStartSearchOperator
    candidates: Any  # the mapped MlflowTrainModelOperator
    best: MlflowRegisterBestModelOperator

    @property
    def output(self) -> Any:
        """The final result (the registered best model, as the interface's training result)."""
        return self.best.output

    def __rshift__(self, other: Any) -> Any:
        return self.group >> other

    def __lshift__(self, other: Any) -> Any:
        return self.group << other

    def __rrshift__(self, other: Any) -> Any:
        return other >> self.group

    def __rlshift__(self, other: Any) -> Any:
        return other << self.group


def training_search_tasks(
    *,
    training_set: Any,
    model_name: str,
    estimator: str | Callable[..., Any],
    search: SearchConfig | Mapping[str, Any],
    estimator_params: Mapping[str, Any] | None = None,
    group_id: str = "training_search",
    mlflow_conn_id: str = MlflowHook.default_conn_name,
    alias: str = ALIAS_CHALLENGER,
    reuse_cached: bool = True,
    outlets: list[Any] | None = None,
    **train_kwargs: Any,
) -> TrainingSearchTasks:
    """A task group: start the search, train one mapped task per candidate, register the best.

    Call it inside a ``DAG`` context::

        search = training_search_tasks(
            training_set=features.output, model_name="churn",
            estimator="sklearn.ensemble.RandomForestClassifier",
            search={"param_grid": {"n_estimators": [50, 100], "max_depth": [4, 8]}, "metric": "f1"},
        )
        search >> evaluate

    :param train_kwargs: further :class:`MlflowTrainModelOperator` arguments (label, features, cv_folds …).
    """
    from airflow.sdk import TaskGroup

    start_output: Any
    spec = _search(search)
    search_dict = dataclasses.asdict(spec)  # plain values: mapped-task arguments are serialized
    path = estimator if isinstance(estimator, str) else (callable_path(estimator) or estimator)
    with TaskGroup(group_id=group_id) as group:
        start = MlflowStartSearchOperator(
            task_id="start",
            model_name=model_name,
            estimator=path,
            search=search_dict,
            estimator_params=dict(estimator_params or {}),
            experiment_name=train_kwargs.get("experiment_name"),
            mlflow_conn_id=mlflow_conn_id,
        )
        start_output = start.output
        candidates = MlflowTrainModelOperator.partial(
            task_id="candidate",
            training_set=training_set,
            model_name=model_name,
            estimator=path,
            register=False,
            reuse_cached=reuse_cached,
            mlflow_conn_id=mlflow_conn_id,
            **train_kwargs,
        ).expand_kwargs(start_output)
        best = MlflowRegisterBestModelOperator(
            task_id="register_best",
            candidates=cast(Any, candidates.output),
            model_name=model_name,
            search=search_dict,
            alias=alias,
            reuse_cached=reuse_cached,
            mlflow_conn_id=mlflow_conn_id,
            outlets=outlets or [],
        )
        start >> candidates >> best
    return TrainingSearchTasks(group=group, start=start, candidates=candidates, best=best)
