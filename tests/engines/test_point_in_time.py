"""Backfill + training set against a brute-force reference computed from the raw events.

The reference implements the point-in-time semantics (docs/concepts.md) directly (no blocks, no covers): for each impression
it filters the raw events to [start, end) and aggregates them. Data is random but seeded, with
the edge cases placed on purpose: events on block and window edges, duplicates, null keys and
timestamps, late events, keys with no events, duplicate impressions, watermarks null / unaligned
/ after the impression / far before it, and label events exactly on their window edges.
"""

from __future__ import annotations

import math
import random
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from chispa import assert_approx_df_equality

from spark_jobs.jobs import backfill, timeline, training
from tests.helpers import EVENTS, IMPRESSIONS, LABELS, load, run_job, write_defs, write_parquet

DAY0 = datetime(2026, 3, 1)
G = 300
WINDOWS = {"5m": 300, "1h": 3600, "6h": 21600, "1d": 86400, "2d": 172800}

DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts, dedupe_key: event_id}
  impressions: {path: "${data_root}/impressions", format: parquet, timestamp: ts}
  actions: {path: "${data_root}/labels", format: parquet, timestamp: ts}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [5m, 1h, 1d]
    lateness: 1d
    features:
      - {name: n, aggregation: count, windows: [5m, 1h, 6h, 1d, 2d]}
      - {name: clicks, aggregation: count, filter: "kind = 'click'", windows: [1h, 2d]}
      - {name: total, aggregation: sum, column: value, windows: [1h, 2d]}
      - {name: lo, aggregation: min, column: value, windows: [6h]}
      - {name: hi, aggregation: max, column: value, default: -1, windows: [6h]}
      - {name: mean, aggregation: avg, column: value, windows: [1d]}
      - {name: recent, aggregation: last_n, column: value, n: 3, windows: [1d]}
      - {name: kinds, aggregation: approx_count_distinct, column: kind, windows: [2d]}
      - {name: q, aggregation: approx_quantile, column: value, quantiles: [0.5, 0.9], windows: [1d]}
training_sets:
  ts:
    impressions: impressions
    features: [acts.*]
    labels:
      - {name: clicked, source: actions, filter: "action = 'click'", within: 1h}
"""


def epoch(t: datetime) -> int:
    return int(t.replace(tzinfo=timezone.utc).timestamp())


def make_data(seed: int = 11):
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(6)]  # u5 never has events
    events = []
    for i in range(1500):
        t = DAY0 + timedelta(seconds=rng.randrange(0, 3 * 86400))
        if i % 25 == 0:  # exactly on a 5-minute / hour / day edge
            t = DAY0 + timedelta(seconds=G * rng.randrange(0, 3 * 86400 // G))
        events.append(
            {
                "event_id": f"e{i}",
                "user_id": rng.choice(users[:5]),
                "kind": rng.choice(["view", "view", "click", "share"]),
                "value": float(rng.randint(-20, 100)),
                "ts": t,
            }
        )
    events += [dict(events[i]) for i in range(0, 1500, 50)]  # exact duplicates
    events += [{**events[3], "event_id": "nullkey", "user_id": None}, {**events[4], "event_id": "nullts", "ts": None}]
    events.append({**events[5], "event_id": "nullvalue", "value": None})
    imps = []
    for i in range(400):
        t = DAY0 + timedelta(seconds=rng.randrange(86400, 3 * 86400))
        if i % 20 == 0:
            t = t - timedelta(seconds=epoch(t) % G)  # impression exactly on a block edge
        case = i % 6
        wm = {
            0: None,
            1: t - timedelta(seconds=rng.randrange(1, 1800)),  # unaligned, before
            2: t + timedelta(seconds=rng.randrange(1, 600)),  # after the impression
            3: t - timedelta(days=3),  # so early that short windows are empty
            4: t - timedelta(seconds=epoch(t) % G),  # aligned
            5: t - timedelta(seconds=rng.randrange(1, 300)),
        }[case]
        user = users[i % 6] if i % 37 else None
        imps.append({"impression_id": f"i{i}", "user_id": user, "ts": t, "feature_watermark": wm})
    imps.append(dict(imps[7]))  # duplicate impression row
    labels = []
    for imp in imps[:400]:
        r = rng.random()
        if r < 0.2:
            labels.append({"impression_id": imp["impression_id"], "ts": imp["ts"], "action": "click"})  # at i.ts: in
        elif r < 0.3:
            labels.append({"impression_id": imp["impression_id"], "ts": imp["ts"] + timedelta(hours=1), "action": "click"})  # at edge: out
        elif r < 0.5:
            labels.append({"impression_id": imp["impression_id"], "ts": imp["ts"] + timedelta(minutes=rng.randrange(1, 59)), "action": "click"})
        elif r < 0.6:
            labels.append({"impression_id": imp["impression_id"], "ts": imp["ts"] + timedelta(minutes=5), "action": "save"})
    labels.append({"impression_id": "late", "ts": DAY0 + timedelta(days=5), "action": "click"})  # data end: all mature
    return events, imps, labels


def publish_tables(engine, root: Path):  # type: ignore[no-untyped-def]
    """This data's blocks, a snapshot and a training set, each published once (version 0)."""
    from spark_jobs.jobs import snapshot
    from spark_jobs.storage.tables import Warehouse

    events, imps, labels = make_data()
    data = root / "data"
    write_parquet(data / "events" / "a.parquet", events, EVENTS)
    write_parquet(data / "impressions" / "i.parquet", imps, IMPRESSIONS)
    write_parquet(data / "labels" / "l.parquet", labels, LABELS)
    defs_dir = write_defs(root, DEFS)
    defs = load(defs_dir, data)
    wh = Warehouse(engine.spark, root / "warehouse", engine.writer, lock_timeout_s=30)
    engine.activate()
    run_job(engine, wh, defs, "backfill", backfill.run, start=date(2026, 3, 2), end=date(2026, 3, 4), names=["acts"])
    run_job(engine, wh, defs, "snapshot", snapshot.run, as_of=datetime(2026, 3, 3, 12), names=["acts"])
    run_job(engine, wh, defs, "training-set", training.run, name="ts", start=date(2026, 3, 1), end=date(2026, 3, 5))
    return wh, defs, defs_dir, data


def reference(events, imps, labels):
    """The point-in-time semantics, computed directly from raw events."""
    seen, clean = set(), []
    for e in events:
        if e["user_id"] is None or e["ts"] is None or e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        clean.append(e)
    first = {}
    for imp in sorted(imps, key=lambda r: r["ts"]):
        first.setdefault(imp["impression_id"], imp)
    rows = []
    for imp in sorted(first.values(), key=lambda r: r["impression_id"]):
        t = epoch(imp["ts"])
        tf = t - t % G
        w = imp["feature_watermark"]
        end = tf if w is None else min(epoch(w) - epoch(w) % G, tf)
        row = {"impression_id": imp["impression_id"], "user_id": imp["user_id"], "ts": imp["ts"],
               "feature_watermark": w}

        def window(name: str, pred=lambda e: True):
            start = tf - WINDOWS[name]
            return [e for e in clean if e["user_id"] == imp["user_id"] and start <= epoch(e["ts"]) < end and pred(e)]

        for wn in ["5m", "1h", "6h", "1d", "2d"]:
            row[f"n_{wn}"] = len(window(wn))
        for wn in ["1h", "2d"]:
            row[f"clicks_{wn}"] = len(window(wn, lambda e: e["kind"] == "click"))
            vals = [e["value"] for e in window(wn) if e["value"] is not None]
            row[f"total_{wn}"] = float(sum(vals))
        vals6 = [e["value"] for e in window("6h") if e["value"] is not None]
        row["lo_6h"] = min(vals6) if vals6 else None
        row["hi_6h"] = max(vals6) if vals6 else -1.0
        d1 = [e for e in window("1d") if e["value"] is not None]
        row["mean_1d"] = sum(e["value"] for e in d1) / len(d1) if d1 else None
        row["recent_1d"] = [v for _, v in sorted(((e["ts"], e["value"]) for e in d1), reverse=True)[:3]]
        row["kinds_2d"] = len({e["kind"] for e in window("2d")})
        ordered = sorted(e["value"] for e in d1)
        row["q_1d"] = [ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1] for q in (0.5, 0.9)] if ordered else None
        row["acts_cutoff"] = datetime.fromtimestamp(end, timezone.utc).replace(tzinfo=None)
        i_ts = imp["ts"]
        row["clicked"] = int(any(
            lb["impression_id"] == imp["impression_id"] and lb["action"] == "click" and i_ts <= lb["ts"] < i_ts + timedelta(hours=1)
            for lb in labels
        ))
        row["impression_date"] = i_ts.date()
        rows.append(row)
    return rows


@pytest.fixture
def pipeline(engine, warehouse, tmp_path):  # type: ignore[no-untyped-def]
    events, imps, labels = make_data()
    data = tmp_path / "data"
    write_parquet(data / "events" / "a.parquet", events[: len(events) // 2], EVENTS)
    write_parquet(data / "events" / "b.parquet", events[len(events) // 2 :], EVENTS)
    write_parquet(data / "impressions" / "i.parquet", imps, IMPRESSIONS)
    write_parquet(data / "labels" / "l.parquet", labels, LABELS)
    defs = load(write_defs(tmp_path, DEFS), data)
    run_job(engine, warehouse, defs, "backfill", backfill.run, start=date(2026, 3, 2), end=date(2026, 3, 4), names=["acts"])
    run = run_job(engine, warehouse, defs, "training-set", training.run, name="ts", start=date(2026, 3, 1), end=date(2026, 3, 5))
    return events, imps, labels, warehouse.read("training/ts"), run, defs


def test_training_set_matches_brute_force_reference(engine, warehouse, pipeline) -> None:  # type: ignore[no-untyped-def]
    """Every feature, window, watermark case and label equals the raw-event answer; drops are counted."""
    events, imps, labels, actual, run, defs = pipeline
    expected_rows = reference(events, imps, labels)
    expected = engine.spark.createDataFrame(expected_rows, schema=actual.schema)
    order = lambda df: df.orderBy("impression_id")  # noqa: E731
    assert_approx_df_equality(order(actual), order(expected), precision=1e-6, ignore_nullable=True)
    assert run.counts["ts"]["duplicates"] == 1
    assert run.counts["ts"]["immature_not_emitted"] == 0

    manifests = sorted((warehouse.root / "_runs").glob("*backfill*.json"))
    m = json.loads(manifests[-1].read_text())
    assert m["dropped"] == {
        "acts: null timestamp": 1,
        "acts: null key": 1,
        "acts: duplicate (event_id)": 30,
    }
    assert m["counts"]["acts"]["events_aggregated"] == len(events) - 32
    assert m["status"] == "ok"

    # The lookup read the timeline derived from the pinned block version. Without it (a warehouse
    # from before timelines), the same rows come from the blocks, and the summary says so.
    assert run.inputs["timelines/acts"]["blocks_version"] == run.inputs["blocks/acts"]["version"]
    (warehouse.path("timelines/acts") / timeline.MARKER).unlink()
    again = run_job(engine, warehouse, defs, "training-set", training.run, name="ts", start=date(2026, 3, 1), end=date(2026, 3, 5))
    assert "timelines/acts" not in again.inputs
    assert any("not from timelines/acts" in n for n in again.notes)
    assert_approx_df_equality(order(warehouse.read("training/ts")), order(expected), precision=1e-6, ignore_nullable=True)


def test_windows_reaching_before_the_backfilled_time_are_named_with_the_backfill_that_fills_them(
    engine, warehouse, pipeline
) -> None:  # type: ignore[no-untyped-def]
    """The backfill covered [2026-03-01, 2026-03-04) (a day of lateness); the impressions' 2d windows
    reach further back. Those windows count as empty (the values above), and the run says so."""
    events, imps, labels, actual, run, defs = pipeline
    (note,) = [n for n in run.notes if "was backfilled over" in n]
    assert note.startswith("blocks/acts was backfilled over [2026-03-01 00:00, 2026-03-04 00:00); the windows of ts's impressions")
    command = note.split("To fill them: ")[1]
    assert command.startswith("tilewise backfill --start 2026-02-2") and command.endswith("--end 2026-03-01 --feature-set acts")
    start = date.fromisoformat(command.split("--start ")[1][:10])
    run_job(engine, warehouse, defs, "backfill", backfill.run, start=start, end=date(2026, 3, 1), names=["acts"])
    again = run_job(engine, warehouse, defs, "training-set", training.run, name="ts", start=date(2026, 3, 1), end=date(2026, 3, 5))
    assert not [n for n in again.notes if "was backfilled over" in n]
    order = lambda df: df.orderBy("impression_id")  # noqa: E731
    assert_approx_df_equality(order(warehouse.read("training/ts")), order(actual), precision=1e-9, ignore_nullable=True)
