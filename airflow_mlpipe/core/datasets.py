"""Reading and writing tabular datasets by URI, with clear errors for bad input.

Every stage reads its inputs through :func:`read_table` so that a missing file, a truncated parquet
file or an empty table produces the same specific :class:`~airflow_mlpipe.exceptions.DataError`
everywhere. pandas/pyarrow are imported inside the functions only.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.storage import local_path, resolve
from airflow_mlpipe.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

FORMATS = ("parquet", "csv")


def detect_format(uri: str, fmt: str | None = None) -> str:
    """The table format of ``uri``: the explicit ``fmt`` or the file suffix."""
    if fmt:
        if fmt not in FORMATS:
            raise ConfigError(f"Unsupported dataset format {fmt!r}; use one of {FORMATS}.")
        return fmt
    lowered = uri.lower().rstrip("/")
    if lowered.endswith((".parquet", ".pq")) or lowered.endswith("/"):
        return "parquet"
    if lowered.endswith((".csv", ".csv.gz")):
        return "csv"
    # A directory of parquet files (partitioned dataset) has no suffix.
    return "parquet"


def read_table(
    uri: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    columns: list[str] | None = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Read a parquet or CSV dataset from a URI or path into a DataFrame.

    :param uri: ``file://``, object storage URI or local path; a parquet directory is read whole.
    :param fmt: ``"parquet"`` or ``"csv"``; inferred from the suffix when omitted.
    :param columns: only these columns (a missing one is a :class:`DataError` naming it).
    :param allow_empty: accept a table without rows.
    :raises DataError: missing, unreadable or truncated file, missing columns, empty table.
    """
    pd = require("pandas")
    text = os.fspath(uri)
    path = resolve(text)
    kind = detect_format(text, fmt)
    if not path.exists():
        raise DataError(f"Dataset not found: {text}")
    try:
        if kind == "parquet":
            df = _read_parquet(path, columns)
        else:
            df = _read_csv(path, columns)
    except DataError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many types for corrupt input
        raise DataError(
            f"Could not read {kind} dataset {text}: {type(exc).__name__}: {str(exc).rstrip('.')}. "
            f"The file may be truncated, corrupt or not a {kind} file."
        ) from exc
    if not isinstance(df, pd.DataFrame):  # pragma: no cover - defensive
        raise DataError(f"Dataset {text} did not load as a table")
    if not allow_empty and len(df) == 0:
        raise DataError(f"Dataset {text} is empty (0 rows).")
    return df


def _check_columns(available: list[str], wanted: list[str] | None, where: str) -> None:
    if wanted:
        missing = [c for c in wanted if c not in available]
        if missing:
            raise DataError(f"Dataset {where} lacks column(s) {missing}; it has {available}.")


def _read_parquet(path: ObjectStoragePath, columns: list[str] | None) -> pd.DataFrame:
    pq = require("pyarrow.parquet")
    local = local_path(path)
    source: Any = local if local is not None else path.path
    filesystem = None if local is not None else path.fs
    dataset = pq.ParquetDataset(source, filesystem=filesystem)
    _check_columns(list(dataset.schema.names), columns, str(path))
    table = dataset.read(columns=columns)
    return table.to_pandas()


def _read_csv(path: ObjectStoragePath, columns: list[str] | None) -> pd.DataFrame:
    pd = require("pandas")
    with path.open("rb") as fh:
        compression = "gzip" if str(path).endswith(".gz") else None
        try:
            df = pd.read_csv(fh, compression=compression)
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"Dataset {path} is empty (no header, no rows).") from exc
    _check_columns(list(df.columns), columns, str(path))
    return df if columns is None else df[columns]


def write_parquet(df: pd.DataFrame, path: ObjectStoragePath) -> str:
    """Write ``df`` as one parquet file at ``path`` atomically (local) and return its URI.

    Local files are written to a temporary name first and renamed, so a crash never leaves a
    half-written file under the final name that a later stage could mistake for output.
    """
    local = local_path(path)
    if local is not None:
        os.makedirs(os.path.dirname(local), exist_ok=True)
        tmp = f"{local}.tmp-{os.getpid()}"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, local)
    else:
        with path.open("wb") as fh:
            df.to_parquet(fh, index=False)
    return str(path)


def file_digest(uri: str | os.PathLike[str], *, algorithm: str = "sha256") -> str:
    """Content digest of a file, or of every file of a directory in name order."""
    path = resolve(os.fspath(uri))
    h = hashlib.new(algorithm)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise DataError(f"Nothing to fingerprint at {uri}")
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return f"{algorithm}:{h.hexdigest()}"


def frame_digest(df: pd.DataFrame) -> str:
    """Content digest of a DataFrame (values, column names and dtypes; index ignored)."""
    return ChunkedFrameDigest().add(df).result(lambda i, dtypes: df)


class ChunkedFrameDigest:
    """:func:`frame_digest` of a table that arrives in row chunks and is never whole in memory.

    It equals ``frame_digest(pd.concat(chunks))``: the rows' hashes are kept (8 bytes a row), and
    the dtypes are those the whole table would have. A chunk whose dtype differs from the whole
    table's (an integer column that has missing values elsewhere is float there) is hashed again
    from ``reread(i, dtypes)``, which gives that chunk back (e.g. from the written file).
    """

    def __init__(self) -> None:
        self._chunks: list[tuple[Any, bytes]] = []

    def add(self, chunk: pd.DataFrame) -> ChunkedFrameDigest:
        pd = require("pandas")
        self._chunks.append((chunk.dtypes, pd.util.hash_pandas_object(chunk, index=False).values.tobytes()))
        return self

    def result(self, reread: Any) -> str:
        """The digest; ``reread(i, dtypes) -> DataFrame`` gives chunk ``i`` back when needed."""
        pd = require("pandas")
        from pandas.core.dtypes.cast import find_common_type

        if not self._chunks:
            raise DataError("No chunk to digest: add at least one (it may have no rows).")
        names = list(self._chunks[0][0].index)
        final = [find_common_type([d.iloc[j] for d, _ in self._chunks]) for j in range(len(names))]
        h = hashlib.sha256()
        h.update(repr([(str(c), str(t)) for c, t in zip(names, final, strict=True)]).encode())
        for i, (dtypes, hashed) in enumerate(self._chunks):
            if list(dtypes) != final:
                chunk = reread(i, dict(zip(names, final, strict=True)))
                chunk = chunk.astype(dict(zip(names, final, strict=True)))
                hashed = pd.util.hash_pandas_object(chunk, index=False).values.tobytes()
            h.update(hashed)
        return f"sha256:{h.hexdigest()}"
