"""The timeline of a feature set: per (key, day), that day's finest blocks as parallel arrays.

A timeline row holds the keys, `day`, `_tw_starts` (the block starts, epoch seconds) and one
array per part column of the feature set, element i belonging to the block starting at
`_tw_starts[i]` (in no particular order: the sweep sorts). The parts are stored the way the
sweep reads them (`carried`): timestamps as epoch microseconds, last_n entries without their
times (newest first, as in the block). It is derived only from the finest blocks of the block
table, so it holds exactly what they hold; the lookup reads a few fat rows per key instead of
every block row of every size.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.defs.models import FeatureSet
from spark_jobs.kernels.partition import END, LEVEL, STARTS, T as START
from spark_jobs.names import BLOCK_DATE, TIMELINE_DAY
from spark_jobs.transforms.blocks import part_columns, quote

DAY = TIMELINE_DAY
PARTITION_BY = [DAY]
_ITEMS = "_tw_items"


def carried(part: str, dtype: T.DataType) -> tuple[str, T.DataType]:
    """How a block column enters the sweep: SQL over the block row, and the type it has there.

    last_n parts lose their timestamps (blocks are newest first already), and timestamps become
    epoch microseconds.
    """
    col = quote(part)
    if isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, T.StructType) and "ts" in dtype.elementType.names:
        v = dtype.elementType["v"].dataType
        if isinstance(v, T.TimestampType):
            return f"transform({col}, e -> unix_micros(e.v))", T.ArrayType(T.LongType())
        return f"transform({col}, e -> e.v)", T.ArrayType(v)
    if isinstance(dtype, T.TimestampType):
        return f"unix_micros({col})", T.LongType()
    return col, dtype


def build_timeline(finest: DataFrame, fs: FeatureSet) -> DataFrame:
    """Timeline rows from finest block rows (of any days; one row per key and `block_date`)."""
    schema = {f.name: f.dataType for f in finest.schema.fields}
    parts = part_columns(fs)
    items = F.struct(
        F.expr("unix_seconds(block_start)").alias(STARTS),
        *[F.expr(carried(p, schema[p])[0]).alias(p) for p in parts],
    )
    grouped = finest.groupBy(*[quote(k) for k in fs.key], F.col(BLOCK_DATE).alias(DAY)).agg(
        F.collect_list(items).alias(_ITEMS)
    )
    return grouped.select(
        *[quote(k) for k in fs.key],
        DAY,
        *[F.expr(f"transform({_ITEMS}, x -> x.{quote(c)})").alias(c) for c in (STARTS, *parts)],
    )


def timeline_types(blocks_schema: T.StructType, parts: list[str]) -> dict[str, T.DataType]:
    """The array type of each part's timeline column, from the block table's schema."""
    schema = {f.name: f.dataType for f in blocks_schema.fields}
    return {p: T.ArrayType(carried(p, schema[p])[1]) for p in parts}


def timeline_rows(
    timeline: DataFrame, fs: FeatureSet, types: dict[str, T.DataType], lo: int, hi: int, id_column: str,
    id_type: T.DataType,
) -> DataFrame:
    """The sweep's block-side rows from the timeline: the days holding block starts in [lo, hi)
    (epoch seconds), each row marked as finest (`LEVEL` 0), with `parts` in the sweep's types."""
    days = (F.col(DAY) >= F.expr(f"to_date(timestamp_seconds({lo}))")) & (
        F.col(DAY) <= F.expr(f"to_date(timestamp_seconds({hi}))")
    )
    return timeline.filter(days).select(
        *[quote(k) for k in fs.key],
        F.lit(0).cast("int").alias(LEVEL),
        F.lit(None).cast("bigint").alias(START),
        F.lit(None).cast("bigint").alias(END),
        F.lit(None).cast(id_type).alias(id_column),
        F.col(STARTS).cast(T.ArrayType(T.LongType())).alias(STARTS),
        *[F.col(quote(p)).cast(t).alias(p) for p, t in types.items()],
    )
