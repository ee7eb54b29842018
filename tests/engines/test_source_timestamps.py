"""Sources as pandas writes them: nanosecond and naive timestamps give the rows microsecond files give.

The same events, impressions and labels are written three ways: microseconds with a UTC zone
(the reference), pandas' default `to_parquet` (nanoseconds, UTC) with sub-microsecond parts, and
naive timestamps (taken as UTC) with the events split into a nanosecond file and a microsecond
file. Blocks and training rows must be the same on each engine, and a nanosecond time before 1970
truncates to the same instant on both engines, counted when it moves into the next block.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from chispa import assert_df_equality

from spark_jobs.jobs import backfill, training
from spark_jobs.storage.sources import InputStats, read_parquet
from spark_jobs.storage.tables import Warehouse
from tests.helpers import load, run_job, write_defs

DAY0 = datetime(2026, 3, 1)
DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts, dedupe_key: event_id}
  impressions: {path: "${data_root}/impressions", format: parquet, timestamp: ts}
  actions: {path: "${data_root}/labels", format: parquet, timestamp: ts}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [5m, 1h]
    lateness: 1d
    features:
      - {name: n, aggregation: count, windows: [5m, 1h, 1d]}
      - {name: total, aggregation: sum, column: value, windows: [1h]}
      - {name: recent, aggregation: last_n, column: value, n: 2, windows: [1d]}
training_sets:
  ts:
    impressions: impressions
    features: [acts.*]
    labels:
      - {name: clicked, source: actions, filter: "action = 'click'", within: 10m}
"""


def _frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Events, impressions and labels with nanosecond UTC times, many on or 1 ns off a block edge."""
    rng = random.Random(15)
    base = pd.Timestamp(DAY0, tz="UTC")
    ev_ts = []
    for i in range(400):
        t = base + pd.Timedelta(seconds=rng.randrange(0, 2 * 86400), microseconds=rng.randrange(10**6))
        if i % 10 == 0:  # on a 5-minute edge, or the last nanosecond before it
            t = base + pd.Timedelta(minutes=5 * rng.randrange(1, 2 * 288)) - pd.Timedelta(nanoseconds=i % 20 // 10)
        ev_ts.append(t + pd.Timedelta(nanoseconds=rng.randrange(1000) if i % 10 else 0))
    events = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(400)],
            "user_id": [f"u{rng.randrange(4)}" for _ in range(400)],
            "value": [float(rng.randint(0, 9)) for _ in range(400)],
            "ts": ev_ts,
        }
    )
    imp_ts = [base + pd.Timedelta(seconds=rng.randrange(86400, 2 * 86400), nanoseconds=rng.randrange(10**9)) for _ in range(80)]
    impressions = pd.DataFrame(
        {
            "impression_id": [f"i{i}" for i in range(80)],
            "user_id": [f"u{i % 5}" for i in range(80)],
            "ts": imp_ts,
            "feature_watermark": [t - pd.Timedelta(nanoseconds=rng.randrange(10**12)) for t in imp_ts],
        }
    )
    lab = []
    for i, t in enumerate(imp_ts):
        # A click a few nanoseconds after the impression (same microsecond or the next) or before it
        # (truncated into the impression's microsecond, it counts, as in the microsecond files), or
        # minutes later.
        if i % 4 == 0:
            lab.append({"impression_id": f"i{i}", "ts": t + pd.Timedelta(nanoseconds=rng.randrange(1, 3000)), "action": "click"})
        elif i % 4 == 1:
            lab.append({"impression_id": f"i{i}", "ts": t - pd.Timedelta(nanoseconds=rng.randrange(1, 3000)), "action": "click"})
        if i % 3 == 0:
            lab.append({"impression_id": f"i{i}", "ts": t + pd.Timedelta(minutes=rng.randrange(1, 20)), "action": "click"})
    lab.append({"impression_id": "late", "ts": base + pd.Timedelta(days=4), "action": "click"})  # every label mature
    return events, impressions, pd.DataFrame(lab)


def _micros(df: pd.DataFrame) -> pd.DataFrame:
    """The same rows with every time truncated to the microsecond (all after 1970: toward the past)."""
    return df.assign(**{c: df[c].dt.floor("us").astype("datetime64[us, UTC]") for c in df.columns if c in ("ts", "feature_watermark")})


def _naive(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(**{c: df[c].dt.tz_localize(None) for c in df.columns if c in ("ts", "feature_watermark")})


def write_variant(root: Path, variant: str) -> Path:
    """The data under root/variant, written as `micros`, `nanos` or `naive` (see the module docstring)."""
    events, imps, labels = _frames()
    data = root / variant
    for sub in ("events", "impressions", "labels"):
        (data / sub).mkdir(parents=True)
    if variant == "micros":
        _micros(events).to_parquet(data / "events" / "a.parquet")
        _micros(imps).to_parquet(data / "impressions" / "i.parquet")
        _micros(labels).to_parquet(data / "labels" / "l.parquet")
    elif variant == "nanos":  # pandas' default
        events.to_parquet(data / "events" / "a.parquet")
        imps.to_parquet(data / "impressions" / "i.parquet")
        labels.to_parquet(data / "labels" / "l.parquet")
    else:  # naive times; the events' first day in nanoseconds, the second in microseconds
        first = events["ts"] < pd.Timestamp(DAY0 + timedelta(days=1), tz="UTC")
        _naive(events[first]).to_parquet(data / "events" / "a.parquet")
        _naive(_micros(events[~first])).to_parquet(data / "events" / "b.parquet")
        _naive(imps).to_parquet(data / "impressions" / "i.parquet")
        _naive(labels).to_parquet(data / "labels" / "l.parquet")
    return data


def _run(engine, root: Path, variant: str):  # type: ignore[no-untyped-def]
    data = write_variant(root, variant)
    defs = load(write_defs(root / f"defs-{variant}", DEFS), data)
    wh = Warehouse(engine.spark, root / f"wh-{variant}", engine.writer, lock_timeout_s=30)
    engine.activate()
    back = run_job(engine, wh, defs, "backfill", backfill.run, start=date(2026, 3, 1), end=date(2026, 3, 3), names=["acts"])
    train = run_job(engine, wh, defs, "training-set", training.run, name="ts", start=date(2026, 3, 1), end=date(2026, 3, 4))
    return wh, back, train


def test_nanosecond_and_naive_sources_give_the_blocks_and_training_rows_of_microsecond_files(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    results = {v: _run(engine, tmp_path, v) for v in ("micros", "nanos", "naive")}
    ref_wh, ref_back, ref_train = results["micros"]
    blocks = ref_wh.read("blocks/acts").orderBy("user_id", "block_size", "block_start")
    rows = ref_wh.read("training/ts").orderBy("impression_id")
    assert blocks.count() > 100 and rows.count() == 80
    assert ref_back.counts["acts"]["events_aggregated"] == 400
    assert 0 < rows.filter("clicked = 1").count() < 80
    for variant in ("nanos", "naive"):
        wh, back, train = results[variant]
        assert_df_equality(wh.read("blocks/acts").orderBy("user_id", "block_size", "block_start"), blocks, ignore_nullable=True)
        assert_df_equality(wh.read("training/ts").orderBy("impression_id"), rows, ignore_nullable=True)
        sources = back.inputs["_sources"]["events"]
        assert sources["nanosecond_columns"] == ["ts"] and sources["truncation_moved_block"] == {"ts": 0}
        assert train.inputs["_sources"]["impressions"]["nanosecond_columns"] == ["feature_watermark", "ts"]
        assert not [n for n in back.notes + train.notes if "truncated" in n]
    assert "nanosecond_columns" not in ref_back.inputs["_sources"]["events"]


def test_a_nanosecond_time_before_1970_truncates_toward_zero_and_is_counted_when_it_changes_block(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    times = pd.to_datetime([-500, -1_000, -300 * 10**9 - 1, 1_767_225_899_999_999_999, 1_767_225_900_000_000_500], utc=True)
    path = tmp_path / "old.parquet"
    pd.DataFrame({"id": range(5), "ts": times}).to_parquet(path)
    st = InputStats("events")
    engine.activate()
    df = read_parquet(engine.spark, "events", {path: pq.ParquetFile(path).metadata}, st, block_s=300)
    got = [r["us"] for r in df.selectExpr("id", "unix_micros(ts) AS us").orderBy("id").collect()]
    # Before 1970 toward zero is toward the future: -500 ns moves onto the edge 1970-01-01 00:00
    # and -300 s - 1 ns onto the edge 1969-12-31 23:55, each into the next 5-minute block; -1 us is
    # exact. From 1970 on it is toward the past, and stays in the block.
    assert got == [0, -1, -300 * 10**6, 1_767_225_899_999_999, 1_767_225_900_000_000]
    assert st.truncation_moved_block == {"ts": 2}
