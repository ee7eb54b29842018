"""Raw source rows -> clean events: UTC timestamp, range, null keys/timestamps out, duplicates out."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, TimestampNTZType, TimestampType

from spark_jobs.errors import InputDataError

TS = "_tw_ts"  # the normalised event time every transform uses


def with_event_time(df: DataFrame, column: str, source: str) -> DataFrame:
    """Add `_tw_ts` (TIMESTAMP, UTC) from the source's timestamp column."""
    if column not in df.columns:
        raise InputDataError(f"source {source}: timestamp column {column!r} not found (columns: {', '.join(df.columns)})")
    dtype = df.schema[column].dataType
    col = F.col(f"`{column}`")
    if isinstance(dtype, TimestampType):
        ts = col
    elif isinstance(dtype, (TimestampNTZType, DateType, StringType)):
        ts = col.cast("timestamp")
    else:
        raise InputDataError(
            f"source {source}: timestamp column {column!r} has type {dtype.simpleString()}; "
            "expected a timestamp, date or ISO-8601 string"
        )
    return df.withColumn(TS, ts)


def in_range(df: DataFrame, lo: datetime | None, hi: datetime | None) -> DataFrame:
    if lo is not None:
        df = df.filter(F.col(TS) >= F.lit(lo))
    if hi is not None:
        df = df.filter(F.col(TS) < F.lit(hi))
    return df


def event_counts(df: DataFrame, keys: tuple[str, ...], lo: datetime, hi: datetime) -> dict[str, int]:
    """One pass over what was read: rows, null timestamps, in-range rows, in-range null keys."""
    in_rng = (F.col(TS) >= F.lit(lo)) & (F.col(TS) < F.lit(hi))
    null_key = F.lit(False)
    for k in keys:
        null_key = null_key | F.col(f"`{k}`").isNull()
    row = df.agg(
        F.count(F.lit(1)).alias("rows_read"),
        F.sum(F.when(F.col(TS).isNull(), 1).otherwise(0)).alias("null_timestamp"),
        F.sum(F.when(in_rng, 1).otherwise(0)).alias("in_range"),
        F.sum(F.when(in_rng & null_key, 1).otherwise(0)).alias("null_key"),
    ).collect()[0]
    return {k: int(row[k] or 0) for k in ("rows_read", "null_timestamp", "in_range", "null_key")}


def clean_events(
    df: DataFrame, keys: tuple[str, ...], dedupe_key: tuple[str, ...], lo: datetime | None, hi: datetime | None
) -> DataFrame:
    """Events in [lo, hi) with every key and the timestamp set, one row per dedupe key."""
    df = in_range(df.filter(F.col(TS).isNotNull()), lo, hi)
    for k in keys:
        df = df.filter(F.col(f"`{k}`").isNotNull())
    return dedupe(df, dedupe_key) if dedupe_key else df


def dedupe(df: DataFrame, by: tuple[str, ...]) -> DataFrame:
    """One row per `by`; the earliest (then smallest by every plain column) wins, on any engine."""
    from pyspark.sql import Window

    plain = [c for c, t in df.dtypes if not t.startswith(("array", "map", "struct")) and c not in by and c != TS]
    order = [F.col(TS).asc_nulls_last()] + [F.col(f"`{c}`").asc_nulls_last() for c in plain]
    w = Window.partitionBy(*[F.col(f"`{c}`") for c in by]).orderBy(*order)
    return df.withColumn("_tw_rn", F.row_number().over(w)).filter("_tw_rn = 1").drop("_tw_rn")
