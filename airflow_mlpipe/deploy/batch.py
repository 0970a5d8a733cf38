"""Batch scoring: a dataset URI scored by a registry model in chunks, written as parquet.

The input is streamed in pyarrow record batches (parquet) or pandas chunks (CSV), so memory stays
bounded by ``batch_size`` whatever the dataset size. The output is written to a temporary name and
renamed, so a failed run never leaves a file that looks complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from airflow_mlpipe.core.datasets import detect_format
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.storage import local_path, resolve
from airflow_mlpipe.deploy.schema import RequestError, validate_rows
from airflow_mlpipe.exceptions import ConfigError, DataError


def iter_batches(uri: str, columns: list[str], batch_size: int) -> Iterator[Any]:
    """DataFrames of at most ``batch_size`` rows with ``columns`` (a missing column is a DataError)."""
    pd = require("pandas")
    pq = require("pyarrow.parquet")
    path = resolve(uri)
    if not path.exists():
        raise DataError(f"Dataset not found: {uri}")
    if detect_format(uri) == "csv":
        with path.open("rb") as fh:
            for chunk in pd.read_csv(fh, chunksize=batch_size):
                missing = [c for c in columns if c not in chunk.columns]
                if missing:
                    raise DataError(f"Dataset {uri} lacks column(s) {missing}; it has {list(chunk.columns)}.")
                yield chunk[columns]
        return
    local = local_path(path)
    try:
        dataset = pq.ParquetDataset(
            local if local is not None else path.path, filesystem=None if local else path.fs
        )
        names = list(dataset.schema.names)
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(f"Dataset {uri} lacks column(s) {missing}; it has {names}.")
        for fragment in dataset.fragments:
            for batch in fragment.to_batches(columns=columns, batch_size=batch_size):
                yield batch.to_pandas()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"Could not read parquet dataset {uri}: {type(exc).__name__}: {exc}") from exc


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
) -> dict[str, Any]:
    """Score ``input_uri`` with ``model`` and write ``keep_columns`` + predictions + model version.

    Every chunk is checked against ``inputs`` (the model signature, as the HTTP service checks a
    request: a number stored as a string is refused) before the model sees it. A classifier with
    ``predict_proba`` also gets ``probabilities`` (per row, ordered as the classes recorded in the
    file's ``mlpipe.classes`` metadata) and, binary only, ``scores`` (the positive-class
    probability) — the same values the online service returns.

    :returns: ``{"predictions_uri", "row_count", "batches", "classes"}``.
    """
    from airflow_mlpipe.core.class_scores import class_scores

    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
    keep = list(keep_columns or [])
    clash = {prediction_column, "model_version", "scores", "probabilities"} & set(keep)
    if clash:
        raise ConfigError(f"keep_columns {sorted(clash)} clash with the output columns; rename them.")
    columns = features + [c for c in keep if c not in features]
    local = local_path(output_path)
    if local is None:
        raise ConfigError("Batch predictions are written to a local artifact root in this version.")
    os.makedirs(os.path.dirname(local), exist_ok=True)
    tmp = f"{local}.tmp-{os.getpid()}"
    writer = None
    rows = batches = 0
    metadata = {
        b"mlpipe.model_name": model_name.encode(),
        b"mlpipe.model_version": str(model_version).encode(),
    }
    try:
        for frame in iter_batches(input_uri, columns, batch_size):
            if frame.empty:  # an empty file (or fragment) is not a batch: never handed to the model
                continue
            if frame[features].isna().any().any():
                bad = [c for c in features if frame[c].isna().any()]
                raise DataError(f"Dataset {input_uri} has missing values in feature column(s) {bad}.")
            if inputs:
                _check_schema(frame[features], inputs, input_uri, first_row=rows)
            predictions = model.predict(frame[features])
            out = {c: pa.array(frame[c]) for c in keep}
            out[prediction_column] = pa.array(predictions)
            scored = class_scores(model, frame[features])
            for column in ("scores", "probabilities"):
                if column in scored:
                    out[column] = pa.array(scored[column])
            if scored:
                metadata[b"mlpipe.classes"] = json.dumps(scored["classes"]).encode()
            out["model_version"] = pa.repeat(pa.scalar(str(model_version)), len(frame)).dictionary_encode()
            table = pa.table(out)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema.with_metadata(metadata))
            writer.write_table(table.replace_schema_metadata(metadata))
            rows += len(frame)
            batches += 1
        if writer is None:
            raise DataError(f"Dataset {input_uri} is empty (0 rows).")
        writer.close()
        writer = None
        os.replace(tmp, local)
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    classes = json.loads(metadata.get(b"mlpipe.classes", b"null"))
    return {"predictions_uri": str(output_path), "row_count": rows, "batches": batches, "classes": classes}


def _check_schema(frame: Any, inputs: list[dict[str, Any]], uri: str, *, first_row: int) -> None:
    """The service's request validation applied to a chunk (``rows[i]`` counts from the chunk's start)."""
    try:
        validate_rows(frame.to_dict(orient="records"), inputs, what="rows", max_rows=len(frame))
    except RequestError as exc:
        shown = "; ".join(exc.problems[:5])
        raise DataError(
            f"Dataset {uri} does not match the model's signature (in the chunk from row {first_row}): {shown}"
        ) from None
