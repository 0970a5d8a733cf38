"""Batch scoring checks its input as the HTTP service checks a request, before the model sees it."""

from __future__ import annotations

import os
import threading

import pandas as pd
import pytest

from airflow_mlpipe.core.storage import resolve
from airflow_mlpipe.deploy.batch import score_dataset
from airflow_mlpipe.exceptions import DataError

INPUTS = [{"name": "a", "type": "double", "required": True}, {"name": "b", "type": "long", "required": True}]


@pytest.fixture(scope="module")
def model():
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [0, 1, 0, 1]})
    return LogisticRegression().fit(X, [0, 0, 1, 1])


def _score(model, src, out, **kwargs):
    return score_dataset(
        model,
        input_uri=str(src),
        features=["a", "b"],
        output_path=resolve(str(out)),
        model_name="m",
        model_version="1",
        inputs=INPUTS,
        **kwargs,
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_empty_input_is_a_data_error_not_a_model_crash(model, tmp_path, fmt):
    src = tmp_path / f"empty.{fmt}"
    empty = pd.DataFrame({"a": pd.Series([], dtype="float64"), "b": pd.Series([], dtype="int64")})
    empty.to_parquet(src, index=False) if fmt == "parquet" else empty.to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError, match=r"is empty \(0 rows\)"):
        _score(model, src, out)
    assert not out.exists() and list(tmp_path.iterdir()) == [src]


def test_numbers_stored_as_strings_are_refused_like_the_http_api(model, tmp_path):
    src = tmp_path / "strings.parquet"
    pd.DataFrame({"a": ["0.5", "1.5"], "b": [0, 1]}).to_parquet(src, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError, match=r"signature.*rows\[0\]\.a expects double, got str '0.5'"):
        _score(model, src, out)
    assert not out.exists()


def test_valid_input_scores_every_row(model, tmp_path):
    src = tmp_path / "ok.csv"
    pd.DataFrame({"a": [0.0, 3.0, 2.5], "b": [0, 1, 1]}).to_csv(src, index=False)
    res = _score(model, src, tmp_path / "out.parquet", batch_size=2)
    assert res["row_count"] == 3 and res["batches"] == 2
    assert pd.read_parquet(tmp_path / "out.parquet")["prediction"].tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([0.5, -1e300], "double"),
        ([0.5, 1e39], "float"),  # beyond 32-bit floats
        ([1.0, 2.5], "long"),  # not integral
        ([1, 2**31], "integer"),  # beyond 32-bit integers
        ([2**63 + 1, 1], "long"),  # uint64 beyond 64-bit signed
        ([1, 2], "integer"),
        ([1, 2], "double"),
        ([True, False], "double"),  # booleans are not numbers to the row check
        (["1", "2"], "long"),
        ([1.5, float("inf")], "double"),
    ],
)
def test_the_column_check_passes_exactly_what_the_row_check_passes(values, kind):
    """The column-wise shortcut of numeric chunks: never lets through what the row check refuses."""
    import numpy as np

    from airflow_mlpipe.deploy.batch import _numbers_pass
    from airflow_mlpipe.deploy.schema import RequestError, validate_rows

    frame = pd.DataFrame({"x": np.array(values)})
    inputs = [{"name": "x", "type": kind, "required": True}]
    try:
        validate_rows(frame.to_dict(orient="records"), inputs, max_rows=len(frame))
        rows_pass = True
    except RequestError:
        rows_pass = False
    if _numbers_pass(frame, inputs):
        assert rows_pass
    assert _numbers_pass(frame, inputs) == rows_pass or frame["x"].dtype.kind not in "iuf"


class _OutOfOrder:
    """A model whose first chunk finishes only after the second one has: scoring in parallel must
    still write the chunks in the input's order. Scored one after another, the first chunk would
    wait for a second that never starts (the wait has a deadline, and the test then fails)."""

    def __init__(self, model) -> None:
        import threading

        self.model, self.classes_ = model, model.classes_
        self.second_done = threading.Event()
        self.threads: set[str] = set()

    def predict(self, X):
        import threading

        self.threads.add(threading.current_thread().name)
        if X["a"].iloc[0] == 0.0:  # the first chunk
            assert self.second_done.wait(timeout=30), "the second chunk was not scored meanwhile"
        out = self.model.predict(X)
        if X["a"].iloc[0] == 10.0:
            self.second_done.set()
        return out

    def predict_proba(self, X):
        return self.model.predict_proba(X)


def test_chunks_scored_in_parallel_are_written_in_the_input_order(model, tmp_path):
    src = tmp_path / "in.parquet"
    frame = pd.DataFrame({"a": [0.0, 3.0, 10.0, 0.5, 2.5, 3.5], "b": [0, 1, 1, 0, 1, 1]})
    frame.to_parquet(src, index=False)
    slow_first = _OutOfOrder(model)
    res = _score(slow_first, src, tmp_path / "out.parquet", batch_size=2, workers=2, keep_columns=["a"])
    assert res["row_count"] == 6 and res["batches"] == 3
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["a"].tolist() == frame["a"].tolist()
    assert out["prediction"].tolist() == model.predict(frame).tolist()
    assert len(slow_first.threads) == 2 and all(t.startswith("mlpipe-score") for t in slow_first.threads)


def test_one_worker_scores_in_the_calling_thread(model, tmp_path):
    import threading

    src = tmp_path / "in.parquet"
    pd.DataFrame({"a": [0.0, 3.0, 2.5], "b": [0, 1, 1]}).to_parquet(src, index=False)
    seen = _OutOfOrder(model)
    seen.second_done.set()
    _score(seen, src, tmp_path / "out.parquet", batch_size=2, workers=1)
    assert seen.threads == {threading.current_thread().name}


def test_a_bad_chunk_scored_in_parallel_fails_with_its_place_and_leaves_no_file(model, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"a": ["0.5", "1.5", "x", "2.5", "3.5", "1.0"], "b": [0, 1, 1, 0, 1, 1]}).to_csv(
        src, index=False
    )
    out = tmp_path / "out.parquet"
    with pytest.raises(
        DataError, match=r"in the chunk from row 2\).*rows\[0\]\.a expects double, got str 'x'"
    ):
        _score(model, src, out, batch_size=2, workers=4)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_a_failed_run_stops_its_reader_and_scorers_at_once(model, tmp_path):
    """The run fails on its second of 50 chunks while the reader is still ahead: the reading and
    the scoring threads are stopped with the run, not left to the garbage collector (the error's
    traceback, kept here as a task runner keeps it, holds the run's frame)."""
    src = tmp_path / "in.csv"
    a = ["0.5"] * 100
    a[2] = "x"
    pd.DataFrame({"a": a, "b": [0, 1] * 50}).to_csv(src, index=False)
    with pytest.raises(DataError, match=r"in the chunk from row 2\)") as failure:
        _score(model, src, tmp_path / "out.parquet", batch_size=2, workers=2)
    running = [t.name for t in threading.enumerate() if t.name.startswith(("mlpipe-read", "mlpipe-score"))]
    assert failure.tb is not None and not running


def test_a_parquet_file_is_read_a_row_group_at_a_time_whatever_its_size(tmp_path):
    """pyarrow's dataset scanner reads ahead and pre-buffers row groups: with a consumer slower
    than the disk the whole file ends up in memory. The batches come from one row group at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlpipe.deploy.batch import iter_batches

    groups, group_rows, columns = 12, 100_000, [f"c{i}" for i in range(10)]
    path = tmp_path / "big.parquet"
    rng = np.random.default_rng(0)
    schema = pa.schema([(c, pa.float64()) for c in columns])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for _ in range(groups):
            writer.write_table(pa.table({c: rng.random(group_rows) for c in columns}, schema=schema))
    group_bytes = group_rows * len(columns) * 8  # 8 MB decoded
    base = pa.total_allocated_bytes()
    peak = rows = 0
    for batch in iter_batches(str(path), columns, 20_000):
        float(batch.to_pandas().to_numpy().sum())  # a consumer doing some work on every batch
        rows += len(batch)
        peak = max(peak, pa.total_allocated_bytes() - base)
    assert rows == groups * group_rows
    assert peak < 3 * group_bytes, f"{peak / 2**20:.0f} MB held for {group_bytes / 2**20:.0f} MB row groups"


def _mapped(path) -> tuple[int, int]:
    """How many memory maps of ``path`` this process holds, and their resident bytes."""
    maps = resident = 0
    current = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line
                current = len(head) >= 6 and head[5] == os.path.realpath(path)
                maps += current
            elif current and head[0] == "Rss:":
                resident += int(head[1]) * 1024
    return maps, resident


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads the process's memory maps (Linux)")
def test_a_local_file_is_read_through_a_memory_map_holding_one_row_group(tmp_path):
    """A local file is decoded from the page cache where it lies (memory-mapped), and the pages of
    each row group read are let go: what the file holds resident stays about one row group, and
    nothing stays mapped after the read. A plain read holds no map; a map whose pages are kept
    holds every row group read so far (8 here)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlpipe.deploy.batch import iter_batches

    groups, group_rows, columns = 8, 100_000, [f"c{i}" for i in range(5)]
    path = tmp_path / "groups.parquet"
    rng = np.random.default_rng(0)
    schema = pa.schema([(c, pa.float64()) for c in columns])
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False) as writer:
        for _ in range(groups):
            writer.write_table(pa.table({c: rng.random(group_rows) for c in columns}, schema=schema))
    group_bytes = pq.ParquetFile(path).metadata.row_group(0).total_byte_size  # 4 MB
    seen, total = [], 0.0
    for batch in iter_batches(str(path), columns, 25_000):
        seen.append(_mapped(path))
        total += float(batch.column("c0").to_numpy().sum())
    assert len(seen) == groups * 4 and total > 0
    assert all(maps == 1 for maps, _ in seen), seen
    most = max(resident for _, resident in seen)
    assert most <= 2 * group_bytes, (
        f"{most / 2**20:.1f} MB resident for {group_bytes / 2**20:.1f} MB row groups"
    )
    assert _mapped(path) == (0, 0)


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads the process's memory maps (Linux)")
def test_memory_map_false_reads_the_file_plainly(model, tmp_path):
    """``memory_map=False`` (for inputs that may be overwritten in place): no map of the file is
    held while it is scored, and the rows are the same."""
    src = tmp_path / "rows.parquet"
    pd.DataFrame({"a": [0.5, 1.5, 2.5, 3.5] * 50, "b": [0, 1] * 100}).to_parquet(src, index=False)
    maps = []

    class Watching:
        """The model, noting the maps of the input each time it is called."""

        def __getattr__(self, name):
            return getattr(model, name)

        def predict(self, frame):
            maps.append(_mapped(os.path.realpath(src))[0])
            return model.predict(frame)

    for memory_map in (True, False):
        maps.clear()
        out = tmp_path / f"out-{memory_map}.parquet"
        _score(Watching(), src, out, batch_size=50, workers=1, memory_map=memory_map)
        assert len(maps) == 4 and set(maps) == {1 if memory_map else 0}, maps
    assert pd.read_parquet(tmp_path / "out-True.parquet").equals(
        pd.read_parquet(tmp_path / "out-False.parquet")
    )


def test_a_file_the_system_will_not_map_is_read_plainly(tmp_path, monkeypatch):
    import mmap

    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlpipe.deploy import batch as batch_module

    def refused(*_args, **_kwargs):
        raise OSError(19, "No such device")  # what mmap says on a filesystem without it

    monkeypatch.setattr(mmap, "mmap", refused)
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"x": list(range(1000))}), path, row_group_size=300)
    batches = list(batch_module.iter_batches(str(path), ["x"], 400))
    assert [len(b) for b in batches] == [400, 400, 200]
    assert [v for b in batches for v in b.column("x").to_pylist()] == list(range(1000))


_CHANGE_WHILE_READ = """
import os, sys
from airflow_mlpipe.deploy.batch import iter_batches
from airflow_mlpipe.exceptions import DataError
path, how = sys.argv[1], sys.argv[2]
read = 0
try:
    for batch in iter_batches(path, ["x"], 100_000):
        read += len(batch)
        if read == 200_000:  # the end of row group 0: change the file in place
            if how == "truncate":
                os.truncate(path, 2_000_000)  # within row group 1 (1.6 MB each)
            else:  # rewritten: the same size, other values
                with open(path, "r+b") as fh:
                    fh.seek(2_000_000)
                    fh.write(bytes(4096))
except DataError as exc:
    print("DataError:", exc)
print("rows", read)
"""


@pytest.mark.parametrize("how", ["truncate", "rewrite"])
def test_a_file_changed_in_place_while_it_is_read_is_a_data_error(tmp_path, how):
    """A mapped page past a truncated file's end stops the process (SIGBUS), and a file rewritten in
    place would give rows of two files: the file is checked before every batch, so either is an
    error naming it. Read in a child process, so that a reader without the check dies there."""
    import subprocess
    import sys

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    schema, rng = pa.schema([("x", pa.float64())]), np.random.default_rng(0)
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False) as writer:
        for _ in range(4):
            writer.write_table(pa.table({"x": rng.random(200_000)}))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # a change now shows in the time too
    done = subprocess.run(
        [sys.executable, "-c", _CHANGE_WHILE_READ, str(path), how],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert f"DataError: File {path} changed while it was read (after 200000 rows)" in done.stdout
    assert "rows 200000" in done.stdout


def test_chunks_run_across_row_groups(tmp_path):
    """``batch_size`` rows per chunk whatever the file's row groups (a writer appending small row
    groups must not turn into many small model calls)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlpipe.deploy.batch import iter_batches

    path = tmp_path / "small_groups.parquet"
    pq.write_table(pa.table({"x": list(range(100))}), path, row_group_size=30)
    batches = list(iter_batches(str(path), ["x"], 50))
    assert [len(b) for b in batches] == [50, 50]
    assert [v for b in batches for v in b.column("x").to_pylist()] == list(range(100))


def test_a_file_replaced_while_it_is_read_is_read_whole_as_it_was(tmp_path):
    """The file is opened once: a writer replacing it (a rename over it) between two row groups
    changes nothing of what is read, and no row group comes from the new file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlpipe.deploy.batch import iter_batches

    path, other = tmp_path / "rows.parquet", tmp_path / "new.parquet"
    with pq.ParquetWriter(path, pa.schema([("x", pa.int64())])) as writer:
        for group in range(4):
            writer.write_table(pa.table({"x": list(range(group * 100, group * 100 + 100))}))
    pq.write_table(pa.table({"x": [-1] * 1000}), other, row_group_size=50)
    read = []
    for batch in iter_batches(str(path), ["x"], 100):
        if not read:
            os.replace(other, path)
        read.extend(batch.column("x").to_pylist())
    assert read == list(range(400))


def test_an_empty_file_in_a_dataset_is_named(model, tmp_path):
    src = tmp_path / "parts"
    src.mkdir()
    pd.DataFrame({"a": [0.5, 1.5], "b": [0, 1]}).to_parquet(src / "part-0.parquet", index=False)
    (src / "part-1.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"part-1\.parquet"):
        _score(model, src, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_partitioned_dataset_gets_its_partition_column_from_the_paths(model, tmp_path):
    src = tmp_path / "partitioned"
    frame = pd.DataFrame({"a": [0.0, 3.0, 2.5, 0.5], "b": [0, 1, 1, 0], "region": ["eu", "eu", "us", "us"]})
    frame.to_parquet(src, partition_cols=["region"])  # region=eu/…, region=us/…
    res = _score(model, src, tmp_path / "out.parquet", keep_columns=["region"], batch_size=1)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert res["row_count"] == 4 and res["batches"] == 4
    assert sorted(zip(out["region"], out["prediction"], strict=True)) == [
        ("eu", 0),
        ("eu", 1),
        ("us", 0),
        ("us", 1),
    ]


class _SeesThreadPools:
    """A model recording the BLAS pool sizes its predict runs with."""

    def __init__(self, model) -> None:
        self.model, self.classes_, self.seen = model, model.classes_, []

    def predict(self, X):
        from threadpoolctl import threadpool_info

        self.seen.append(max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"))
        return self.model.predict(X)

    def predict_proba(self, X):
        return self.model.predict_proba(X)


def test_parallel_chunks_keep_the_blas_pool_to_one_thread_and_give_it_back(model, tmp_path):
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> int:
        return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")

    src = tmp_path / "in.parquet"
    pd.DataFrame({"a": [0.0, 3.0, 2.5, 0.5], "b": [0, 1, 1, 0]}).to_parquet(src, index=False)
    with threadpool_limits(limits=2, user_api="blas"):  # a pool of 2, whatever the machine's cores
        sees = _SeesThreadPools(model)
        _score(sees, src, tmp_path / "out.parquet", batch_size=1, workers=2)
        assert sees.seen == [1, 1, 1, 1]  # a thread per chunk, one BLAS thread each
        assert blas_threads() == 2  # given back
        alone = _SeesThreadPools(model)
        _score(alone, src, tmp_path / "out2.parquet", batch_size=2, workers=1)
        assert alone.seen == [2, 2]  # one chunk at a time keeps the library's own parallelism


@pytest.mark.parametrize(
    ("column", "outcome"),
    [
        ([0.5, float("nan"), 1.0], "missing"),
        ([0.5, None, 1.0], "missing"),
        (pd.array([1, None, 2], dtype="Int64"), "missing"),  # a nullable integer's NA
        ([0.5, float("inf"), 1.0], "refused"),  # not missing: the signature check refuses it
        ([0.5, 1.5, 1.0], "scored"),
        ([1, 2, 3], "scored"),
    ],
)
def test_missing_feature_values_are_found_whatever_the_column_type(model, tmp_path, column, outcome):
    src = tmp_path / "in.parquet"
    pd.DataFrame({"a": column, "b": [0, 1, 1]}).to_parquet(src, index=False)
    out = tmp_path / "out.parquet"
    if outcome == "scored":
        assert _score(model, src, out)["row_count"] == 3
        return
    message = r"missing values in feature column\(s\) \['a'\]" if outcome == "missing" else r"rows\[1\]\.a"
    with pytest.raises(DataError, match=message):
        _score(model, src, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_kept_columns_keep_their_types_and_only_repeating_columns_get_a_dictionary(model, tmp_path):
    """Kept columns go from the input to the output as arrow read them; a column of distinct values
    (an id) is written plain, repeating ones (labels, a region, the version) as a dictionary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 1_000
    src = tmp_path / "in.parquet"
    table = pa.table(
        {
            "a": pa.array([float(i % 7) for i in range(rows)]),
            "b": pa.array([i % 2 for i in range(rows)], pa.int64()),
            "row_id": pa.array(range(rows), pa.int64()),
            "region": pa.array(["eu", "us"] * (rows // 2)),
            "at": pa.array(range(rows), pa.timestamp("ms", tz="Europe/Paris")),
        }
    )
    pq.write_table(table, src)
    out = tmp_path / "out.parquet"
    _score(model, src, out, batch_size=300, workers=2, keep_columns=["row_id", "region", "at"])
    written = pq.read_table(out)
    for name in ("row_id", "region", "at"):
        assert written.schema.field(name).type == table.schema.field(name).type
        assert written.column(name).to_pylist() == table.column(name).to_pylist()
    meta = pq.ParquetFile(out).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert not any("DICTIONARY" in e for e in encodings["row_id"]), encodings
    for name in ("region", "prediction", "model_version"):
        assert any("DICTIONARY" in e for e in encodings[name]), (name, encodings)
    assert not any("DICTIONARY" in e for e in encodings["scores"]), encodings


def test_a_read_error_ahead_of_the_scoring_fails_the_run_and_leaves_no_file(model, tmp_path):
    src = tmp_path / "dataset"
    src.mkdir()
    pd.DataFrame({"a": [0.0, 3.0] * 50, "b": [0, 1] * 50}).to_parquet(src / "part-0.parquet", index=False)
    (src / "part-1.parquet").write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")  # not a parquet file
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError, match=r"Could not read parquet dataset"):
        _score(model, src, out, batch_size=10, workers=2)
    assert not out.exists() and not list(tmp_path.glob("out.parquet*"))


def test_a_pipeline_step_that_makes_nan_still_fails_the_chunk(tmp_path):
    """The input is checked finite, but a pipeline step may still make a NaN of it: scikit-learn's
    own check stays on for pipelines, so the run fails instead of writing NaN probabilities."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1, 2, 1, 2]})
    logged = make_pipeline(FunctionTransformer(np.log), LogisticRegression()).fit(X, [0, 0, 1, 1])
    src = tmp_path / "in.parquet"
    pd.DataFrame({"a": [1.0, -1.0, 5.0], "b": [1, 1, 2]}).to_parquet(src, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(ValueError, match="NaN"):
        _score(logged, src, out, workers=2)
    assert not out.exists()


def test_kept_columns_stored_differently_by_the_files_of_a_dataset(model, tmp_path):
    """One file stores an id as ``string``, the next as ``large_string`` (as polars writes it): the
    output has the first file's type. A column whose values cannot be cast is a DataError naming it;
    an all-null column is written as it is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "dataset"
    src.mkdir()
    features = {"a": pa.array([0.0, 3.0]), "b": pa.array([0, 1], pa.int64())}
    pq.write_table(
        pa.table({**features, "id": pa.array(["x", "y"]), "note": pa.nulls(2)}), src / "p0.parquet"
    )
    pq.write_table(
        pa.table({**features, "id": pa.array(["z", "w"], pa.large_string()), "note": pa.nulls(2)}),
        src / "p1.parquet",
    )
    out = tmp_path / "out.parquet"
    _score(model, src, out, keep_columns=["id", "note"])
    written = pq.read_table(out)
    assert written.schema.field("id").type == pa.string() and written.column("id").to_pylist() == list("xyzw")
    assert written.column("note").null_count == 4

    out.unlink()
    pq.write_table(
        pa.table({**features, "id": pa.array([[1], [2]]), "note": pa.nulls(2)}), src / "p1.parquet"
    )
    with pytest.raises(DataError, match=r"store column\(s\) \['id'\] as different types"):
        _score(model, src, out, keep_columns=["id", "note"])
    assert not out.exists() and not list(tmp_path.glob("out.parquet*"))
