"""Feature store stage: the operators' code path against calling Feast directly, same store, same data.

* materialize: ``materialize_window`` (window, row counting, summaries) vs ``FeatureStore.materialize``
  over the same window, 1,000,000 source rows (200,000 entities x 5 timestamps);
* training set: ``training_set.retrieve`` (checks, UTC normalisation, unique pairs, join back in
  input order) vs ``get_historical_features(...).to_df()``, 100,000 entity rows.

``--quick`` uses a tenth of the rows. Each side runs on its own Feast project so neither warms or
fills the other's online store; the sides alternate and the median is kept.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import Result

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
DEFS = """\
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
stats = FeatureView(
    name="stats", entities=[customer], ttl=timedelta(days=30),
    schema=[Field(name="a", dtype=Float64), Field(name="b", dtype=Float64), Field(name="n", dtype=Int64)],
    source=FileSource(name="stats_source", path="{path}", timestamp_field="event_timestamp"),
)
svc = FeatureService(name="svc", features=[stats])
"""


def _data(root: Path, rows: int) -> tuple[Path, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    entities = rows // 5
    ids = np.tile(np.arange(entities, dtype="int64"), 5)
    # each customer's k-th row falls on day k: no customer has two rows at one timestamp (the
    # point-in-time join of tied rows has no defined answer, and offline stores break ties apart)
    day = np.repeat(np.arange(5, dtype="int64"), entities)
    ts = pd.Timestamp(START) + pd.to_timedelta(day * 86_400 + rng.integers(0, 86_400, rows), unit="s")
    frame = pd.DataFrame(
        {"customer_id": ids, "event_timestamp": ts, "a": rng.normal(size=rows), "b": rng.normal(size=rows)}
    )
    frame["n"] = rng.integers(0, 100, rows).astype("int64")
    path = root / "stats.parquet"
    frame.to_parquet(path, index=False)
    return path, frame


def entity_frame(customers: int, rows: int) -> Any:
    """A seeded entity/label table: random customers, stamped in days 2–6, binary label."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(0, customers, rows).astype("int64"),
            "event_timestamp": pd.Timestamp(START)
            + pd.to_timedelta(rng.integers(86_400, 6 * 86_400, rows), unit="s"),
            "label": rng.integers(0, 2, rows),
        }
    )


def store_config(root: Path, project: str, offline: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Feast store of its own under ``root`` (registry file, SQLite online store); file offline store."""
    return {
        "project": project,
        "provider": "local",
        "registry": {"registry_type": "file", "path": f"{root}/{project}.db"},
        "online_store": {"type": "sqlite", "path": f"{root}/{project}_online.db"},
        "offline_store": offline or {"type": "file"},
        "entity_key_serialization_version": 3,
        "repo_path": str(root),
    }


def _store(root: Path, project: str, defs: Path) -> Any:
    from airflow_mlpipe.features.definitions import apply_definitions, load_definitions
    from airflow_mlpipe.hooks.feast import FeastHook

    store = FeastHook("mlpipe_feast_bench_absent", config=store_config(root, project)).get_store()
    apply_definitions(store, load_definitions(str(defs)))
    return store


def run(quick: bool) -> list[Result]:
    from airflow_mlpipe.config.features import MaterializeConfig, TrainingSetConfig
    from airflow_mlpipe.features.materialize import materialize_window
    from airflow_mlpipe.features.training_set import retrieve

    rows = 100_000 if quick else 1_000_000
    entity_rows = 10_000 if quick else 100_000
    repeat = 3 if quick else 2
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-features-") as tmp:
        root = Path(tmp)
        path, frame = _data(root, rows)
        defs = root / "defs.py"
        defs.write_text(DEFS.format(path=path))
        direct, ours = _store(root, "direct", defs), _store(root, "ours", defs)
        end = START + dt.timedelta(days=6)
        window = MaterializeConfig(start=START, end=end)

        base_m, subj_m = [], []
        for i in range(repeat):  # alternate which side goes first: the shared CPU drifts
            for side in ("direct", "ours") if i % 2 == 0 else ("ours", "direct"):
                t0 = time.perf_counter()
                if side == "direct":
                    direct.materialize(start_date=START, end_date=end, feature_views=["stats"])
                    base_m.append(time.perf_counter() - t0)
                else:
                    summary = materialize_window(ours, window)
                    subj_m.append(time.perf_counter() - t0)
        assert summary[0]["rows_written"] == rows // 5

        entities = entity_frame(rows // 5, entity_rows)
        cfg = TrainingSetConfig(feature_service="svc", entity_source="bench", label="label")
        service = direct.get_feature_service("svc")
        base_t, subj_t = [], []
        for i in range(repeat):
            for side in ("direct", "ours") if i % 2 == 0 else ("ours", "direct"):
                t0 = time.perf_counter()
                if side == "direct":
                    direct.get_historical_features(entity_df=entities, features=service).to_df()
                    base_t.append(time.perf_counter() - t0)
                else:
                    out, _ = retrieve(ours, cfg, entities)
                    subj_t.append(time.perf_counter() - t0)
        assert len(out) == entity_rows
    return [
        Result(
            f"materialize {rows:,} rows (sqlite online store)",
            baseline=statistics.median(base_m),
            subject=statistics.median(subj_m),
            target=1.1,
            note="baseline: FeatureStore.materialize; subject: features.materialize.materialize_window",
        ),
        Result(
            f"training set, {entity_rows:,} entity rows",
            baseline=statistics.median(base_t),
            subject=statistics.median(subj_t),
            target=1.1,
            note="baseline: get_historical_features().to_df(); subject: features.training_set.retrieve",
        ),
    ]
