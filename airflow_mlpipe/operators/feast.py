"""The feature store stage (Feast): apply definitions, materialize, build training sets, read online.

The operators are thin: they resolve their (templated) arguments into config objects when the task
runs, open the store through :class:`~airflow_mlpipe.hooks.feast.FeastHook`, and call the plain
functions of :mod:`airflow_mlpipe.features`. Nothing touches the store at parse time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlpipe.config.features import (
    DEFAULT_CHUNK_ROWS,
    HoldoutConfig,
    MaterializeConfig,
    TrainingSetConfig,
    TrainingWindowConfig,
    parse_timestamp,
)
from airflow_mlpipe.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlpipe.hooks.feast import FeastHook

_STORE_FIELDS = ("feast_conn_id", "repo_path", "config")


def _triggering_extras(context: Context) -> list[Mapping[str, Any]]:
    """The ``extra`` of every asset event that triggered the run."""
    return [
        getattr(e, "extra", None) or {}
        for events in (context.get("triggering_asset_events") or {}).values()
        for e in events
    ]


class _FeastOperator(BaseOperator):
    """Shared arguments: which store (connection, repository path or configuration dict)."""

    ui_color = "#8ecae6"

    def __init__(
        self,
        *,
        feast_conn_id: str = "mlpipe_feast_default",
        repo_path: str | None = None,
        config: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feast_conn_id = feast_conn_id
        self.repo_path = repo_path
        self.config = config

    def get_hook(self) -> FeastHook:
        from airflow_mlpipe.hooks.feast import FeastHook

        return FeastHook(self.feast_conn_id, repo_path=self.repo_path or None, config=self.config)


class FeastApplyOperator(_FeastOperator):
    """Register feature definitions (versioned code in the DAG bundle) in the Feast registry.

    XCom: ``{"project", "definitions", "digest", "files", "objects": {kind: [names]},
    "feature_services": {name: version}, "removed": [...]}``; the same (without ``files``) is
    attached to every outlet asset event.

    :param definitions: a file or directory relative to the DAG folder (``"features/churn.py"``),
        an absolute path, or an import path (``"my_pkg.features"``); default: the repository
        directory of the store (every ``*.py`` in it, as ``feast apply`` reads it).
    :param prune: also remove registered feature services, views and entities the definitions no
        longer contain.
    """

    template_fields: Sequence[str] = ("definitions", *_STORE_FIELDS)
    template_fields_renderers = {"config": "json"}

    def __init__(self, *, definitions: str | None = None, prune: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.definitions = definitions
        self.prune = prune

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.features.definitions import apply_definitions, load_definitions
        from airflow_mlpipe.features.registry import feature_service
        from airflow_mlpipe.operators._context import dag_search_paths, emit_asset_metadata

        hook = self.get_hook()
        source = self.definitions or hook.repo_config()["repo_path"]
        defs = load_definitions(str(source), dag_search_paths(context, self))
        store = hook.get_store()
        removed = apply_definitions(store, defs, prune=self.prune)
        services = {
            name: feature_service(store, name)[1].version for name in defs.names.get("FeatureService", [])
        }
        result = {
            "project": store.project,
            "definitions": defs.source,
            "digest": defs.digest,
            "objects": defs.names,
            "feature_services": services,
            "removed": removed,
        }
        self.log.info("Applied %s (%s) to Feast project %s", defs.source, defs.digest, store.project)
        emit_asset_metadata(context, self.outlets, result)
        return {**result, "files": [str(f) for f in defs.files]}


class FeastMaterializeOperator(_FeastOperator):
    """Materialize the run's data interval into the online store, incrementally and idempotently.

    The window is ``[data_interval_start - overlap, data_interval_end)``. A run without a data
    interval (asset-triggered or manual) takes the time range of the batches that triggered it,
    from the ``time_range`` on their asset events (``DataValidationOperator(timestamp_column=...)``),
    reaching back to where the views' last materialization ended if that is earlier; without one it
    catches up from there to the run's time. XCom: ``{"project", "window_start", "window_end",
    "window_source", "rows_written", "feature_views": [summary, ...]}``.
    Each outlet asset made by :func:`~airflow_mlpipe.features.materialize.feature_view_asset` gets
    its own view's summary (window, row count); other outlets get the whole result.

    :param feature_views: only these views (default: every feature view of the project).
    :param overlap: re-read this much before the interval for late data (``timedelta`` or seconds).
    :param start: window start instead of ``data_interval_start`` (aware datetime / ISO string).
    :param end: window end (exclusive) instead of ``data_interval_end``.
    :param fail_on_empty: fail when no view had a row in the window.
    """

    template_fields: Sequence[str] = ("feature_views", "start", "end", *_STORE_FIELDS)

    def __init__(
        self,
        *,
        feature_views: Sequence[str] | None = None,
        overlap: dt.timedelta | float = 0.0,
        start: str | dt.datetime | None = None,
        end: str | dt.datetime | None = None,
        fail_on_empty: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(overlap, dt.timedelta):
            overlap = overlap.total_seconds()
        if not isinstance(overlap, (int, float)) or overlap < 0:
            raise ConfigError(f"overlap={overlap!r} must be a non-negative timedelta or number of seconds.")
        self.feature_views = None if feature_views is None else list(feature_views)
        self.overlap = float(overlap)
        self.start = start
        self.end = end
        self.fail_on_empty = fail_on_empty

    def window(self, context: Context, store: Any = None) -> MaterializeConfig | None:
        """The run's window; ``None`` when a catch-up run finds nothing new to materialize."""
        start: Any = self.start or context.get("data_interval_start")
        end: Any = self.end or context.get("data_interval_end")
        source = "arguments" if self.start else "data_interval"
        if self.start is None and (start is None or end is None or start == end):
            # No data interval (a manual or asset-triggered run; Airflow 3 gives those an empty
            # one): the time of the batches that triggered the run, else catch up to the run's time.
            from airflow_mlpipe.features.materialize import batch_window, catch_up_start

            if store is None:
                store = self.get_hook().get_store()
            batch = batch_window(_triggering_extras(context))
            if batch is not None:
                # A run or batch missed earlier is caught up too: the window reaches back to where
                # the views' last materialization ended when that is before the batch.
                end, source = batch[1], "triggering_batch"
                start = min(batch[0], catch_up_start(store, self.feature_views, end))
            else:
                end = (
                    end or context.get("logical_date") or context.get("run_after") or dt.datetime.now(dt.UTC)
                )
                end, source = parse_timestamp(end, "end"), "catch_up"
                start = catch_up_start(store, self.feature_views, end)
            if start >= end:
                return None
        if start is None or end is None:
            raise ConfigError("Give both start= and end= to the materialize operator, or neither.")
        return MaterializeConfig(
            start=parse_timestamp(start, "start"),
            end=parse_timestamp(end, "end"),
            overlap_seconds=self.overlap,
            feature_views=self.feature_views,
            fail_on_empty=self.fail_on_empty,
            source=source,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.core.lineage import asset_outlets
        from airflow_mlpipe.features.materialize import feature_view_asset, materialize_window
        from airflow_mlpipe.operators._context import emit_asset_metadata

        store = self.get_hook().get_store()
        cfg = self.window(context, store)
        if cfg is None:
            self.log.info("Nothing to materialize: every feature view is up to date.")
            return {
                "project": store.project,
                "window_start": None,
                "window_end": None,
                "window_source": "catch_up",
                "rows_written": 0,
                "feature_views": [],
            }
        summaries = materialize_window(store, cfg)
        result = {
            "project": store.project,
            "window_start": cfg.window_start.isoformat(),
            "window_end": cfg.end.isoformat(),
            "window_source": cfg.source,
            "rows_written": sum(s["rows_written"] for s in summaries),
            "feature_views": summaries,
        }
        for s in summaries:
            self.log.info(
                "%s: %d rows in %s .. %s",
                s["feature_view"],
                s["rows_written"],
                s["window_start"],
                s["window_end"],
            )
        by_uri = {}
        for s in summaries:
            for project in (None, store.project):
                by_uri[feature_view_asset(s["feature_view"], project).uri] = s
        for asset in asset_outlets(self.outlets):
            emit_asset_metadata(context, [asset], by_uri.get(asset.uri, result))
        return result


class FeastTrainingSetOperator(_FeastOperator):
    """Build a point-in-time correct training set from an entity/label table and a feature service.

    Writes ``<task dir>/<output_name>`` (parquet) with the entity table's columns in its row order
    followed by the service's features. XCom (interfaces: Features): ``{"training_set_uri",
    "row_count", "digest", "feature_service", "feature_service_version", "features",
    "entity_columns", "timestamp_column", "label", "entity_source", "offline_store", "online_spec"}``;
    the same without ``online_spec`` is attached to every outlet asset event.

    Parameters: see :class:`~airflow_mlpipe.config.features.TrainingSetConfig`;
    ``entity_source_format`` is ``"parquet"``/``"csv"`` when the suffix does not tell. With the
    ``postgres`` offline store the join runs in the database and the result is streamed to the file
    ``chunk_rows`` rows (one row group) at a time.

    :param training_window: :class:`~airflow_mlpipe.config.features.TrainingWindowConfig` (or a
        dict of its fields): which rows, by event time, the set keeps. The result's ``window``
        records what was chosen.
    :param holdout: :class:`~airflow_mlpipe.config.features.HoldoutConfig` (or dict): cut an
        evaluation holdout from the windowed rows and leave it out of the training set; written to
        ``holdout_set.parquet`` (``holdout_set_uri`` in the result). ``None``: no holdout.
    :param exclude_source: a table (e.g. a separate holdout) whose rows are removed from this set.
    :param drift_since: start of the drifted batch (ISO-8601); default: the ``drift_since`` of the
        run's conf or of its triggering drift events.
    """

    template_fields: Sequence[str] = (
        "feature_service",
        "entity_source",
        "timestamp_column",
        "label_column",
        "entity_columns",
        "naive_timestamps",
        "output_name",
        "training_window",
        "holdout",
        "exclude_source",
        "drift_since",
        *_STORE_FIELDS,
    )

    def __init__(
        self,
        *,
        feature_service: str,
        entity_source: str,
        timestamp_column: str = "event_timestamp",
        label: str | None = None,
        entity_columns: Sequence[str] | None = None,
        naive_timestamps: str = "error",
        full_feature_names: bool = False,
        output_name: str = "training_set.parquet",
        entity_source_format: str | None = None,
        training_window: TrainingWindowConfig | Mapping[str, Any] | None = None,
        holdout: HoldoutConfig | Mapping[str, Any] | None = None,
        exclude_source: str | None = None,
        drift_since: str | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.chunk_rows = chunk_rows
        self.training_window = training_window
        self.holdout = holdout
        self.exclude_source = exclude_source
        self.drift_since = drift_since
        self.feature_service = feature_service
        self.entity_source = entity_source
        self.timestamp_column = timestamp_column
        self.label_column = label  # BaseOperator.label is taken (the task's display label)
        self.entity_columns = None if entity_columns is None else list(entity_columns)
        self.naive_timestamps = naive_timestamps
        self.full_feature_names = full_feature_names
        self.output_name = output_name
        self.entity_source_format = entity_source_format

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.features.online import SPEC_KIND
        from airflow_mlpipe.features.training_output import write_training_sets
        from airflow_mlpipe.features.training_set import summary
        from airflow_mlpipe.operators._context import emit_asset_metadata, task_dir

        cfg = TrainingSetConfig(
            feature_service=self.feature_service,
            entity_source=self.entity_source,
            timestamp_column=self.timestamp_column,
            label=self.label_column or None,
            entity_columns=self.entity_columns,
            naive_timestamps=self.naive_timestamps,
            full_feature_names=self.full_feature_names,
            output_name=self.output_name,
            chunk_rows=self.chunk_rows,
        )
        hook = self.get_hook()
        entities, chosen = self._choose_rows(context, cfg)
        sets = write_training_sets(hook.get_store(), cfg, entities, task_dir(context), chosen.pop("held"))
        info, written = sets.info, sets.training
        if sets.holdout is not None:
            chosen["holdout"]["uri"] = sets.holdout.uri
            chosen["holdout"]["digest"] = sets.holdout.digest
        uri = written.uri
        result = summary(cfg, info, uri, written.digest, written.rows, sets.offline_store)
        result.update(chosen)
        if sets.holdout is not None:
            result["holdout_set_uri"] = sets.holdout.uri
        self.log.info(
            "Training set %s: %d rows, %d features of %s (%s), joined by the %s offline store",
            uri,
            written.rows,
            len(info.features),
            info.name,
            info.version,
            sets.offline_store,
        )
        emit_asset_metadata(context, self.outlets, result)
        result["online_spec"] = {
            "kind": SPEC_KIND,
            "repo_config": hook.repo_config(),
            "feature_service": info.name,
            "feature_service_version": info.version,
            "full_feature_names": cfg.full_feature_names,
            "strict": True,
            "features": list(info.features),
            "entity_keys": list(info.entity_keys),
        }
        return result

    def _choose_rows(self, context: Context, cfg: TrainingSetConfig) -> tuple[Any, dict[str, Any]]:
        """The windowed entity rows, which of them are held out, and the lineage of both choices."""
        from airflow_mlpipe.core.datasets import read_table
        from airflow_mlpipe.features.training_set import normalise_timestamps
        from airflow_mlpipe.features.window import exclude_rows, holdout_mask, span, window_mask

        ts = cfg.timestamp_column

        def timed(uri: str, fmt: str | None = None) -> Any:
            table = read_table(uri, fmt=fmt).reset_index(drop=True)
            if ts not in table.columns:
                raise DataError(
                    f"Table {uri} has no timestamp column {ts!r}; its columns are {list(table.columns)}."
                )
            table[ts] = normalise_timestamps(table[ts], column=ts, naive=cfg.naive_timestamps)
            return table

        entities = timed(cfg.entity_source, self.entity_source_format)
        chosen: dict[str, Any] = {"excluded_rows": 0}
        if self.exclude_source:
            drop = exclude_rows(entities, timed(self.exclude_source), cfg.label)
            chosen["excluded_rows"] = int(drop.sum())
            entities = entities[~drop].reset_index(drop=True)
        window = TrainingWindowConfig.from_mapping(self.training_window, "training_window")
        keep, chosen["window"] = window_mask(entities, ts, window, self._drift_since(context))
        entities = entities[keep].reset_index(drop=True)
        chosen["held"] = None
        if self.holdout is not None:
            hold_cfg = HoldoutConfig.from_mapping(self.holdout, "holdout")
            held = holdout_mask(entities, ts, hold_cfg, window.batch_column)
            chosen["held"] = held
            chosen["holdout"] = {"method": hold_cfg.method, **span(entities[held], ts)}
        self.log.info("Training window %s; holdout %s", chosen["window"], chosen.get("holdout"))
        return entities, chosen

    def _drift_since(self, context: Context) -> dt.datetime | None:
        """When the drift that started this run began: the argument, the run's conf, or its drift events."""
        found: list[Any] = [self.drift_since] if self.drift_since else []
        if not found:
            conf = getattr(context.get("dag_run"), "conf", None) or {}
            found = [conf["drift_since"]] if conf.get("drift_since") else []
        if not found:
            found = [e["drift_since"] for e in _triggering_extras(context) if e.get("drift_since")]
        return max(parse_timestamp(v, "drift_since") for v in found) if found else None


class FeastOnlineFeaturesOperator(BaseOperator):
    """Fetch online features for given entities (a smoke test of what serving will see).

    XCom: ``{"feature_service", "features", "rows": [{keys..., features...}], "missing": n}``.

    :param online_spec: the ``online_spec`` of a training-set XCom (templated, e.g.
        ``"{{ ti.xcom_pull('features.training_set')['online_spec'] }}"`` with
        ``render_template_as_native_obj=True``).
    :param entity_rows: ``[{join key: value}, ...]``.
    :param fail_on_missing: fail when an entity has no online value.
    """

    template_fields: Sequence[str] = ("online_spec", "entity_rows")

    def __init__(
        self,
        *,
        online_spec: Mapping[str, Any] | str,
        entity_rows: Sequence[Mapping[str, Any]] | str,
        fail_on_missing: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.online_spec = online_spec
        self.entity_rows = entity_rows
        self.fail_on_missing = fail_on_missing

    def execute(self, context: Context) -> dict[str, Any]:
        import json

        from airflow_mlpipe.exceptions import DataError
        from airflow_mlpipe.features.online import OnlineFeatureReader, fetch_online_features

        spec = json.loads(self.online_spec) if isinstance(self.online_spec, str) else self.online_spec
        rows = json.loads(self.entity_rows) if isinstance(self.entity_rows, str) else self.entity_rows
        reader = OnlineFeatureReader.from_spec(spec)
        records = fetch_online_features(reader, rows)
        features = reader.features
        missing = sum(1 for r in records if any(r.get(f) is None for f in features))
        if missing and self.fail_on_missing:
            raise DataError(f"{missing} of {len(records)} entities have no online features.")
        return {
            "feature_service": spec["feature_service"],
            "features": features,
            "rows": records,
            "missing": missing,
        }
