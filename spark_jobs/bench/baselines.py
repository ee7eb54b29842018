"""The naive baselines the bench measures tilewise against, written with the same aggregation algebra.

`naive_windows` recomputes every key's windows from the raw events of the whole window (the
nightly section's baseline); `naive_lookup` range-joins each impression to its key's raw events
(the point-in-time section's).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from spark_jobs.bench.config import ID, WATERMARK


def naive_windows(spark: Any, defs: Any, fs: Any, as_of: datetime) -> Any:
    """Every key's windows as of `as_of` straight from raw events (no blocks): the naive baseline.

    Each window length reads its own range of raw events, [as_of - W, as_of), and aggregates it
    with the same aggregation algebra (map then finalize over all of the window's events).
    """
    from spark_jobs.aggregations import REGISTRY
    from spark_jobs.jobs.snapshot import all_refs
    from spark_jobs.transforms.blocks import agg_input, quote
    from spark_jobs.transforms.pit import fill_empty

    refs = all_refs(fs)
    keys = [quote(k) for k in fs.key]
    out: Any = None
    for w in sorted({r.window.seconds for r in refs}):
        lo = as_of - timedelta(seconds=w)
        events = events_between(spark, defs, fs, lo, as_of)
        aggs, finals = [], []
        for ref in [r for r in refs if r.window.seconds == w]:
            feature = fs.feature(ref.feature)
            agg, x = REGISTRY[feature.aggregation], agg_input(feature, fs, events.schema)
            names = {p: f"_nv_{ref.column}__{p}" for p in agg.parts}
            aggs += [_expr(e).alias(names[p]) for p, e in agg.map_sql(x).items()]
            finals.append(_expr(agg.finalize_sql({p: quote(n) for p, n in names.items()}, x)).alias(ref.column))
        part = events.groupBy(*keys).agg(*aggs).select(*keys, *finals)
        out = part if out is None else out.join(part, on=list(fs.key), how="full")
    return fill_empty(out, fs, refs)


def _expr(sql: str) -> Any:
    from pyspark.sql import functions as F

    return F.expr(sql)


def events_between(spark: Any, defs: Any, fs: Any, lo: datetime, hi: datetime) -> Any:
    """`fs`'s source events in [lo, hi), cleaned as the backfill cleans them (no blocks)."""
    from spark_jobs.storage.sources import TimeRange, read_events
    from spark_jobs.transforms.events import clean_events

    src = defs.sources[fs.source]
    events = read_events(spark, defs.source_read(fs.source), TimeRange(lo, hi), {})
    return clean_events(events, fs.key, src.dedupe_key, lo, hi, _now())


def naive_lookup(impressions: Any, events: Any, fs: Any, refs: Any) -> Any:
    """Point-in-time values by a range join of every impression to its key's raw events."""
    from spark_jobs.aggregations import REGISTRY
    from spark_jobs.transforms.blocks import agg_input, quote
    from spark_jobs.transforms.events import TS
    from spark_jobs.transforms.pit import END, T_FLOOR, fill_empty, with_window_bounds

    its = "_nv_t"
    req = with_window_bounds(impressions.withColumnRenamed(TS, its), fs, its, WATERMARK)
    longest = max(r.window.seconds for r in refs)
    t = f"unix_seconds({TS})"
    joined = req.join(events, on=list(fs.key), how="inner").filter(f"{t} >= {T_FLOOR} - {longest} AND {t} < {END}")
    features = {f.name: f for f in fs.features}
    aggs, finals = [], []
    for ref in refs:
        feature = features[ref.feature]
        agg, x = REGISTRY[feature.aggregation], agg_input(feature, fs, events.schema)
        x = replace(x, cond=f"({x.cond}) AND {t} >= {T_FLOOR} - {ref.window.seconds}")
        names = {p: f"_nv_{ref.column}__{p}" for p in agg.parts}
        aggs += [_expr(e).alias(names[p]) for p, e in agg.map_sql(x).items()]
        finals.append(_expr(agg.finalize_sql({p: quote(n) for p, n in names.items()}, x)).alias(ref.column))
    values = joined.groupBy(ID).agg(*aggs).select(ID, *finals)
    return fill_empty(impressions.select(ID).join(values, on=ID, how="left"), fs, refs)


def _now() -> datetime:
    """The wall clock as naive UTC: events after it are in the future, as in the jobs (`Run.clock`)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
