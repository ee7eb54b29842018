"""Backfill ranges on both engines: nightly runs equal one full run (weekly blocks across a week
edge, filled from stored daily blocks), and a definition change needs --rebuild."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
from chispa import assert_df_equality

from spark_jobs.errors import InputDataError
from spark_jobs.jobs import backfill
from spark_jobs.storage.tables import Warehouse
from tests.helpers import EVENTS, load, run_job, write_defs, write_parquet

# Epoch weeks start on Thursdays: 2026-03-05 is one, so the run below crosses a week edge.
WEEK_EDGE = datetime(2026, 3, 5)
DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [1h, 1d, 1w]
    lateness: 1d
    features:
      - {name: n, aggregation: count, windows: [1h, 1d, 1w]}
      - {name: total, aggregation: sum, column: value, windows: [1d, 2w]}
"""
EXTRA = "      - {name: top, aggregation: max, column: value, windows: [1d]}\n"
KEYS = ["user_id", "block_size", "block_start"]


@pytest.fixture
def data(tmp_path):  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    start = datetime(2026, 3, 2)
    events = [
        {
            "event_id": f"e{i}",
            "user_id": f"u{rng.randrange(4)}",
            "kind": "view",
            "value": float(rng.randint(0, 9)),
            "ts": start + timedelta(seconds=rng.randrange(0, 5 * 86400)),
        }
        for i in range(600)
    ]
    events.append({**events[0], "event_id": "edge", "ts": WEEK_EDGE})  # first instant of the new week
    for day in range(5):  # one file per day, as an event log lands
        lo, hi = start + timedelta(days=day), start + timedelta(days=day + 1)
        write_parquet(tmp_path / "data" / "events" / f"{lo:%Y-%m-%d}.parquet", [e for e in events if lo <= e["ts"] < hi], EVENTS)
    return tmp_path, events


def _blocks(wh: Warehouse):  # type: ignore[no-untyped-def]
    return wh.read("blocks/acts").orderBy(*KEYS)


def test_nightly_runs_equal_one_full_run_across_a_week_edge(engine, data) -> None:  # type: ignore[no-untyped-def]
    root, events = data
    defs = load(write_defs(root, DEFS), root / "data")
    nightly = Warehouse(engine.spark, root / "nightly", engine.writer, lock_timeout_s=30)
    full = Warehouse(engine.spark, root / "full", engine.writer, lock_timeout_s=30)
    for day in range(4, 7):  # each nightly run also recomputes the day before (lateness 1d)
        last = run_job(engine, nightly, defs, "backfill", backfill.run, start=date(2026, 3, day), end=date(2026, 3, day + 1), names=["acts"])
    # The nightly run of 03-06 opens only the files of 03-05 and 03-06 (Parquet footer statistics).
    assert (last.inputs["events"]["files_read"], last.inputs["events"]["files_total"]) == (2, 5)
    run_job(engine, full, defs, "backfill", backfill.run, start=date(2026, 3, 4), end=date(2026, 3, 7), names=["acts"])
    assert_df_equality(_blocks(nightly), _blocks(full), ignore_nullable=True)

    weekly = {
        r["block_start"]: r["n"]
        for r in full.read("blocks/acts").filter("block_size = 604800").groupBy("block_start").agg({"event_count": "sum"})
        .withColumnRenamed("sum(event_count)", "n").collect()
    }
    in_range = [e["ts"] for e in events if datetime(2026, 3, 3) <= e["ts"] < datetime(2026, 3, 7)]
    assert weekly == {
        WEEK_EDGE - timedelta(days=7): sum(t < WEEK_EDGE for t in in_range),
        WEEK_EDGE: sum(t >= WEEK_EDGE for t in in_range),
    }


def test_definition_change_needs_rebuild(engine, data) -> None:  # type: ignore[no-untyped-def]
    root, _ = data
    wh = Warehouse(engine.spark, root / "wh", engine.writer, lock_timeout_s=30)
    old = load(write_defs(root / "old", DEFS), root / "data")
    run_job(engine, wh, old, "backfill", backfill.run, start=date(2026, 3, 3), end=date(2026, 3, 7), names=["acts"])
    before = _blocks(wh).collect()
    old_columns = wh.read("blocks/acts").columns

    new = load(write_defs(root / "new", DEFS + EXTRA), root / "data")
    with pytest.raises(InputDataError, match=r"another definition \(features.top added\).*--rebuild"):
        run_job(engine, wh, new, "backfill", backfill.run, start=date(2026, 3, 6), end=date(2026, 3, 7), names=["acts"])
    with pytest.raises(InputDataError, match="must start and end on 604800s block edges"):
        run_job(engine, wh, new, "backfill", backfill.run, start=date(2026, 3, 6), end=date(2026, 3, 7), names=["acts"], rebuild=True)
    assert wh.version("blocks/acts") == 0
    assert sorted(map(repr, _blocks(wh).collect())) == sorted(map(repr, before)), "refused runs change nothing"

    # A week-aligned rebuild of the whole history (lateness 1d: the range starts on 02-26).
    run_job(engine, wh, new, "backfill", backfill.run, start=date(2026, 2, 27), end=date(2026, 3, 12), names=["acts"], rebuild=True)
    assert wh.version("blocks/acts") == 1
    fresh = Warehouse(engine.spark, root / "fresh", engine.writer, lock_timeout_s=30)
    run_job(engine, fresh, new, "backfill", backfill.run, start=date(2026, 2, 27), end=date(2026, 3, 12), names=["acts"])
    assert_df_equality(_blocks(wh), _blocks(fresh), ignore_nullable=True)
    assert "top__m" in wh.read("blocks/acts").columns
    assert wh.read("blocks/acts", version=0).columns == old_columns, "the old version stays readable"


def test_a_changed_filter_keeps_the_columns_but_is_refused(sail_engine, data) -> None:  # type: ignore[no-untyped-def]
    """Same columns, other numbers: only the recorded lineage tells the difference."""
    root, _ = data
    engine = sail_engine
    engine.activate()
    wh = Warehouse(engine.spark, root / "wh", engine.writer, lock_timeout_s=30)
    old = load(write_defs(root / "old", DEFS), root / "data")
    run_job(engine, wh, old, "backfill", backfill.run, start=date(2026, 3, 5), end=date(2026, 3, 6), names=["acts"])

    windows = load(write_defs(root / "windows", DEFS.replace("windows: [1h, 1d, 1w]", "windows: [1h, 1d, 2w]")), root / "data")
    run_job(engine, wh, windows, "backfill", backfill.run, start=date(2026, 3, 6), end=date(2026, 3, 7), names=["acts"])
    assert wh.version("blocks/acts") == 1, "windows are not part of the blocks: accepted"

    filtered = DEFS.replace("column: value, windows: [1d, 2w]", "column: value, filter: 'value > 3', windows: [1d, 2w]")
    new = load(write_defs(root / "new", filtered), root / "data")
    with pytest.raises(InputDataError, match=r"features.total.filter: None -> 'value > 3'.*--rebuild"):
        run_job(engine, wh, new, "backfill", backfill.run, start=date(2026, 3, 6), end=date(2026, 3, 7), names=["acts"])
    assert wh.version("blocks/acts") == 1
    run_job(engine, wh, new, "backfill", backfill.run, start=date(2026, 2, 27), end=date(2026, 3, 12), names=["acts"], rebuild=True)
    run_job(engine, wh, new, "backfill", backfill.run, start=date(2026, 3, 6), end=date(2026, 3, 7), names=["acts"])
    assert wh.version("blocks/acts") == 3, "after the rebuild, nightly runs of the new definition go on"
