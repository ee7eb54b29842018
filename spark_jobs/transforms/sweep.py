"""Point-in-time features by a per-key sorted sweep (`kernels.sweep`), instead of a join per request.

Same contract as `transforms.pit.lookup`, which stays the reference it is tested against:
impressions and the blocks they can need are put in one frame, repartitioned by key, and each
partition runs `kernels.partition.SweepPlan` in `mapInArrow`; what comes back is finalized with
each aggregation's own SQL, so the last step is the same expression on both paths.

Sail drops a `sortWithinPartitions` before `mapInArrow`, so the kernels sort for themselves.
Timestamps never cross into Python (Arrow time zones differ between the engines): window bounds
are epoch seconds, and timestamp values of min/max/last_n travel as epoch microseconds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.aggregations import REGISTRY
from spark_jobs.aggregations.sketches import ApproxCountDistinct
from spark_jobs.defs.models import Feature, FeatureRef, FeatureSet
from spark_jobs.engine.session import Engine
from spark_jobs.kernels.partition import END, LEVEL, OUTPUTS, STARTS, T as START, RefSpec, SweepPlan, drop_input, warm_up
from spark_jobs.names import cutoff_column
from spark_jobs.transforms.blocks import agg_input, part_column, quote
from spark_jobs.transforms.pit import END as PIT_END, T_FLOOR, lookup, with_window_bounds
from spark_jobs.transforms.timeline import carried as _carried, timeline_rows, timeline_types

SUPPORTED = frozenset(OUTPUTS)
PARTITION_BYTES = 64 << 20  # blocks per sweep partition (Parquet bytes; a few times that in memory)


def point_in_time(
    engine: Engine,
    impressions: DataFrame,
    blocks: DataFrame,
    fs: FeatureSet,
    refs: Sequence[FeatureRef],
    *,
    id_column: str,
    ts: str,
    watermark: str | None,
    block_bytes: Callable[[date, date], int] | None = None,
    timeline: DataFrame | None = None,
) -> DataFrame:
    """The point-in-time lookup a training set runs: the profile's `point_in_time` method (auto:
    the sweep), and the SQL assembly wherever the sweep has no kernel for an aggregation.

    `block_bytes(first_day, last_day)`, when given, is the size of the blocks those days hold;
    the sweep then has about one partition per PARTITION_BYTES of them. `timeline`, when given,
    is the feature set's timeline derived from exactly these blocks (`transforms.timeline`): the
    sweep then reads it instead of the blocks (same values, far fewer rows).
    """
    if engine.profile.point_in_time == "sql" or not {fs.feature(r.feature).aggregation for r in refs} <= SUPPORTED:
        return lookup(impressions, blocks, fs, refs, id_column=id_column, ts=ts, watermark=watermark)
    span = window_span(impressions, fs, refs, ts, watermark)
    days = tuple(datetime.fromtimestamp(x, timezone.utc).date() for x in span)
    size = block_bytes(*days) if block_bytes is not None else 0
    return sweep_lookup(
        impressions, blocks, fs, refs, id_column=id_column, ts=ts, watermark=watermark,
        span=span, partitions=sweep_partitions(engine, size), timeline=timeline,
    )


def warm_up_in_background(engine: Engine) -> None:
    """Load the sweep's kernels in a thread while the job reads its impressions and labels.

    Only on Sail, whose `mapInArrow` runs in this process; classic Spark's Python workers are
    processes of their own and load the kernels from the disk cache themselves.
    """
    if engine.name == "sail" and engine.profile.point_in_time != "sql":
        threading.Thread(target=warm_up, name="tilewise-warm-up-kernels", daemon=True).start()


def sweep_partitions(engine: Engine, block_bytes: int = 0) -> int:
    """Partitions of the sweep: two per core, so skewed keys spread, and more when the blocks
    in reach are big, so a partition's share of them stays near PARTITION_BYTES."""
    if engine.name == "sail":
        base = 2 * (engine.profile.sail_parallelism or os.cpu_count() or 2)
    else:
        base = int(engine.spark.conf.get("spark.sql.shuffle.partitions") or 200)
    return max(base, -(-block_bytes // PARTITION_BYTES))


def window_span(
    impressions: DataFrame, fs: FeatureSet, refs: Sequence[FeatureRef], ts: str, watermark: str | None
) -> tuple[int, int]:
    """[lo, hi) in epoch seconds: where the blocks any of these impressions' windows need start."""
    req = with_window_bounds(impressions, fs, ts, watermark)
    first, last = req.agg(F.min(T_FLOOR), F.max(PIT_END)).collect()[0]
    return (first or 0) - max(r.window.seconds for r in refs), last or 0


def sweep_lookup(
    impressions: DataFrame,
    blocks: DataFrame,
    fs: FeatureSet,
    refs: Sequence[FeatureRef],
    *,
    id_column: str,
    ts: str,
    watermark: str | None,
    partitions: int,
    span: tuple[int, int] | None = None,
    timeline: DataFrame | None = None,
    transfer_only: bool = False,
) -> DataFrame:
    """`id_column`, `{fs}_cutoff` and one column per ref, as `transforms.pit.lookup` returns them.

    Only blocks starting in `span` (default: `window_span` of the impressions) are read: from
    `timeline` (the days holding them, finest blocks only) when given, else from `blocks`.
    `transfer_only` (for the benchmark) hands every partition to a function that reads and drops
    it: no rows come back, and the time is what the sweep costs before it computes anything.
    """
    features = {f.name: f for f in fs.features}
    schema = {f.name: f.dataType for f in blocks.schema.fields}
    req = with_window_bounds(impressions, fs, ts, watermark)
    lo, hi = span or window_span(impressions, fs, refs, ts, watermark)

    parts = sorted({part_column(features[r.feature], p) for r in refs for p in REGISTRY[features[r.feature].aggregation].parts})
    carried = {p: _carried(p, schema[p]) for p in parts}
    # approx_count_distinct slides over the finest blocks only: coarser blocks need not carry
    # their (largest) hash arrays into the shuffle.
    finest_only = {
        part_column(features[r.feature], p)
        for r in refs if features[r.feature].aggregation == "approx_count_distinct"
        for p in REGISTRY["approx_count_distinct"].parts
    }
    g = fs.finest.seconds
    carried = {
        p: (f"CASE WHEN block_size = {g} THEN {sql} END" if p in finest_only else sql, t)
        for p, (sql, t) in carried.items()
    }
    id_type = impressions.schema[id_column].dataType
    level = "CASE block_size " + " ".join(f"WHEN {d.seconds} THEN {i}" for i, d in enumerate(fs.block_sizes)) + " END"
    start = F.expr("unix_seconds(block_start)")
    block_rows = blocks.filter(
        (F.col("block_date") >= F.expr(f"to_date(timestamp_seconds({lo}))"))
        & (F.col("block_date") <= F.expr(f"to_date(timestamp_seconds({hi}))"))
        & (start >= lo)
        & (start < hi)
    ).select(
        *[quote(k) for k in fs.key],
        F.expr(level).cast("int").alias(LEVEL),
        start.alias(START),
        F.lit(None).cast("bigint").alias(END),
        F.lit(None).cast(id_type).alias(id_column),
        *[F.expr(sql).alias(p) for p, (sql, _) in carried.items()],
    )
    imp_rows = req.select(
        *[F.col(quote(k)).cast(schema[k]).alias(k) for k in fs.key],
        F.lit(-1).alias(LEVEL),
        F.col(T_FLOOR).cast("bigint").alias(START),
        F.col(PIT_END).cast("bigint").alias(END),
        F.col(quote(id_column)),
        *[F.lit(None).cast(t).alias(p) for p, (_, t) in carried.items()],
    )
    specs = tuple(_spec(r, features[r.feature], fs) for r in refs)
    plan = SweepPlan(tuple(fs.key), tuple(d.seconds for d in fs.block_sizes), id_column, specs)
    if timeline is not None:
        types = timeline_types(blocks.schema, parts)
        block_rows = timeline_rows(timeline, fs, types, lo, hi, id_column, id_type)
        imp_rows = imp_rows.select(
            *[F.col(quote(c)) for c in imp_rows.columns if c not in types],
            F.lit(None).cast(T.ArrayType(T.LongType())).alias(STARTS),
            *[F.lit(None).cast(t).alias(p) for p, t in types.items()],
        )
        plan = SweepPlan(tuple(fs.key), (g,), id_column, specs, timeline=True)
    out_schema = T.StructType(
        [T.StructField(id_column, id_type), T.StructField(END, T.LongType())]
        + [T.StructField(name, dtype) for s in specs for name, dtype in _out_types(s, carried).items()]
    )
    swept = (
        block_rows.unionByName(imp_rows)
        .repartition(partitions, *[F.col(quote(k)) for k in fs.key])
        .mapInArrow(drop_input if transfer_only else plan, out_schema)
    )
    return swept.select(
        quote(id_column),
        F.expr(f"timestamp_seconds({END})").alias(cutoff_column(fs.name)),
        *[F.expr(_finalize(s, features[r.feature], fs, schema)).alias(r.column) for s, r in zip(specs, refs)],
    )


def _spec(ref: FeatureRef, feature: Feature, fs: FeatureSet) -> RefSpec:
    agg = REGISTRY[feature.aggregation]
    return RefSpec(
        column=ref.column,
        aggregation=agg.name,
        window=ref.window.seconds,
        parts=tuple(part_column(feature, p) for p in agg.parts),
        n=feature.n,
        quantiles=tuple(feature.quantiles or ()),
        sketch_size=agg.sketch_size,
    )


def _out_types(spec: RefSpec, carried: dict[str, tuple[str, T.DataType]]) -> dict[str, T.DataType]:
    part_types = [carried[p][1] for p in spec.parts]
    by_agg: dict[str, list[T.DataType]] = {
        "count": [T.LongType()],
        "sum": [part_types[0]],
        "avg": [part_types[0], T.LongType()],
        "min": [part_types[0]],
        "max": [part_types[0]],
        "last_n": [part_types[0]],
        "approx_count_distinct": [T.LongType(), T.LongType()],
        "approx_quantile": [T.ArrayType(T.DoubleType())],
    }
    return dict(zip(spec.outputs(), by_agg[spec.aggregation]))


def _finalize(spec: RefSpec, feature: Feature, fs: FeatureSet, schema: dict[str, T.DataType]) -> str:
    """The feature value from the sweep's output, through the aggregation's own finalize SQL."""
    out = {o: quote(name) for o, name in zip(OUTPUTS[spec.aggregation], spec.outputs())}
    agg = REGISTRY[spec.aggregation]
    if spec.aggregation == "approx_count_distinct":
        return ApproxCountDistinct.estimate_sql(out["n"], out["kth"])
    if spec.aggregation in ("last_n", "approx_quantile"):
        value = out["values"]
        stored = schema[spec.parts[0]]
        if spec.aggregation == "last_n" and isinstance(stored.elementType["v"].dataType, T.TimestampType):  # type: ignore[attr-defined]
            return f"transform({value}, x -> timestamp_micros(x))"
        return value
    if spec.aggregation in ("min", "max") and isinstance(schema[spec.parts[0]], T.TimestampType):
        return f"timestamp_micros({out['m']})"
    return agg.finalize_sql(out, agg_input(feature, fs))
