"""sum and avg of a DOUBLE column give the same numbers on Sail and classic Spark.

The engines convert DOUBLE <-> DECIMAL differently (Sail scales in floating point, classic Spark
goes through the shortest decimal string), so with plain casts about 15% of these sums differed
in the last bits. The values are chosen to hit that: every magnitude from 1e-12 to 1e17,
negatives, halves of the 9th decimal, integers beyond 2^53.
"""

from __future__ import annotations

import math
import random
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from spark_jobs.aggregations import REGISTRY
from spark_jobs.transforms.blocks import agg_input, build_blocks, part_column, roll_up
from spark_jobs.transforms.events import TS
from tests.helpers import load, write_defs

DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts}
feature_sets:
  s:
    source: events
    key: k
    block_sizes: [5m, 1h]
    features:
      - {name: total, aggregation: sum, column: v, windows: [1h]}
      - {name: mean, aggregation: avg, column: v, windows: [1h]}
      - {name: itotal, aggregation: sum, column: n, windows: [1h]}
      - {name: dtotal, aggregation: sum, column: d, windows: [1h]}
      - {name: dq, aggregation: approx_quantile, column: d, quantiles: [0.5, 1.0], windows: [1h]}
"""
DAY = 1767225600


def _values(rng: random.Random) -> list[float]:
    out = []
    for _ in range(3000):
        v = rng.random() * 10 ** rng.randint(-12, 17) * rng.choice((1, -1))
        out.append(round(v, rng.randint(0, 12)) if rng.random() < 0.3 else v)
    return out + [0.1, 0.2, 0.3, 5e-10, 1.5e-9, -2.5e-9, 2.0**53 + 2, 2.0**60, 123456789.123456789, 1e17]


def _sums(engine, folder: Path, defs_dir: Path) -> dict:  # type: ignore[no-untyped-def]
    engine.activate()
    fs = load(defs_dir, folder).feature_sets["s"]
    events = engine.spark.read.parquet(str(folder / "events.parquet")).withColumn(TS, F.expr("timestamp_seconds(t)"))
    blocks = roll_up(build_blocks(events, fs), fs, 3600)
    finals = []
    for f in fs.features:
        agg = REGISTRY[f.aggregation]
        parts = {p: f"`{part_column(f, p)}`" for p in agg.parts}
        finals.append(F.expr(agg.finalize_sql(parts, agg_input(f, fs))).alias(f.name))
    return {r["k"]: tuple(r[f.name] for f in fs.features) for r in blocks.select("k", *finals).collect()}


def test_sum_and_avg_of_doubles_are_the_same_on_both_engines(sail_engine, spark_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(5)
    values = _values(rng)
    keys = [i % 400 for i in range(len(values))]
    times = [DAY + rng.randrange(3600) for _ in values]  # 12 five-minute blocks rolled into one hour
    ints = [rng.randrange(-(2**40), 2**40) for _ in values]
    decimals = [Decimal(rng.randrange(-(10**19), 10**19)).scaleb(-10) for _ in values]
    table = pa.table({"k": keys, "t": times, "v": values, "n": ints, "d": pa.array(decimals, pa.decimal128(20, 10))})
    pq.write_table(table, tmp_path / "events.parquet")
    defs_dir = write_defs(tmp_path, DEFS)

    sail, spark = _sums(sail_engine, tmp_path, defs_dir), _sums(spark_engine, tmp_path, defs_dir)
    assert sail.keys() == spark.keys() == set(keys)
    differ = {k: (sail[k], spark[k]) for k in sail if sail[k] != spark[k]}
    assert not differ, f"{len(differ)} of {len(sail)} keys differ, e.g. {list(differ.items())[:3]}"
    for k, (total, mean, itotal, dtotal, dq) in sail.items():  # and they are the sums, to 9 decimals per value
        vs = [v for v, key in zip(values, keys) if key == k]
        assert math.isclose(total, math.fsum(vs), rel_tol=1e-12, abs_tol=1e-9 * len(vs))
        assert math.isclose(mean, math.fsum(vs) / len(vs), rel_tol=1e-12, abs_tol=1e-9)
        assert itotal == sum(n for n, key in zip(ints, keys) if key == k)
        ds = [d for d, key in zip(decimals, keys) if key == k]
        assert dtotal == float(sum(d.quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP) for d in ds))
        assert dq[1] == float(max(ds)), "a quantile is one of the values, as the nearest double"
