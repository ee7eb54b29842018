"""The timeline (`timelines/{fs}`) stays equal to the finest blocks it is derived from, on both
engines: a chunked backfill, a late event rewriting an old (partly covered) day, a timeline left
behind the blocks (a crash between the two commits) and caught up by the next backfill, and a
--rebuild. A lookup given a timeline that is not in step reads the blocks and says so."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta
from decimal import Decimal

from spark_jobs.jobs import backfill, timeline
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.tables import Warehouse
from spark_jobs.transforms.timeline import carried
from tests.helpers import EVENTS, load, run_job, write_defs, write_parquet

DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [1h, 1d]
    lateness: 2h
    features: &features
      - {name: n, aggregation: count, windows: [1h, 1d]}
      - {name: total, aggregation: sum, column: value, windows: [1d]}
      - {name: top, aggregation: max, column: ts, windows: [1d]}
      - {name: recent, aggregation: last_n, column: kind, n: 2, windows: [1d]}
      - {name: kinds, aggregation: approx_count_distinct, column: kind, windows: [1d]}
  daily:
    source: events
    key: user_id
    block_sizes: [1h, 1d]
    features: *features
"""
START = datetime(2026, 3, 2)
PARTS = ("n__n", "total__s", "top__m", "recent__a", "kinds__h")


def _events(rng: random.Random, n: int, days: int, tag: str) -> list[dict]:
    return [
        {"event_id": f"{tag}{i}", "user_id": f"u{rng.randrange(4)}", "kind": rng.choice("abcde"),
         "value": float(rng.randint(0, 99)), "ts": START + timedelta(seconds=rng.randrange(0, days * 86400))}
        for i in range(n)
    ]


def _write_days(root, events: list[dict], name: str) -> None:  # type: ignore[no-untyped-def]
    for day in range(7):
        lo, hi = START + timedelta(days=day), START + timedelta(days=day + 1)
        rows = [e for e in events if lo <= e["ts"] < hi]
        if rows:
            write_parquet(root / "events" / f"{lo:%Y-%m-%d}-{name}.parquet", rows, EVENTS)


def _as_tuple(v):  # type: ignore[no-untyped-def]
    return tuple(v) if isinstance(v, list) else v


def _from_timeline(wh: Warehouse, fs: str) -> set[tuple]:
    """(key, day, start, parts...) of every block the timeline in step with the blocks holds."""
    version = timeline.in_step(wh, fs, wh.version(f"blocks/{fs}"))
    assert version is not None, f"timelines/{fs} is not in step with blocks/{fs}"
    out = set()
    for r in wh.read(f"timelines/{fs}", version=version).collect():
        starts = r["_tw_starts"]
        assert all(len(r[p]) == len(starts) for p in PARTS)
        for i, s in enumerate(starts):
            out.add((r["user_id"], r["day"], s, *(_as_tuple(r[p][i]) for p in PARTS)))
    return out


def _from_blocks(wh: Warehouse, fs: str) -> set[tuple]:
    """The same from the finest block rows, each part as the sweep reads it (`carried`)."""
    blocks = wh.read(f"blocks/{fs}").filter("block_size = 3600")
    types = {f.name: f.dataType for f in blocks.schema.fields}
    rows = blocks.selectExpr(
        "user_id", "block_date", "unix_seconds(block_start) AS s", *(f"{carried(p, types[p])[0]} AS {p}" for p in PARTS)
    ).collect()
    return {(r["user_id"], r["block_date"], r["s"], *(_as_tuple(r[p]) for p in PARTS)) for r in rows}


def test_timeline_follows_the_finest_blocks(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    data = tmp_path / "data"
    _write_days(data, _events(rng, 300, 6, "e"), "a")
    defs = load(write_defs(tmp_path, DEFS), data)
    wh = Warehouse(engine.spark, tmp_path / "wh", engine.writer, lock_timeout_s=30)
    chunked = {"start": date(2026, 3, 3), "end": date(2026, 3, 7), "names": ["acts"], "step_days": 2}

    run_job(engine, wh, defs, "backfill", backfill.run, **chunked)
    first = _from_timeline(wh, "acts")
    assert first == _from_blocks(wh, "acts") and len(first) > 50
    assert {d for _, d, *_ in first} >= {date(2026, 3, 2), date(2026, 3, 6)}  # the lateness hours of 03-02 too

    # The timeline left one block version behind (as after a crash between the two commits): a
    # lookup does not use it, and the next backfill, whose chunks are all kept, derives it again.
    marker = wh.path("timelines/acts") / timeline.MARKER
    state = json.loads(marker.read_text())
    marker.write_text(json.dumps({**state, "blocks_version": state["blocks_version"] - 1}))
    run = Run("training-set", wh.root, quiet=True)
    assert timeline.for_lookup(engine, wh, run, "acts", "blocks/acts", wh.version("blocks/acts")) is None
    assert any("not from timelines/acts" in n and "same values" in n for n in run.notes)
    kept = run_job(engine, wh, defs, "backfill", backfill.run, **chunked)
    assert {c["status"] for c in kept.counts["acts"]["chunks"]} == {"skipped"}
    assert _from_timeline(wh, "acts") == _from_blocks(wh, "acts") == first

    # A late event on an old day, and the lateness edge cutting 03-02 at 22:00: that day's
    # timeline row is derived again from the stored hours and the new ones.
    late = {"event_id": "late", "user_id": "u9", "kind": "z", "value": 5.0, "ts": START + timedelta(hours=23, minutes=59)}
    early = {"event_id": "early", "user_id": "u0", "kind": "y", "value": 6.0, "ts": START + timedelta(hours=3)}
    write_parquet(data / "events" / "late.parquet", [late, early], EVENTS)
    run_job(engine, wh, defs, "backfill", backfill.run, start=date(2026, 3, 3), end=date(2026, 3, 4), names=["acts"])
    after = _from_timeline(wh, "acts")
    assert after == _from_blocks(wh, "acts")
    assert ("u9", date(2026, 3, 2), int((START + timedelta(hours=23)).timestamp())) in {a[:3] for a in after}
    assert not any(r[0] == "u0" and r[2] == int((START + timedelta(hours=3)).timestamp()) for r in after)  # before the lateness
    assert {r for r in after if r[1] >= date(2026, 3, 4)} == {r for r in first if r[1] >= date(2026, 3, 4)}


def test_timeline_of_a_rebuilt_table(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    events = _events(random.Random(4), 200, 6, "e")
    _write_days(data, events, "a")
    defs = load(write_defs(tmp_path, DEFS), data)
    wh = Warehouse(engine.spark, tmp_path / "wh", engine.writer, lock_timeout_s=30)
    run_job(engine, wh, defs, "backfill", backfill.run, start=date(2026, 3, 2), end=date(2026, 3, 7), names=["daily"])
    assert _from_timeline(wh, "daily") == _from_blocks(wh, "daily")
    run_job(engine, wh, defs, "backfill", backfill.run, start=date(2026, 3, 4), end=date(2026, 3, 6), names=["daily"],
            rebuild=True, step_days=2)
    rebuilt = _from_timeline(wh, "daily")
    assert rebuilt == _from_blocks(wh, "daily")
    assert {d for _, d, *_ in rebuilt} == {date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)}  # 1d of lateness
    assert sum(r[3] for r in rebuilt) == sum(1 for e in events if datetime(2026, 3, 3) <= e["ts"] < datetime(2026, 3, 6))
    assert sum(r[4] for r in rebuilt) == sum(Decimal(e["value"]) for e in events if datetime(2026, 3, 3) <= e["ts"] < datetime(2026, 3, 6))
