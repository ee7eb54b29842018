"""File checks of Parquet sources without an engine: which columns the definitions use, and drift."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from spark_jobs.errors import InputDataError
from spark_jobs.storage.sources import TimeRange, select_files
from tests.helpers import EVENTS, REPO, load, write_defs, write_parquet

DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts, dedupe_key: event_id}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [5m]
    features:
      - {name: total, aggregation: sum, column: value, filter: "FILTER_COLUMN = 'view'", windows: [5m]}
"""
ROW = {"event_id": "e", "user_id": "u", "kind": "view", "value": 1.0, "ts": datetime(2026, 3, 1)}


def _check(tmp_path: Path, filter_column: str = "kind") -> None:
    defs = load(write_defs(tmp_path, DEFS.replace("FILTER_COLUMN", filter_column)), tmp_path / "data")
    select_files(defs.source_read("events"), TimeRange())


def test_columns_used_reach_through_sql_views_to_the_files() -> None:
    defs = load(REPO / "feature_defs", REPO / "data")
    used = defs.columns_used("events")  # read by the view `views` (sql/views.sql)
    assert {"ts", "event_id"} <= used.named
    assert {"user_id", "item_id", "duration_s", "event_type"} <= used.words


def test_a_column_added_later_or_unused_and_missing_is_no_drift(tmp_path: Path) -> None:
    events = tmp_path / "data" / "events"
    write_parquet(events / "a.parquet", [ROW], EVENTS)
    write_parquet(events / "b.parquet", [{**ROW, "country": "fr"}], EVENTS.append(pa.field("country", pa.string())))
    write_parquet(events / "c.parquet", [ROW], EVENTS.remove(EVENTS.get_field_index("kind")))
    _check(tmp_path, filter_column="user_id")  # kind is not used: c may lack it
    with pytest.raises(InputDataError, match=r"source events: file .*c\.parquet: column kind is missing"):
        _check(tmp_path, filter_column="kind")  # the filter reads kind: c would give nulls


def test_the_expected_type_is_the_one_most_files_have(tmp_path: Path) -> None:
    events = tmp_path / "data" / "events"
    write_parquet(events / "a.parquet", [{**ROW, "value": "1"}], EVENTS.set(3, pa.field("value", pa.string())))
    write_parquet(events / "b.parquet", [ROW], EVENTS)
    write_parquet(events / "c.parquet", [ROW], EVENTS)
    with pytest.raises(InputDataError, match=r"file .*a\.parquet: column value is string, expected double \(its type in 2 of"):
        _check(tmp_path)


# -- timestamps as Python writers store them ----------------------------------------------------


def test_the_read_schema_of_nanosecond_files_is_derived_from_their_footers() -> None:
    from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, TimestampNTZType, TimestampType

    from spark_jobs.storage.sources import spark_schema

    a = pa.schema([("id", pa.string()), ("ts", pa.timestamp("ns", tz="UTC")), ("tags", pa.list_(pa.string()))])
    b = pa.schema([("ts", pa.timestamp("ns")), ("ID", pa.string()), ("seen", pa.timestamp("us")), ("v", pa.float64())])
    files = {Path("a.parquet"): a, Path("b.parquet"): b}
    classic = spark_schema("events", files, classic=True)
    sail = spark_schema("events", files, classic=False)
    # Every column of any file, first-seen order, names compared without case (Spark's rule).
    assert classic.names == sail.names == ["id", "ts", "tags", "seen", "v"]
    assert classic["ts"].dataType == LongType()  # read as a number, converted after
    assert sail["ts"].dataType == TimestampType()  # Sail truncates to microseconds itself
    for schema in (classic, sail):
        assert schema["id"].dataType == StringType() and schema["tags"].dataType == ArrayType(StringType())
        assert schema["seen"].dataType == TimestampNTZType() and schema["v"].dataType == DoubleType()


def test_nanoseconds_inside_a_nested_column_are_refused_naming_the_column() -> None:
    from spark_jobs.storage.sources import assert_readable_types

    ok = pa.schema([("ts", pa.timestamp("ns", tz="UTC")), ("at", pa.struct([("t", pa.timestamp("us"))]))])
    assert_readable_types("events", Path("a.parquet"), ok)
    for nested in (
        pa.struct([("t", pa.timestamp("ns"))]),
        pa.list_(pa.timestamp("ns", tz="UTC")),
        pa.map_(pa.string(), pa.timestamp("ns")),
    ):
        bad = pa.schema([("ts", pa.timestamp("us")), ("extra", nested)])
        with pytest.raises(InputDataError, match=r"source events: file b\.parquet: column extra .*nanosecond timestamps inside"):
            assert_readable_types("events", Path("b.parquet"), bad)


def test_a_timestamp_unit_is_no_drift_but_naive_against_utc_is(tmp_path: Path) -> None:
    events = tmp_path / "data" / "events"
    write_parquet(events / "a.parquet", [ROW], EVENTS)  # naive microseconds
    write_parquet(events / "b.parquet", [ROW], EVENTS.set(4, pa.field("ts", pa.timestamp("ns"))))
    write_parquet(events / "c.parquet", [ROW], EVENTS.set(4, pa.field("ts", pa.timestamp("ms"))))
    _check(tmp_path)
    write_parquet(events / "d.parquet", [ROW], EVENTS.set(4, pa.field("ts", pa.timestamp("ns", tz="UTC"))))
    with pytest.raises(InputDataError, match=r"file .*d\.parquet: column ts is timestamp\[us, tz=UTC\], expected timestamp\[us\]"):
        _check(tmp_path)


def test_truncation_moves_a_time_across_a_block_edge_only_before_1970(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from spark_jobs.storage.sources import _moved_by_truncation

    ns = [-1, -999, -1000, -1001, -300 * 10**9 - 1, -299 * 10**9 - 1, 1_767_225_899_999_999_999, None]
    old = tmp_path / "old.parquet"
    pq.write_table(pa.table({"ts": pa.array(ns, pa.timestamp("ns", tz="UTC")), "wm": pa.array([0] * 8, pa.timestamp("ns"))}), old)
    recent = tmp_path / "recent.parquet"
    pq.write_table(pa.table({"ts": pa.array([1, 999, 300 * 10**9 - 1], pa.timestamp("ns"))}), recent)
    footers = {old: pq.ParquetFile(old).metadata, recent: pq.ParquetFile(recent).metadata}
    # Toward zero: -1, -999 ns -> 0 (an edge of every block size); -1001 ns -> -1 us (no edge);
    # -300 s - 1 ns -> -300 s (a 5-minute edge, not a 7-minute one); -299 s - 1 ns -> -299 s (a second).
    assert _moved_by_truncation(footers, 300) == {"ts": 3}  # wm and recent.parquet: footers show no time before 1970, not read
    assert _moved_by_truncation(footers, 420) == {"ts": 2}
    assert _moved_by_truncation(footers, 1) == {"ts": 4}


def test_types_the_engines_cannot_read_are_refused_naming_the_column() -> None:
    from spark_jobs.storage.sources import assert_readable_types

    assert_readable_types("events", Path("a.parquet"), pa.schema([("d", pa.duration("us")), ("t", pa.time64("us"))]))
    for dtype, why in (
        (pa.float16(), "half float"),
        (pa.duration("ns"), "nanosecond unit"),
        (pa.time64("ns"), "nanosecond unit"),
        (pa.list_(pa.float16()), "half float"),
    ):
        with pytest.raises(InputDataError, match=rf"source events: file a\.parquet: column x has type .*cannot read \({why}\)"):
            assert_readable_types("events", Path("a.parquet"), pa.schema([("ts", pa.timestamp("us")), ("x", dtype)]))


def test_an_engine_without_a_type_for_a_column_is_an_input_error_naming_source_file_and_column(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from pyspark.errors.exceptions.connect import UnsupportedOperationException

    from spark_jobs.storage.sources import InputStats, reading

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"ts": pa.array([0], pa.timestamp("us")), "span": pa.array([1], pa.duration("ns"))}), path)
    stats = {"events": InputStats("events", paths=[str(path)])}
    with pytest.raises(InputDataError, match=r"source events: file .*a\.parquet: column span \(duration\[ns\]\): the engine cannot read"):
        with reading(stats):
            raise UnsupportedOperationException(message="cast Duration(Nanosecond) to Spark data type")
    with pytest.raises(InputDataError, match=r"source events: a column has a type the engine cannot read \(Float16\)"):
        with reading(stats):
            raise UnsupportedOperationException(message="cast Float16 to Spark data type")
    with pytest.raises(UnsupportedOperationException):  # no source read: not an input error
        with reading({}):
            raise UnsupportedOperationException(message="cast Float16 to Spark data type")


def test_footer_bounds_of_nanosecond_files_are_truncated_as_the_engines_read_them(tmp_path: Path) -> None:
    """A file whose only time is 500 ns before 1970 holds, once read, 1970-01-01 00:00: a range
    starting then must read it; a file with 00:04:59.999999999 must not be read for [00:05, ...)."""
    events = tmp_path / "data" / "events"
    write_parquet(events / "a.parquet", [{**ROW, "ts": -500}], EVENTS.set(4, pa.field("ts", pa.timestamp("ns"))))
    write_parquet(events / "b.parquet", [{**ROW, "ts": 299_999_999_999}], EVENTS.set(4, pa.field("ts", pa.timestamp("ns"))))
    defs = load(write_defs(tmp_path, DEFS.replace("FILTER_COLUMN", "kind")), tmp_path / "data")
    _, chosen = select_files(defs.source_read("events"), TimeRange(lo=datetime(1970, 1, 1), hi=datetime(1970, 1, 1, 0, 5)))
    assert [f.name for f in chosen] == ["a.parquet", "b.parquet"]
    _, chosen = select_files(defs.source_read("events"), TimeRange(lo=datetime(1970, 1, 1, 0, 5)))
    assert chosen == []
