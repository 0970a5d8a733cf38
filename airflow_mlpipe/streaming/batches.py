"""Scored events become monitored batches: the drift and quality checks read files, so the events
scored since the last export are written as one parquet file into the directory the monitoring
stage watches; drift on the stream then triggers retraining like drift in files does.

The position of the last exported result is kept in ``<output_stream>.exported`` (Redis), so every
export holds new events only; the file is written before the position moves (a crash in between
exports the events again: at least once, like the stream).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from airflow_mlpipe.config.streaming import StreamConfig
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import DataError


def export_scored_batch(
    config: StreamConfig,
    directory: str | os.PathLike[str],
    *,
    max_events: int = 100_000,
    min_events: int = 1,
    prediction_column: str = "prediction",
    client: Any = None,
) -> dict[str, Any] | None:
    """Write the results scored since the last export as ``<directory>/stream-<first>-<last>.parquet``:
    the event's input columns, ``prediction_column``, ``score`` (a binary classifier's positive-class
    probability, else null), ``probability`` (a multiclass classifier's predicted-class probability,
    else null) and ``model_version``.

    :param max_events: at most this many results per file.
    :param min_events: with fewer new results, export nothing and return ``None``.
    :returns: ``{"path", "rows", "first_position", "last_position", "model_versions"}`` or ``None``.
    """
    pd = require("pandas")
    if client is None:
        client = require("redis").Redis.from_url(config.redis_url, decode_responses=True)
    mark = f"{config.output_stream}.exported"
    after = client.get(mark)
    entries = client.xrange(config.output_stream, min=f"({after}" if after else "-", count=max_events)
    if len(entries) < max(1, min_events):
        return None
    records = []
    for position, fields in entries:
        try:
            row = dict(json.loads(fields["data"]))
        except (KeyError, ValueError) as exc:
            raise DataError(
                f"scored event {position} of {config.output_stream} has no input data: {exc}"
            ) from None
        row[prediction_column] = json.loads(fields["prediction"])
        for name in ("score", "probability"):
            row[name] = json.loads(fields[name]) if fields.get(name) else None
        row["model_version"] = fields.get("model_version")
        records.append(row)
    first, last = entries[0][0], entries[-1][0]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"stream-{first}-{last}.parquet"
    tmp = path.with_name(f".{path.name}.tmp")  # the watcher never sees a half-written file
    pd.DataFrame.from_records(records).to_parquet(tmp, index=False)
    os.replace(tmp, path)
    client.set(mark, last)
    return {
        "path": str(path),
        "rows": len(records),
        "first_position": first,
        "last_position": last,
        "model_versions": sorted({str(r["model_version"]) for r in records}),
    }
