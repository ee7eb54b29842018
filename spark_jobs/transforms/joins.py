"""The final joins of a training set: frames keyed by impression_id onto the impressions.

On classic Spark every frame is written once as a table bucketed (and sorted) by the join key
with the same bucket count, so the joins run within buckets with no Exchange. Sail has no
bucketBy: it runs the same left joins as hash joins. The rows are the same either way.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from spark_jobs.engine.session import Engine
from spark_jobs.storage.manifest import Run

BUCKETS = 8


def join_on_id(
    engine: Engine,
    run: Run,
    base: DataFrame,
    frames: dict[str, DataFrame],
    key: str,
    *,
    explain: bool = False,
    bucketing: bool | None = None,
) -> DataFrame:
    """`base` left-joined with every frame on `key`; bucketed where the engine can (or `bucketing`).

    `bucketing=False` forces plain shuffle joins, which is what `tilewise bench` compares against.
    """
    use_buckets = engine.supports_bucketing if bucketing is None else bucketing and engine.supports_bucketing
    if use_buckets:
        prefix = "tw_" + run.run_id.replace("-", "_").lower()
        base = bucketed(engine, base, f"{prefix}_impressions", key)
        frames = {name: bucketed(engine, df, f"{prefix}_{name}", key) for name, df in frames.items()}
    out = base
    if use_buckets:
        # Small frames would otherwise be broadcast (a BroadcastExchange) instead of joined in buckets.
        engine.spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    for df in frames.values():
        out = out.join(df, on=key, how="left")
    if explain:
        print(f"== physical plan of the final joins ({'bucketed' if use_buckets else 'hash'}) ==")
        out.explain(mode="formatted")
    return out


def bucketed(engine: Engine, df: DataFrame, table: str, key: str) -> DataFrame:
    """`df` as a session-catalog table bucketed and sorted by `key` (classic Spark only)."""
    spark = engine.spark
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    df.write.format("parquet").bucketBy(BUCKETS, key).sortBy(key).mode("overwrite").saveAsTable(table)
    return spark.table(table)


def drop_bucketed(engine: Engine, run: Run) -> None:
    """Remove this run's bucketed intermediates (and restore broadcast joins)."""
    if not engine.supports_bucketing:
        return
    engine.spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")
    prefix = "tw_" + run.run_id.replace("-", "_").lower()
    for t in engine.spark.catalog.listTables():
        if t.name.startswith(prefix):
            engine.spark.sql(f"DROP TABLE IF EXISTS {t.name}")
