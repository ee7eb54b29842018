"""File checks of Parquet sources without an engine: which columns the definitions use, and drift."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from spark_jobs.errors import InputDataError
from spark_jobs.storage.sources import TimeRange, columns_used, select_files
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
    select_files(defs, "events", TimeRange())


def test_columns_used_reach_through_sql_views_to_the_files() -> None:
    defs = load(REPO / "feature_defs", REPO / "data")
    named, words = columns_used(defs, "events")  # read by the view `views` (sql/views.sql)
    assert {"ts", "event_id"} <= named
    assert {"user_id", "item_id", "duration_s", "event_type"} <= words


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
