"""Chunked backfills on both engines: chunks equal one run block for block (duplicates across
chunk edges, an unaligned lateness edge, roll-ups), and a re-run after a failure keeps the chunks
already committed while their source files are unchanged."""

from __future__ import annotations

import os
import random
import shutil
from datetime import date, datetime, timedelta

import pytest
from chispa import assert_df_equality

from spark_jobs.jobs import backfill, timeline
from spark_jobs.storage import tables
from spark_jobs.storage.tables import Warehouse
from tests.helpers import EVENTS, load, run_job, write_defs, write_parquet

DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts, dedupe_key: event_id}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [1h, 1d]
    lateness: 2h
    features:
      - {name: n, aggregation: count, windows: [1h, 1d]}
      - {name: total, aggregation: sum, column: value, windows: [1d]}
      - {name: top, aggregation: max, column: value, windows: [1d]}
      - {name: kinds, aggregation: approx_count_distinct, column: kind, windows: [1d]}
"""
KEYS = ["user_id", "block_size", "block_start"]
START = datetime(2026, 3, 2)


@pytest.fixture
def data(tmp_path):  # type: ignore[no-untyped-def]
    rng = random.Random(5)
    events = [
        {
            "event_id": f"e{i}",
            "user_id": f"u{rng.randrange(5)}",
            "kind": rng.choice("abcdefg"),
            "value": float(rng.randint(0, 99)),
            "ts": START + timedelta(seconds=rng.randrange(0, 6 * 86400)),
        }
        for i in range(500)
    ]
    # Duplicates a day or more later (the earliest wins, in the chunk before), and two events
    # without an id on different days (one run keeps one of them: nulls group together).
    events += [{**e, "value": 1000.0, "ts": e["ts"] + timedelta(days=1, hours=3)} for e in events[:40]]
    events += [
        {"event_id": None, "user_id": "u1", "kind": "z", "value": 7.0, "ts": START + timedelta(days=2, hours=5)},
        {"event_id": None, "user_id": "u2", "kind": "y", "value": 9.0, "ts": START + timedelta(days=4, hours=1)},
    ]
    for day in range(8):
        lo, hi = START + timedelta(days=day), START + timedelta(days=day + 1)
        write_parquet(tmp_path / "data" / "events" / f"{lo:%Y-%m-%d}.parquet", [e for e in events if lo <= e["ts"] < hi], EVENTS)
    return tmp_path


def _blocks(wh: Warehouse):  # type: ignore[no-untyped-def]
    return wh.read("blocks/acts").orderBy(*KEYS)


def _warehouse(engine, root, name: str) -> Warehouse:  # type: ignore[no-untyped-def]
    return Warehouse(engine.spark, root / name, engine.writer, lock_timeout_s=30)


def test_chunks_equal_one_run_block_for_block(engine, data) -> None:  # type: ignore[no-untyped-def]
    defs = load(write_defs(data, DEFS), data / "data")
    one, chunked = _warehouse(engine, data, "one"), _warehouse(engine, data, "chunked")
    # A day already there: the range's first daily block mixes stored hours with new ones.
    run_job(engine, one, defs, "backfill", backfill.run, start=date(2026, 3, 2), end=date(2026, 3, 3), names=["acts"])
    shutil.copytree(one.root / "blocks", chunked.root / "blocks")
    full = run_job(engine, one, defs, "backfill", backfill.run, start=date(2026, 3, 3), end=date(2026, 3, 5), names=["acts"])
    parts = run_job(engine, chunked, defs, "backfill", backfill.run, start=date(2026, 3, 3), end=date(2026, 3, 5),
                    names=["acts"], step_days=1)
    assert_df_equality(_blocks(one), _blocks(chunked), ignore_nullable=True)

    chunks = parts.counts["acts"]["chunks"]
    # 2h of lateness before 03-03, then one chunk per day, each its own commit.
    assert [c["range"] for c in chunks][:2] == [
        ["2026-03-02T22:00:00Z", "2026-03-03T00:00:00Z"], ["2026-03-03T00:00:00Z", "2026-03-04T00:00:00Z"]]
    assert len(chunks) == 3 and {c["status"] for c in chunks} == {"done"}
    assert [c["version"] for c in chunks] == list(range(1, 4))
    assert len(full.counts["acts"]["chunks"]) == 1
    assert parts.counts["acts"]["events_aggregated"] == full.counts["acts"]["events_aggregated"]
    assert parts.dropped == full.dropped and parts.dropped["acts: duplicate (event_id)"] > 0
    assert parts.counts["acts"]["progress"]["chunks_finished"] == 3


def test_a_rerun_after_a_failure_keeps_committed_chunks(sail_engine, data, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On Sail only: what is kept depends on manifests and files, not on the engine (the chunks'
    equality on classic Spark is the test above)."""
    engine = sail_engine
    engine.activate()
    defs = load(write_defs(data, DEFS), data / "data")
    wh, clean = _warehouse(engine, data, "resumed"), _warehouse(engine, data, "clean")
    args = {"start": date(2026, 3, 3), "end": date(2026, 3, 7), "names": ["acts"], "step_days": 1}
    real = tables.retry_conflicts  # every commit of a range, whichever way it is written
    commits = []

    def third_commit_fails(table, *a, **k):  # type: ignore[no-untyped-def]
        if table.startswith("blocks/"):  # the block table's third commit (not its timeline's)
            if len(commits) == 3:
                raise OSError("No space left on device")
            commits.append(table)
        return real(table, *a, **k)

    monkeypatch.setattr(tables, "retry_conflicts", third_commit_fails)
    with pytest.raises(OSError, match="No space left"):
        run_job(engine, wh, defs, "backfill", backfill.run, **args)
    monkeypatch.setattr(tables, "retry_conflicts", real)
    assert wh.version("blocks/acts") == 2
    assert timeline.in_step(wh, "acts", 2) is not None  # the timeline of the chunks committed

    # One file behind the last committed chunk changes: that chunk is computed again.
    changed = data / "data" / "events" / "2026-03-03.parquet"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    again = run_job(engine, wh, defs, "backfill", backfill.run, **args)
    status = [c["status"] for c in again.counts["acts"]["chunks"]]
    assert status == ["skipped", "done", "done", "done", "done"]
    assert again.counts["acts"]["chunks"][0]["kept_from"] in again.notes[0]
    assert "5 chunks" in again.notes[0] and "4 computed; 1 kept" in again.notes[0]

    run_job(engine, clean, defs, "backfill", backfill.run, **args, resume=False)
    assert_df_equality(_blocks(wh), _blocks(clean), ignore_nullable=True)

    # A finished run of the same range keeps everything; --no-resume computes everything.
    kept = run_job(engine, wh, defs, "backfill", backfill.run, **args)
    assert {c["status"] for c in kept.counts["acts"]["chunks"]} == {"skipped"}
    assert wh.version("blocks/acts") == 6
    assert timeline.in_step(wh, "acts", 6) is not None
    fresh = run_job(engine, wh, defs, "backfill", backfill.run, **args, resume=False)
    assert {c["status"] for c in fresh.counts["acts"]["chunks"]} == {"done"}
    assert_df_equality(_blocks(wh), _blocks(clean), ignore_nullable=True)
