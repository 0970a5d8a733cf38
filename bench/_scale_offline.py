"""Training set from the PostgreSQL offline store against the file (parquet) offline store, same data.

A 1,000,000-row entity/label table (``quick``: 100,000) is joined point in time with one feature
view of three features over as many feature rows (a fifth as many customers, five timestamps
each; the data of ``bench/features.py``). Both sides run what ``FeastTrainingSetOperator`` runs,
``features.training_output.write_training_sets``, from reading the entity parquet file to the
written training set:

* baseline: the file offline store (Feast joins in the worker, one DataFrame, written at once);
* subject: the postgres offline store (the join runs in PostgreSQL; the result is streamed to the
  file 100,000 rows — one row group — at a time).

Each run is a fresh child process; wall time is measured after the imports and the registry load;
memory is the child's peak RSS (and its growth over the RSS before the work). Both files must have
the same digest. PostgreSQL: 127.0.0.1:5432, database ``test`` (``MLPIPE_BENCH_PG_DB`` overrides),
in a schema of its own that is dropped at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench._util import Result, json_child
from bench.features import DEFS, _data, entity_frame, store_config

DATABASE = os.environ.get("MLPIPE_BENCH_PG_DB", "test")
# bench/features.py's definitions with the view's source in PostgreSQL (table "stats")
PG_DEFS = DEFS.replace(
    'FileSource(name="stats_source", path="{path}", ',
    'PostgreSQLSource(name="stats_source", table="stats", ',
).replace(
    "from feast.types",
    "from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import "
    "PostgreSQLSource\nfrom feast.types",
)

_CHILD = r"""
import json, resource, sys, time
config_path, entities_uri, out_dir = sys.argv[1:4]
from airflow.sdk import ObjectStoragePath
from airflow_mlpipe.config.features import TrainingSetConfig
from airflow_mlpipe.core.datasets import read_table
from airflow_mlpipe.features.training_output import write_training_sets
from airflow_mlpipe.hooks.feast import FeastHook
import pandas, pyarrow.parquet, psycopg  # imported by a task anyway: not timed
store = FeastHook("mlpipe_feast_bench_absent", config=json.loads(open(config_path).read())).get_store()
store.get_feature_service("svc")
ObjectStoragePath("file:///tmp").exists()
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
cfg = TrainingSetConfig(feature_service="svc", entity_source=entities_uri, label="label")
sets = write_training_sets(store, cfg, read_table(entities_uri), ObjectStoragePath("file://" + out_dir))
elapsed = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "peak_mb": peak_kb / 1024, "growth_mb": (peak_kb - base_kb) / 1024,
                  "rows": sets.training.rows, "digest": sets.training.digest,
                  "row_groups": sets.training.row_groups}))
"""


def _config(root: Path, project: str, offline: dict[str, Any]) -> Path:
    path = root / f"{project}.json"
    path.write_text(json.dumps(store_config(root, project, offline)))
    return path


def _apply(config: Path, defs: Path) -> None:
    from airflow_mlpipe.features.definitions import apply_definitions, load_definitions
    from airflow_mlpipe.hooks.feast import FeastHook

    store = FeastHook("mlpipe_feast_bench_absent", config=json.loads(config.read_text())).get_store()
    apply_definitions(store, load_definitions(str(defs)))


def _load(conn: Any, schema: str, frame: Any) -> None:
    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(
        f'CREATE TABLE "{schema}".stats (customer_id bigint, event_timestamp timestamptz, '
        "a double precision, b double precision, n bigint)"
    )
    columns = ["customer_id", "event_timestamp", "a", "b", "n"]
    with conn.cursor().copy(f'COPY "{schema}".stats FROM STDIN (FORMAT csv)') as copy:
        for start in range(0, len(frame), 200_000):
            part = frame.iloc[start : start + 200_000][columns]
            copy.write(part.to_csv(index=False, header=False, date_format="%Y-%m-%d %H:%M:%S+00:00").encode())
    conn.execute(f'ANALYZE "{schema}".stats')


def run(quick: bool) -> list[Result]:
    import psycopg

    rows = 100_000 if quick else 1_000_000
    repeat = 1 if quick else 2
    schema = f"mlpipe_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DATABASE}", autocommit=True)
    try:
        with tempfile.TemporaryDirectory(prefix="mlpipe-bench-scale-offline-") as tmp:
            root = Path(tmp)
            path, frame = _data(root, rows)
            _load(admin, schema, frame)
            del frame
            entities_uri = str(root / "entities.parquet")
            entity_frame(rows // 5, rows).to_parquet(entities_uri, index=False)
            (root / "file_defs.py").write_text(DEFS.format(path=path))
            (root / "pg_defs.py").write_text(PG_DEFS)
            offline = {
                "type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "database": DATABASE,
                "db_schema": schema,
                "user": "postgres",
                "password": "",
                "sslmode": "disable",
            }
            configs = {
                "file": _config(root, "file_side", {"type": "file"}),
                "postgres": _config(root, "pg_side", offline),
            }
            _apply(configs["file"], root / "file_defs.py")
            _apply(configs["postgres"], root / "pg_defs.py")
            runs: dict[str, list[dict[str, Any]]] = {"file": [], "postgres": []}
            for i in range(repeat):  # alternate which side goes first: the shared CPU drifts
                for side in ("file", "postgres") if i % 2 == 0 else ("postgres", "file"):
                    out = root / f"out_{side}_{i}"
                    out.mkdir()
                    runs[side].append(
                        json_child(_CHILD, [str(configs[side]), entities_uri, str(out)], timeout=3600)
                    )
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
    digests = {r["digest"] for side in runs.values() for r in side}
    if len(digests) != 1 or any(r["rows"] != rows for side in runs.values() for r in side):
        raise RuntimeError(
            f"the two offline stores wrote different training sets (rows whose newest feature rows "
            f"share a timestamp are joined to either one; the data makes none): {runs}"
        )

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    size = f"{rows:,} entity rows x 3 features, {rows:,} feature rows; median of {repeat}"
    groups = runs["postgres"][0]["row_groups"]
    return [
        Result(
            name=f"training set {rows:,} rows: postgres / file offline store",
            baseline=med("file", "seconds"),
            subject=med("postgres", "seconds"),
            note=f"{size}; same digest; postgres streamed {groups} row groups",
        ),
        Result(
            name="training set worker peak RSS: postgres / file store",
            baseline=med("file", "peak_mb"),
            subject=med("postgres", "peak_mb"),
            unit="MB",
            target=1.0,
            note=(
                f"growth over the RSS before the work: file {med('file', 'growth_mb'):.0f} MB, "
                f"postgres {med('postgres', 'growth_mb'):.0f} MB"
            ),
        ),
    ]
