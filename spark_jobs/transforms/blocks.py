"""Events -> finest blocks -> coarser blocks (always rolled up from the finer ones).

A block row holds, for one key, block size and block start, the intermediate parts of every
feature of the feature set (`{feature}__{part}`) and `event_count`, the events it was built from.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from spark_jobs.aggregations import REGISTRY, AggInput
from spark_jobs.defs.models import Feature, FeatureSet
from spark_jobs.errors import DefinitionError
from spark_jobs.names import BLOCK_DATE, BLOCK_SIZE, BLOCK_START, EVENT_COUNT
from spark_jobs.transforms.events import TS


def quote(name: str) -> str:
    return f"`{name}`"


def agg_input(feature: Feature, fs: FeatureSet, events: StructType | None = None) -> AggInput:
    """The SQL an aggregation sees for `feature` over clean events (of schema `events`, to map them)."""
    value = quote(feature.column) if feature.column else None
    value_type = None
    if events is not None:
        field = {f.name: f for f in events.fields}.get(feature.column or "")
        value_type = field.dataType.simpleString() if field is not None else "unknown"
    conds = [f"({feature.filter})"] if feature.filter else []
    if value is not None:
        conds.append(f"{value} IS NOT NULL")
    identity = ", ".join([f"unix_micros({TS})", *(quote(k) for k in fs.key), *([value] if value else [])])
    return AggInput(
        value=value,
        cond=" AND ".join(conds) or "true",
        ts=TS,
        sample_hash=f"xxhash64({identity})",
        n=feature.n,
        quantiles=tuple(feature.quantiles or ()),
        value_type=value_type,
    )


def check_expressions(events: DataFrame, fs: FeatureSet, source: str) -> None:
    """Resolve every feature's `filter` and `column` on the source's events, before any work: a
    mistake (a misspelt column, a filter that does not parse) is a DefinitionError naming the
    file, line and field, instead of the engine's error half-way. One round trip when all resolve."""
    exprs = [(i, field, text) for i, f in enumerate(fs.features)
             for field, text in (("filter", f.filter), ("column", quote(f.column) if f.column else None)) if text]
    if not exprs:
        return
    try:
        events.select(*[F.expr(text) for _, _, text in exprs]).schema
        return
    except Exception as whole:  # noqa: BLE001 - each expression alone says which one it was
        problems = []
        columns = ", ".join(c for c in events.columns if not c.startswith("_tw_"))
        for i, field, text in exprs:
            why = resolve_problem(events, text)
            if why is not None:
                shown = fs.features[i].filter if field == "filter" else fs.features[i].column
                problems.append((fs.line(i, field), f"{fs.where(i, field)}: {shown!r} does not resolve on "
                                 f"source {source} (columns: {columns}): {why}"))
        if not problems:
            raise whole
        raise DefinitionError.collected([text for _, text in sorted(problems)]) from None


def resolve_problem(df: DataFrame, expr: str) -> str | None:
    """Why SQL expression `expr` does not resolve on `df` (the engine's first line), or None."""
    try:
        df.select(F.expr(expr)).schema
    except Exception as exc:  # noqa: BLE001 - parse and analysis errors differ per engine
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return None


def part_column(feature: Feature, part: str) -> str:
    return f"{feature.name}__{part}"


def part_columns(fs: FeatureSet) -> list[str]:
    return [part_column(f, p) for f in fs.features for p in REGISTRY[f.aggregation].parts]


def _block_start(epoch_seconds: str, size: int) -> str:
    return f"timestamp_seconds({epoch_seconds} - pmod({epoch_seconds}, {size}))"


def build_blocks(events: DataFrame, fs: FeatureSet) -> DataFrame:
    """Finest blocks from clean events (keys and `_tw_ts` not null)."""
    size = fs.finest.seconds
    aggs = [F.count(F.lit(1)).cast("bigint").alias(EVENT_COUNT)]
    for feature in fs.features:
        agg = REGISTRY[feature.aggregation]
        for part, expr in agg.map_sql(agg_input(feature, fs, events.schema)).items():
            aggs.append(F.expr(expr).alias(part_column(feature, part)))
    starts = events.withColumn(BLOCK_START, F.expr(_block_start(f"unix_seconds({TS})", size)))
    blocks = starts.groupBy(*[quote(k) for k in fs.key], BLOCK_START).agg(*aggs)
    return _with_block_columns(blocks, fs, size)


def roll_up(finer: DataFrame, fs: FeatureSet, size: int) -> DataFrame:
    """Blocks of `size` seconds from finer blocks (any finer size that divides it)."""
    aggs = [F.sum(EVENT_COUNT).cast("bigint").alias(EVENT_COUNT)]
    for feature in fs.features:
        agg = REGISTRY[feature.aggregation]
        x = agg_input(feature, fs)
        cols = {p: quote(part_column(feature, p)) for p in agg.parts}
        for part, expr in agg.combine_sql(cols, x).items():
            aggs.append(F.expr(expr).alias(part_column(feature, part)))
    starts = finer.withColumn(BLOCK_START, F.expr(_block_start(f"unix_seconds({BLOCK_START})", size)))
    blocks = starts.groupBy(*[quote(k) for k in fs.key], BLOCK_START).agg(*aggs)
    return _with_block_columns(blocks, fs, size)


def _with_block_columns(blocks: DataFrame, fs: FeatureSet, size: int) -> DataFrame:
    return blocks.select(
        *[quote(k) for k in fs.key],
        F.lit(size).cast("bigint").alias(BLOCK_SIZE),
        BLOCK_START,
        F.to_date(BLOCK_START).alias(BLOCK_DATE),
        EVENT_COUNT,
        *[quote(c) for c in part_columns(fs)],
    )
