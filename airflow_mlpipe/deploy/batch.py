"""Batch scoring: a dataset URI scored by a registry model in chunks, written as parquet.

The input is streamed in pyarrow record batches (parquet) or pandas chunks (CSV), so memory stays
bounded by ``batch_size`` whatever the dataset size. The output is written to a temporary name and
renamed, so a failed run never leaves a file that looks complete.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import mmap
import os
import sys
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from airflow_mlpipe.core.datasets import detect_format
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.storage import local_path, resolve
from airflow_mlpipe.deploy.schema import RequestError, validate_rows
from airflow_mlpipe.exceptions import ConfigError, DataError


def check_columns(uri: str, columns: list[str], have: list[str]) -> None:
    """Raise the DataError of a dataset that lacks some of ``columns`` (``have``: what it has)."""
    missing = [c for c in columns if c not in have]
    if missing:
        raise DataError(f"Dataset {uri} lacks column(s) {missing}; it has {have}.")


def iter_batches(uri: str, columns: list[str], batch_size: int, memory_map: bool = True) -> Iterator[Any]:
    """Chunks of at most ``batch_size`` rows with ``columns`` (a missing column is a DataError):
    pyarrow record batches from parquet, pandas DataFrames from CSV (pandas' type inference).
    ``memory_map``: a local parquet file is read through a memory map (:func:`_mapped_batches`)."""
    pd = require("pandas")
    pq = require("pyarrow.parquet")
    path = resolve(uri)
    if not path.exists():
        raise DataError(f"Dataset not found: {uri}")
    if detect_format(uri) == "csv":
        with path.open("rb") as fh:
            for chunk in pd.read_csv(fh, chunksize=batch_size):
                check_columns(uri, columns, list(chunk.columns))
                yield chunk[columns]
        return
    local = local_path(path)
    try:
        dataset = pq.ParquetDataset(
            local if local is not None else path.path, filesystem=None if local else path.fs
        )
        check_columns(uri, columns, list(dataset.schema.names))
        for fragment in dataset.fragments:
            yield from _fragment_batches(dataset, fragment, columns, batch_size, memory_map)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"Could not read parquet dataset {uri}: {type(exc).__name__}: {exc}") from exc


def _fragment_batches(
    dataset: Any, fragment: Any, columns: list[str], batch_size: int, memory_map: bool
) -> Iterator[Any]:
    """One file's record batches with ``columns`` (chunks of ``batch_size`` rows run across its row
    groups), the file read a row group at a time and never ahead:
    pyarrow's dataset scanner reads ahead and pre-buffers whole row groups, so a consumer slower
    than the disk (a model) would see the whole file in memory. A column of the partitioning
    (``region=eu/part-0.parquet``) is filled from the file's path."""
    ds = require("pyarrow.dataset")
    pa = require("pyarrow")
    in_path = ds.get_partition_keys(fragment.partition_expression)
    in_file = [c for c in columns if c in fragment.physical_schema.names]
    absent = [c for c in columns if c not in in_file and c not in in_path]
    if absent:
        raise DataError(f"File {fragment.path} of the dataset lacks column(s) {absent}.")
    for batch in _file_batches(dataset.filesystem, fragment.path, in_file, batch_size, memory_map):
        if len(in_file) < len(columns):
            batch = pa.RecordBatch.from_pydict(
                {
                    c: batch.column(c) if c in in_file else pa.repeat(pa.scalar(in_path[c]), batch.num_rows)
                    for c in columns
                }
            )
        yield batch


def _file_batches(
    filesystem: Any, path: str, columns: list[str], batch_size: int, memory_map: bool
) -> Iterator[Any]:
    """One parquet file's record batches (``batch_size`` rows, across its row groups).

    With ``memory_map`` a local file is read through a memory map (:func:`_mapped_batches`); a
    remote file, or one the system will not map, by reads of a column chunk at a time.
    """
    if memory_map and isinstance(filesystem, require("pyarrow.fs").LocalFileSystem):
        with open(path, "rb") as fh:
            try:
                view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # an empty file, a filesystem without mmap: read plainly
                pass
            else:
                yield from _mapped_batches(view, fh.fileno(), path, columns, batch_size)
                return
    with filesystem.open_input_file(path) as source_file:
        source = require("pyarrow.parquet").ParquetFile(source_file, pre_buffer=False)
        yield from source.iter_batches(batch_size=batch_size, columns=columns, use_threads=True)


def _mapped_batches(
    mapped: mmap.mmap, fd: int, path: str, columns: list[str], batch_size: int
) -> Iterator[Any]:
    """The batches of a memory-mapped parquet file (``fd``: the file, open while it is read).

    The pages are decoded from the page cache where they lie, instead of being copied into fresh
    buffers that the allocator hands back to the system and the kernel zeroes again for the next
    row group (a third of the CPU time of reading, measured). Once a row group is read its pages are
    let go (``MADV_DONTNEED``: the page cache keeps them, this process does not), so the file holds
    about one row group in memory, as a plain read does. The file is opened once: one renamed over
    it meanwhile is read whole, as it was. A page cut off by a file *truncated in place* would stop
    the process (``SIGBUS``), so before every batch the file is checked against what was mapped: a
    file changed in place (truncated, rewritten) is a :class:`DataError`, not a crash or rows mixed
    from two files; within one batch the risk remains (files are renamed into place for that).
    """
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    mapped_as = os.fstat(fd)
    # the map is not closed here: it goes when nothing reads from it (pyarrow's reader holds it)
    source = pq.ParquetFile(pa.BufferReader(pa.py_buffer(mapped)), pre_buffer=False)
    metadata = source.metadata
    group_ends = list(
        itertools.accumulate(metadata.row_group(g).num_rows for g in range(metadata.num_row_groups))
    )
    batches = source.iter_batches(batch_size=batch_size, columns=columns, use_threads=True)
    rows = groups_read = 0
    while True:
        now = os.fstat(fd)
        if (now.st_size, now.st_mtime_ns) != (mapped_as.st_size, mapped_as.st_mtime_ns):
            raise DataError(
                f"File {path} changed while it was read (after {rows} rows): write a dataset's "
                "files under another name and rename them into place."
            )
        batch = next(batches, None)
        if batch is None:
            return
        yield batch
        rows += len(batch)
        if (read := bisect.bisect_right(group_ends, rows)) > groups_read:  # a row group is done
            groups_read = read
            _let_go(mapped)


def _let_go(mapped: mmap.mmap) -> None:
    """The map's pages dropped from this process (the page cache keeps them; a later read faults
    them in again): only memory, so a system that refuses (no ``madvise``, locked pages) changes
    nothing else."""
    if hasattr(mmap, "MADV_DONTNEED"):  # not on Windows
        with contextlib.suppress(OSError):
            mapped.madvise(mmap.MADV_DONTNEED)


def score_dataset(
    model: Any,
    *,
    input_uri: str,
    features: list[str],
    output_path: Any,
    model_name: str,
    model_version: str,
    keep_columns: list[str] | None = None,
    batch_size: int = 100_000,
    prediction_column: str = "prediction",
    inputs: list[dict[str, Any]] | None = None,
    workers: int | None = None,
    memory_map: bool = True,
) -> dict[str, Any]:
    """Score ``input_uri`` with ``model`` and write ``keep_columns`` + predictions + model version.

    Chunks are scored by ``workers`` threads at once (``None``: one per usable core; ``1``: in the
    calling thread, which reads them too) while the next ones are read by a thread of their own and
    the scored ones are written by another; they are written in the input's order.
    Every chunk is checked against ``inputs`` (the model signature, as the HTTP service checks a
    request: a number stored as a string is refused) before the model sees it. A classifier with
    ``predict_proba`` also gets ``probabilities`` (per row, ordered as the classes recorded in the
    file's ``mlpipe.classes`` metadata) and, binary only, ``scores`` (the positive-class
    probability) — the same values the online service returns. ``memory_map``: a local parquet
    file is read through a memory map (``False``: plain reads, for a file that may be overwritten
    in place while it is scored).

    :returns: ``{"predictions_uri", "row_count", "batches", "classes", "engine"}``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
    columns, chunk = chunk_arguments(
        input_uri, features, keep_columns, prediction_column, model_version, inputs
    )
    output = ParquetOutput(output_path, model_name, model_version)
    rows = batches = 0
    # an empty file (or fragment) is not a batch: never handed to the model
    frames = (f for f in iter_batches(input_uri, columns, batch_size, memory_map) if len(f))
    workers = workers or usable_cores()
    # with more than one worker the chunks are read ahead by a thread of their own, and the file
    # is written by another while the next chunks are scored (at most AHEAD chunks waiting on
    # either side, so memory stays bounded); neither thread calls the model
    with (
        output,
        ThreadPoolExecutor(1, thread_name_prefix="mlpipe-write") as writer,
        _one_thread_each(workers),
    ):
        writing: deque[Future[None]] = deque()
        # closed when the loop ends early (an error): the reader and the scorers stop at once
        with (
            contextlib.closing(frames if workers == 1 else _read_ahead(frames)) as ahead,
            contextlib.closing(_scored_in_order(model, ahead, chunk, workers)) as scored,
        ):
            for (table, classes), size in scored:
                if len(writing) >= AHEAD:
                    writing.popleft().result()
                writing.append(writer.submit(output.write, table, classes))
                rows += size
                batches += 1
        while writing:
            writing.popleft().result()
        if not rows:
            raise DataError(f"Dataset {input_uri} is empty (0 rows).")
    return {
        "predictions_uri": str(output_path),
        "row_count": rows,
        "batches": batches,
        "classes": output.classes,
        "engine": "in_process",
    }


#: chunks read ahead of the scoring, and scored chunks waiting for the writer
AHEAD = 2


def _read_ahead(frames: Iterator[Any]) -> Generator[Any, None, None]:
    """``frames`` read by a thread of their own, :data:`AHEAD` chunks ahead of the consumer (so the
    reading never waits on the scoring or the writing); a read's error is raised in order."""
    reader = ThreadPoolExecutor(1, thread_name_prefix="mlpipe-read")
    try:
        pending = deque(reader.submit(next, frames, None) for _ in range(AHEAD))
        while (frame := pending.popleft().result()) is not None:
            pending.append(reader.submit(next, frames, None))
            yield frame
    finally:
        reader.shutdown(wait=True, cancel_futures=True)


def _one_thread_each(workers: int) -> Any:
    """With chunks scored in parallel, the numeric libraries' own thread pools (BLAS, OpenMP) keep
    one thread each while the scoring runs: a pool per chunk on top of a thread per chunk would
    oversubscribe the cores (measured: 10,000,000 rows in 4.0 s instead of 3.1 s on 2 cores)."""
    if workers == 1:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # no scikit-learn, hence no BLAS pool it would have sized
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container's cpuset limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _scored_in_order(
    model: Any, frames: Iterator[Any], chunk: dict[str, Any], workers: int
) -> Generator[tuple[tuple[Any, list[Any] | None], int], None, None]:
    """``(score_chunk's result, rows)`` per frame, in the frames' order. With ``workers > 1`` the
    chunks are scored by a thread pool (scikit-learn and numpy release the GIL in their numeric
    work), at most ``workers`` in flight besides the one being read, so memory stays bounded; the
    first failing chunk in input order raises, and the chunks not yet started are dropped."""
    if workers == 1:
        start = 0
        for frame in frames:
            yield score_chunk(model, frame, where=f"the chunk from row {start}", **chunk), len(frame)
            start += len(frame)
        return
    pending: deque[tuple[Future[tuple[Any, list[Any] | None]], int]] = deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="mlpipe-score")
    try:
        start = 0
        for frame in frames:
            where = f"the chunk from row {start}"
            pending.append((pool.submit(score_chunk, model, frame, where=where, **chunk), len(frame)))
            start += len(frame)
            if len(pending) >= workers:
                done, size = pending.popleft()
                yield done.result(), size
        while pending:
            done, size = pending.popleft()
            yield done.result(), size
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def chunk_arguments(
    input_uri: str,
    features: list[str],
    keep_columns: list[str] | None,
    prediction_column: str,
    model_version: str,
    inputs: list[dict[str, Any]] | None,
) -> tuple[list[str], dict[str, Any]]:
    """The columns to read and the keyword arguments of :func:`score_chunk` but ``where``.

    :raises ConfigError: a kept column has the name of an output column.
    """
    keep = list(keep_columns or [])
    clash = {prediction_column, "model_version", "scores", "probabilities"} & set(keep)
    if clash:
        raise ConfigError(f"keep_columns {sorted(clash)} clash with the output columns; rename them.")
    columns = features + [c for c in keep if c not in features]
    chunk = {
        "features": features,
        "keep": keep,
        "prediction_column": prediction_column,
        "model_version": model_version,
        "inputs": inputs,
        "uri": input_uri,
    }
    return columns, chunk


def score_chunk(
    model: Any,
    frame: Any,
    *,
    features: list[str],
    keep: list[str],
    prediction_column: str,
    model_version: str,
    inputs: list[dict[str, Any]] | None,
    uri: str,
    where: str,
) -> tuple[Any, list[Any] | None]:
    """One chunk (a pyarrow record batch or a pandas DataFrame with ``features`` and ``keep``)
    checked and scored, as the output's pyarrow table (``keep``, prediction, ``scores`` /
    ``probabilities``, ``model_version``) and the model's classes (``None`` without class
    probabilities). Both engines score every chunk here.

    :param where: the chunk's place in the dataset, for the messages of the checks.
    :raises DataError: missing values in a feature, or values the model's signature refuses.
    """
    from airflow_mlpipe.core.class_scores import positive_class, predict_with_probabilities, reads_its_input

    np = require("numpy")
    pa = require("pyarrow")
    X, out = _split(frame, features, keep)
    finite = _all_finite(X)
    if not finite and X.isna().to_numpy().any():
        bad = [c for c in features if X[c].isna().any()]
        raise DataError(f"Dataset {uri} has missing values in feature column(s) {bad}.")
    if inputs:
        _check_schema(X, inputs, uri, where=where, finite=finite)
    with _assume_finite(finite and reads_its_input(model)):
        predictions, found = predict_with_probabilities(model, X)
    out[prediction_column] = pa.array(predictions)
    classes = None
    if found is not None:  # the found_scores fields, as arrow columns straight from the array
        classes, proba = found[0], np.asarray(found[1], dtype="float64")
        positive = positive_class(classes)
        if positive is not None:
            out["scores"] = pa.array(proba[:, positive])
        offsets = pa.array(np.arange(0, proba.size + 1, len(classes), dtype="int32"))
        out["probabilities"] = pa.ListArray.from_arrays(offsets, pa.array(proba.ravel()))
    out["model_version"] = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(len(X), dtype="int32")), pa.array([str(model_version)])
    )
    return pa.table(out), classes


def _split(frame: Any, features: list[str], keep: list[str]) -> tuple[Any, dict[str, Any]]:
    """The features of a chunk as a DataFrame and its kept columns as arrow arrays. From arrow the
    features are converted alone, into one block the model reads without another copy, and the kept
    columns go to the output as they were read (no round trip through pandas)."""
    pa = require("pyarrow")
    if isinstance(frame, pa.RecordBatch | pa.Table):
        return frame.select(features).to_pandas(use_threads=False), {c: frame.column(c) for c in keep}
    return frame[features], {c: pa.array(frame[c]) for c in keep}


def _assume_finite(finite: bool) -> Any:
    """scikit-learn's own pass over the values for NaN and infinity, skipped (in this thread) when
    ``finite``: :func:`_all_finite` found them finite and the model computes on them as they are
    (no pipeline step that could make a NaN of them); other libraries check as they do."""
    sklearn = sys.modules.get("sklearn")
    if not finite or sklearn is None:
        return contextlib.nullcontext()
    return sklearn.config_context(assume_finite=True)


def _all_finite(X: Any) -> bool:
    """Whether every column of ``X`` has a numpy numeric dtype and no NaN or infinity (nothing is
    missing then); the float columns of one block are checked as one array (no copy)."""
    np = require("numpy")
    dtypes = list(X.dtypes)
    if not all(isinstance(d, np.dtype) and d.kind in "iubf" for d in dtypes):
        return False
    floats = [c for c, d in zip(X.columns, dtypes, strict=True) if d.kind == "f"]
    if not floats:
        return True
    values = X.to_numpy() if len(floats) == len(dtypes) else X[floats].to_numpy()
    return bool(np.isfinite(values).all())


class ParquetOutput:
    """The predictions file: tables appended as row groups to a temporary file, renamed to
    ``output_path`` when the ``with`` block ends without an error (else removed), so a failed run
    never leaves a file that looks complete. File metadata: ``mlpipe.model_name`` /
    ``mlpipe.model_version`` and, with class probabilities, ``mlpipe.classes``.
    """

    def __init__(self, output_path: Any, model_name: str, model_version: str) -> None:
        local = local_path(output_path)
        if local is None:
            raise ConfigError("Batch predictions are written to a local artifact root in this version.")
        self.local = local
        self.tmp = f"{local}.tmp-{os.getpid()}"
        self.classes: list[Any] | None = None
        self._writer: Any = None
        self._metadata = {
            b"mlpipe.model_name": model_name.encode(),
            b"mlpipe.model_version": str(model_version).encode(),
        }

    def __enter__(self) -> ParquetOutput:
        os.makedirs(os.path.dirname(self.local), exist_ok=True)
        return self

    def write(self, table: Any, classes: list[Any] | None) -> None:
        """Append ``table`` (every table has the first one's schema) scored with ``classes``."""
        if classes is not None:
            self.classes = classes
            self._metadata[b"mlpipe.classes"] = json.dumps(classes).encode()
        if self._writer is None:
            pq = require("pyarrow.parquet")
            self._writer = pq.ParquetWriter(
                self.tmp,
                table.schema.with_metadata(self._metadata),
                use_dictionary=_dictionary_columns(table),
            )
        elif not table.schema.equals(self._writer.schema, check_metadata=False):
            table = _conformed(table, self._writer.schema)
        self._writer.write_table(table.replace_schema_metadata(self._metadata))

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
                if exc_type is None:
                    os.replace(self.tmp, self.local)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def _conformed(table: Any, schema: Any) -> Any:
    """``table`` cast to the file's ``schema``: the files of a dataset may store a kept column
    differently (``string`` here, ``large_string`` there; int64 here, int32 there).

    :raises DataError: a column whose values the file's type cannot hold.
    """
    try:
        return table.cast(schema.remove_metadata())
    except Exception as exc:
        have = {f.name: str(f.type) for f in table.schema if schema.field(f.name).type != f.type}
        want = {name: str(schema.field(name).type) for name in have}
        raise DataError(
            f"The input's files store column(s) {sorted(have)} as different types ({have} after "
            f"{want}) that cannot be written as one file: {type(exc).__name__}: {exc}"
        ) from None


def _dictionary_columns(table: Any) -> list[str]:
    """The columns worth dictionary-encoding, judged on the first table written: arrow dictionary
    columns, and others whose values repeat (at most one distinct value per two rows: labels,
    categories, a version). Distinct values (ids, scores, probabilities, a regression's predictions)
    are written plain: a dictionary of them takes ~4x the time to write, and the file gets larger."""
    pa = require("pyarrow")
    pc = require("pyarrow.compute")

    def repeats(kind: Any, column: Any) -> bool:
        if pa.types.is_dictionary(kind):
            return True
        if pa.types.is_floating(kind) or pa.types.is_nested(kind) or pa.types.is_null(kind):
            return False
        try:
            distinct = int(pc.count_distinct(column, mode="all").as_py())
        except pa.ArrowNotImplementedError:  # string_view, extension types: written as they are
            return False
        return 2 * distinct <= max(len(column), 2)

    return [f.name for f, column in zip(table.schema, table.columns, strict=True) if repeats(f.type, column)]


def _check_schema(
    frame: Any, inputs: list[dict[str, Any]], uri: str, *, where: str, finite: bool = False
) -> None:
    """The service's request validation applied to a chunk (``rows[i]`` counts from the chunk's
    start); ``finite``: :func:`_all_finite` said so."""
    if _numbers_pass(frame, inputs, finite):
        return
    try:
        validate_rows(frame.to_dict(orient="records"), inputs, what="rows", max_rows=len(frame))
    except RequestError as exc:
        shown = "; ".join(exc.problems[:5])
        raise DataError(f"Dataset {uri} does not match the model's signature (in {where}): {shown}") from None


def _numbers_pass(frame: Any, inputs: list[dict[str, Any]], finite: bool = False) -> bool:
    """Whether every value of ``frame`` passes the row checks, decided column by column on numeric
    columns (the row checks cost ~10 µs a value); ``False`` when undecided: the rows are then checked
    one by one, which also names what is wrong. Missing values were refused before."""
    np = require("numpy")
    from airflow_mlpipe.deploy.schema import _FLOAT32_MAX, _INT_BOUNDS, FLOAT_TYPES, INT_TYPES

    if sorted(frame.columns) != sorted(c["name"] for c in inputs):
        return False
    for column in inputs:
        values, kind = frame[column["name"]].to_numpy(), column["type"]
        if values.dtype.kind not in "iuf" or kind not in FLOAT_TYPES | INT_TYPES:
            return False  # bool, object, datetime … or a type with another check: row by row
        if values.dtype.kind == "f" and not finite and not np.isfinite(values).all():
            return False
        if kind == "float" and values.size and np.abs(values).max() > _FLOAT32_MAX:
            return False
        if kind in INT_TYPES:
            if values.dtype.kind == "f" and not (values == np.floor(values)).all():
                return False
            bound = _INT_BOUNDS[kind]
            if values.size and not (-bound <= values.min() and values.max() < bound):
                return False
    return True
