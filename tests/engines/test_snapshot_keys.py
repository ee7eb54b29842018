"""A snapshot holds every key that has blocks, windows empty or not: also keys whose only events
are older than the longest window, and keys backfilled in separate runs of separate days."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from spark_jobs.jobs import backfill, snapshot
from spark_jobs.storage.tables import Warehouse
from tests.helpers import EVENTS, load, run_job, write_defs, write_parquet

FEATURE_SET = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts, dedupe_key: event_id}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [5m, 1h, 1d]
    features:
"""
DEFS = FEATURE_SET + "      - {name: n, aggregation: count, windows: [1h, 1d]}\n"


def test_snapshot_has_every_key_with_blocks(engine, tmp_path: Path) -> None:
    def event(i: int, user: str, when: str) -> dict:
        return {"event_id": f"e{i}", "user_id": user, "kind": "view", "value": 1.0, "ts": datetime.fromisoformat(when)}

    write_parquet(tmp_path / "data" / "events" / "a.parquet", [
        event(1, "old", "2026-03-01T09:03:00"),  # only events days before the snapshot's windows
        event(2, "old", "2026-03-01T23:59:59"),
        event(3, "edge", "2026-03-05T00:00:00"),  # first instant of the second run's range
        event(4, "now", "2026-03-05T11:10:00"),
        event(5, "now", "2026-03-05T11:40:00"),
    ], EVENTS)
    defs = load(write_defs(tmp_path, DEFS), tmp_path / "data")
    wh = Warehouse(engine.spark, tmp_path / "warehouse", engine.writer, lock_timeout_s=30)
    run_job(engine, wh, defs, "backfill", backfill.run, start=date(2026, 3, 1), end=date(2026, 3, 2), names=["acts"])
    run_job(engine, wh, defs, "backfill", backfill.run, start=date(2026, 3, 5), end=date(2026, 3, 6), names=["acts"])
    run_job(engine, wh, defs, "snapshot", snapshot.run, as_of=datetime(2026, 3, 5, 12), names=["acts"])

    keys_with_blocks = {r[0] for r in wh.read("blocks/acts").select("user_id").distinct().collect()}
    rows = {r["user_id"]: (r["n_1h"], r["n_1d"]) for r in wh.read("snapshots/acts").collect()}
    assert keys_with_blocks == set(rows) == {"old", "edge", "now"}
    assert rows == {"old": (0, 0), "edge": (0, 1), "now": (2, 2)}


WINDOWS_DEFS = FEATURE_SET + """\
      - {name: n, aggregation: count, windows: [5m, 1h, 1d, 2d]}
      - {name: total, aggregation: sum, column: value, windows: [1h, 2d]}
"""


def test_snapshot_values_equal_the_raw_events_at_an_unaligned_time(engine, tmp_path: Path) -> None:
    """The snapshot reads only the blocks its covers use: at an as-of time on no hour or day
    boundary (every level's edges in play), each window still equals the raw events in
    [floor_5m(as_of) - w, floor_5m(as_of)), events exactly on the edges included."""
    as_of = datetime(2026, 3, 5, 13, 47, 30)
    end = datetime(2026, 3, 5, 13, 45)
    stamps = [
        "2026-03-03T13:45:00", "2026-03-03T13:44:59", "2026-03-03T23:59:59", "2026-03-04T00:00:00",
        "2026-03-04T13:44:59", "2026-03-04T13:45:00", "2026-03-04T14:00:00", "2026-03-05T00:00:00",
        "2026-03-05T12:44:59", "2026-03-05T12:45:00", "2026-03-05T13:00:00", "2026-03-05T13:39:59",
        "2026-03-05T13:40:00", "2026-03-05T13:44:59", "2026-03-05T13:45:00", "2026-03-05T13:46:00",
    ]
    rows = [
        {"event_id": f"e{i}-{u}", "user_id": u, "kind": "view", "value": float(i + 1), "ts": datetime.fromisoformat(s)}
        for i, s in enumerate(stamps) for u in ("a", "b") if u == "a" or i % 3 == 0
    ]
    write_parquet(tmp_path / "data" / "events" / "a.parquet", rows, EVENTS)
    defs = load(write_defs(tmp_path, WINDOWS_DEFS), tmp_path / "data")
    wh = Warehouse(engine.spark, tmp_path / "warehouse", engine.writer, lock_timeout_s=30)
    run_job(engine, wh, defs, "backfill", backfill.run, start=date(2026, 3, 3), end=date(2026, 3, 6), names=["acts"])
    run_job(engine, wh, defs, "snapshot", snapshot.run, as_of=as_of, names=["acts"])

    seconds = {"5m": 300, "1h": 3600, "1d": 86400, "2d": 172800}
    got = {r["user_id"]: r.asDict() for r in wh.read("snapshots/acts").collect()}
    for user in ("a", "b"):
        for col, agg in (("n", len), ("total", sum)):
            for w in (("5m", "1h", "1d", "2d") if col == "n" else ("1h", "2d")):
                lo = end.timestamp() - seconds[w]
                inside = [r["value"] for r in rows if r["user_id"] == user and lo <= r["ts"].timestamp() < end.timestamp()]
                assert float(got[user][f"{col}_{w}"]) == float(agg(inside)), (user, col, w)
