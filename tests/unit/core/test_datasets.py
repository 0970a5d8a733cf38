from __future__ import annotations

import pandas as pd
import pytest

from airflow_mlpipe.core.datasets import detect_format, file_digest, frame_digest, read_table, write_parquet
from airflow_mlpipe.core.storage import resolve
from airflow_mlpipe.exceptions import ConfigError, DataError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "größe": [0.1, 0.2, 0.3]})


def test_parquet_round_trip_via_uri_and_path(tmp_path, frame):
    uri = write_parquet(frame, resolve(tmp_path / "t.parquet"))
    assert uri.startswith("file://")
    pd.testing.assert_frame_equal(read_table(uri), frame)
    pd.testing.assert_frame_equal(read_table(str(tmp_path / "t.parquet")), frame)
    assert list(read_table(uri, columns=["größe"]).columns) == ["größe"]
    assert not list(tmp_path.glob("*.tmp-*")), "atomic write left a temporary file"


def test_csv_and_partitioned_parquet_directory(tmp_path, frame):
    frame.to_csv(tmp_path / "t.csv", index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv"), frame)
    part = tmp_path / "parts"
    part.mkdir()
    frame.iloc[:2].to_parquet(part / "0.parquet", index=False)
    frame.iloc[2:].to_parquet(part / "1.parquet", index=False)
    assert len(read_table(part)) == 3


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        (None, "parquet", "not found"),
        (b"PAR1 garbage that is not parquet", "parquet", "Could not read parquet"),
        (b"", "csv", "empty"),
    ],
)
def test_bad_files_are_data_errors(tmp_path, content, fmt, message):
    path = tmp_path / f"bad.{fmt}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_truncated_parquet_is_a_data_error(tmp_path, frame):
    good = tmp_path / "good.parquet"
    frame.to_parquet(good, index=False)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated") as err:
        read_table(truncated)
    assert ".." not in str(err.value)  # pyarrow's own message ends with a period already


def test_empty_table_and_missing_columns(tmp_path, frame):
    empty = tmp_path / "empty.parquet"
    frame.iloc[:0].to_parquet(empty, index=False)
    with pytest.raises(DataError, match="0 rows"):
        read_table(empty)
    assert len(read_table(empty, allow_empty=True)) == 0
    with pytest.raises(DataError, match=r"lacks column\(s\) \['nope'\]"):
        read_table(empty, columns=["nope"])


def test_format_detection():
    assert detect_format("s3://b/x.parquet") == "parquet"
    assert detect_format("file:///x.csv.gz") == "csv"
    assert detect_format("file:///dir/") == "parquet"
    with pytest.raises(ConfigError, match="Unsupported"):
        detect_format("x", "xlsx")


def test_digests_depend_on_content_only(tmp_path, frame):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    frame.to_parquet(a, index=False)
    frame.to_parquet(b, index=False)
    assert file_digest(a) == file_digest(b)
    assert frame_digest(frame) == frame_digest(frame.copy())
    changed = frame.copy()
    changed.loc[0, "a"] = 99
    assert frame_digest(changed) != frame_digest(frame)
    assert frame_digest(frame.astype({"a": "float64"})) != frame_digest(frame)


def test_chunked_digest_equals_the_whole_frames_even_when_chunk_dtypes_differ():
    from airflow_mlpipe.core.datasets import ChunkedFrameDigest

    whole = pd.DataFrame({"k": [1, 2, 3, 4], "f": [1.0, 2.0, None, 4.0], "b": [True, None, False, True]})
    # Chunk by chunk an integer column without a missing value is int64, a bool one bool.
    chunks = [
        pd.DataFrame({"k": [1, 2], "f": [1, 2], "b": [True, None]}),
        pd.DataFrame({"k": [3, 4], "f": [None, 4.0], "b": [False, True]}),
    ]
    assert [str(c["f"].dtype) for c in chunks] == ["int64", "float64"]
    digest = ChunkedFrameDigest()
    for chunk in chunks:
        digest.add(chunk)
    asked: list[int] = []

    def reread(i, dtypes):
        asked.append(i)
        return chunks[i]

    assert digest.result(reread) == frame_digest(whole)
    assert asked == [0, 1]  # both chunks had a dtype the whole frame does not have
    same = ChunkedFrameDigest().add(whole.iloc[:2]).add(whole.iloc[2:])
    assert same.result(lambda i, d: pytest.fail("no chunk needs re-reading")) == frame_digest(whole)
    with pytest.raises(DataError, match="No chunk"):
        ChunkedFrameDigest().result(reread)
