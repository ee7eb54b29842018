"""The sweep (`transforms.sweep`) against the SQL assembly (`transforms.pit.lookup`), on both engines.

Random data (seeded), a two-column key, and the edges placed on purpose: events on block
edges, keys with no events and NULL keys, watermarks NULL / unaligned / after the impression /
far before it, a timestamp-valued max and last_n, a string min, and one heavy key whose windows
hold more than K distinct values (the KMV estimate). The snapshot's one-pass assembly
(`transforms.pit.assemble_at`) is checked against the same reference at midnight and at an
instant on no hour (both on a 5-minute edge, as snapshots are).
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pyarrow as pa
import pytest

from spark_jobs.aggregations import ACD_K
from spark_jobs.defs.models import FeatureRef
from spark_jobs.jobs import backfill, timeline
from spark_jobs.transforms.pit import assemble_at, lookup
from spark_jobs.transforms.sweep import sweep_lookup
from tests.helpers import load, run_job, write_defs, write_parquet

DAY0 = datetime(2026, 5, 1)
DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts}
feature_sets:
  acts:
    source: events
    key: [region, user_id]
    block_sizes: [5m, 1h, 1d]
    features:
      - {name: n, aggregation: count, windows: [5m, 35m, 1h, 1d, 2d]}
      - {name: big, aggregation: count, filter: "value > 50", windows: [6h]}
      - {name: total, aggregation: sum, column: value, windows: [1h, 2d]}
      - {name: ints, aggregation: sum, column: qty, windows: [1d]}
      - {name: mean, aggregation: avg, column: value, windows: [6h]}
      - {name: first_kind, aggregation: min, column: kind, windows: [1d]}
      - {name: latest, aggregation: max, column: ts, windows: [2d]}
      - {name: recent, aggregation: last_n, column: kind, n: 4, windows: [1h, 1d]}
      - {name: recent_ts, aggregation: last_n, column: ts, n: 2, windows: [6h]}
      - {name: items, aggregation: approx_count_distinct, column: item, windows: [1h, 2d]}
      - {name: q, aggregation: approx_quantile, column: value, quantiles: [0.1, 0.5, 0.99], windows: [1d, 2d]}
"""
EVENTS = pa.schema([("region", pa.string()), ("user_id", pa.int64()), ("kind", pa.string()), ("item", pa.int64()),
                    ("value", pa.float64()), ("qty", pa.int32()), ("ts", pa.timestamp("us"))])
IMPS = pa.schema([("impression_id", pa.string()), ("region", pa.string()), ("user_id", pa.int64()),
                  ("ts", pa.timestamp("us")), ("feature_watermark", pa.timestamp("us"))])
HEAVY = ("eu", 0)


def _events(rng: random.Random) -> list[dict]:
    rows = []
    for i in range(2500):
        t = DAY0 + timedelta(seconds=rng.randrange(0, 3 * 86400))
        if i % 20 == 0:
            t = DAY0 + timedelta(seconds=300 * rng.randrange(0, 3 * 288))  # on a block edge
        rows.append({"region": rng.choice(["eu", "us"]), "user_id": rng.randrange(1, 8), "kind": rng.choice("abcdef"),
                     "item": rng.randrange(0, 50), "value": round(rng.uniform(-10, 100), 3), "qty": rng.randrange(0, 5),
                     "ts": t})
    # The heavy key: more distinct items than ACD_K in a day. (Quantile windows above K are
    # checked at a small K against raw events in tests/unit/test_sweep_kernels.py: here they
    # would cost a minute of classic Spark for no other path.)
    heavy_day = DAY0 + timedelta(days=1)
    for i in range(ACD_K + 1500):
        rows.append({"region": HEAVY[0], "user_id": HEAVY[1], "kind": "z", "item": i % (ACD_K + 1500),
                     "value": float(rng.randrange(0, 10_000)), "qty": 1,
                     "ts": heavy_day + timedelta(seconds=rng.randrange(0, 86400))})
    rows.append({**rows[0], "user_id": None})  # a NULL key: never aggregated
    return rows


def _impressions(rng: random.Random) -> list[dict]:
    rows = []
    for i in range(300):
        t = DAY0 + timedelta(seconds=rng.randrange(86400, 3 * 86400 + 3600))
        if i % 15 == 0:
            t -= timedelta(seconds=t.second + 60 * (t.minute % 5))  # on a block edge
        wm = [None, t - timedelta(seconds=rng.randrange(1, 5000)), t + timedelta(seconds=rng.randrange(1, 900)),
              t - timedelta(days=3)][i % 4]
        region, user = rng.choice([HEAVY, HEAVY, ("eu", 3), ("us", 5), ("us", 99), ("eu", None)])
        rows.append({"impression_id": f"i{i}", "region": region, "user_id": user, "ts": t, "feature_watermark": wm})
    return rows


@pytest.mark.parametrize("seed", [7])
def test_sweep_equals_sql_assembly(engine, warehouse, tmp_path, seed) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    data = tmp_path / "data"
    write_parquet(data / "events" / "e.parquet", _events(rng), EVENTS)
    defs = load(write_defs(tmp_path, DEFS), data)
    run_job(engine, warehouse, defs, "backfill", backfill.run, start=date(2026, 5, 1), end=date(2026, 5, 4), names=["acts"])
    fs = defs.feature_sets["acts"]
    refs = [FeatureRef(feature_set="acts", feature=f.name, window=w) for f in fs.features for w in f.windows]
    imps = engine.spark.createDataFrame(pa.Table.from_pylist(_impressions(rng), schema=IMPS).to_pandas())
    imps = imps.selectExpr("impression_id", "region", "user_id", "CAST(ts AS TIMESTAMP) AS ts",
                           "CAST(feature_watermark AS TIMESTAMP) AS feature_watermark")
    blocks = warehouse.read("blocks/acts")
    kw = {"id_column": "impression_id", "ts": "ts", "watermark": "feature_watermark"}
    expected = {r["impression_id"]: r.asDict() for r in lookup(imps, blocks, fs, refs, **kw).collect()}
    actual = {r["impression_id"]: r.asDict() for r in sweep_lookup(imps, blocks, fs, refs, partitions=3, **kw).collect()}
    # The timeline the backfill derived from those blocks: the same values from finest blocks only.
    version = timeline.in_step(warehouse, "acts", warehouse.version("blocks/acts"))
    assert version is not None
    tl = warehouse.read("timelines/acts", version=version)
    swept = sweep_lookup(imps, blocks, fs, refs, partitions=3, timeline=tl, **kw).collect()
    assert {r["impression_id"]: r.asDict() for r in swept} == actual
    assert set(actual) == {f"i{i}" for i in range(300)}
    assert len(expected) == len(actual)
    differ = [(expected[k], actual[k]) for k in expected if expected[k] != actual[k]]
    assert not differ, differ[:2]
    # The data reaches what it is meant to: estimates above K, empty windows.
    assert any(r["items_2d"] is not None and r["items_2d"] > ACD_K for r in actual.values())
    assert any(r["n_5m"] is None for r in actual.values())

    # A snapshot's assembly (every key's windows ending at one instant, one group-by over the
    # covers' blocks) equals the reference for the same keys looked up at that instant: at
    # midnight, and at 13:45 (a 5-minute edge, so every coarser level's edges are cut). It gets
    # every block, so blocks outside the covers must be ignored.
    keys = blocks.select("region", "user_id").distinct()
    names = [r.column for r in refs]
    for end in (DAY0 + timedelta(days=2), DAY0 + timedelta(days=2, hours=13, minutes=45)):
        at = keys.selectExpr("concat(region, '/', user_id) AS impression_id", "region", "user_id",
                             f"TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}' AS ts")
        reference = {r["impression_id"]: r.asDict() for r in lookup(at, blocks, fs, refs, id_column="impression_id", ts="ts",
                                                                      watermark=None).select("impression_id", *names).collect()}
        one_pass = assemble_at(int((end - datetime(1970, 1, 1)).total_seconds()), blocks, fs, refs)
        got = {r["impression_id"]: r.asDict()
               for r in one_pass.selectExpr("concat(region, '/', user_id) AS impression_id", *names).collect()}
        assert len(got) == len(reference) > 10
        differ = [(reference[k], got.get(k)) for k in reference if reference[k] != got.get(k)]
        assert not differ, (end, differ[:2])
