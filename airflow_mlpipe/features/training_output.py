"""Write a training set (and its holdout) under the task's directory, whichever offline store joins it.

* ``file`` offline store: Feast joins in the worker (:func:`~airflow_mlpipe.features.training_set.retrieve`,
  one DataFrame), the frame is split and written with ``write_parquet``;
* ``postgres`` offline store: PostgreSQL joins, and the result is streamed to parquet in chunks
  (:mod:`airflow_mlpipe.features.postgres_offline`).

Either way the files have the same columns, rows and row order, and the same kind of digest
(:func:`~airflow_mlpipe.core.datasets.frame_digest` of the table as written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.features import TrainingSetConfig
from airflow_mlpipe.core.datasets import frame_digest, write_parquet
from airflow_mlpipe.features.definitions import check_sources
from airflow_mlpipe.features.postgres_offline import WrittenSet, stream_training_set
from airflow_mlpipe.features.registry import ServiceInfo, feature_service
from airflow_mlpipe.features.training_set import retrieve
from airflow_mlpipe.hooks.feast import offline_store_type

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath
    from feast import FeatureStore

HOLDOUT_NAME = "holdout_set.parquet"


@dataclass
class TrainingSets:
    """What :func:`write_training_sets` wrote, and with which offline store."""

    info: ServiceInfo
    offline_store: str
    training: WrittenSet
    holdout: WrittenSet | None = None


def _written(frame: pd.DataFrame, path: ObjectStoragePath) -> WrittenSet:
    return WrittenSet(write_parquet(frame, path), len(frame), None, frame_digest(frame))


def write_training_sets(
    store: FeatureStore,
    cfg: TrainingSetConfig,
    entities: pd.DataFrame,
    out_dir: ObjectStoragePath,
    held: Any = None,
) -> TrainingSets:
    """Join ``entities`` with the feature service and write ``<out_dir>/<cfg.output_name>``.

    :param held: boolean mask over ``entities``: those rows are written to ``holdout_set.parquet``
        instead of the training set.
    """
    kind = offline_store_type(store.config)
    if kind == "postgres":
        sets = stream_training_set(
            store, cfg, entities, out_dir / cfg.output_name, held=held, holdout_path=out_dir / HOLDOUT_NAME
        )
        return TrainingSets(sets.info, kind, sets.training, sets.holdout)
    service, _ = feature_service(store, cfg.feature_service)
    used = {p.name for p in service.feature_view_projections}
    check_sources([v for v in store.list_feature_views() if v.name in used], kind)
    frame, info = retrieve(store, cfg, entities)
    holdout = None
    if held is not None:
        mask = held.to_numpy() if hasattr(held, "to_numpy") else held
        holdout = _written(frame[mask].reset_index(drop=True), out_dir / HOLDOUT_NAME)
        frame = frame[~mask].reset_index(drop=True)
    return TrainingSets(info, kind, _written(frame, out_dir / cfg.output_name), holdout)
