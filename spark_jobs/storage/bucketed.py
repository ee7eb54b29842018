"""Session-catalog tables bucketed by a join key: the inputs of a training set's final joins on
classic Spark.

Every frame is written once as a Parquet table bucketed and sorted by the key, all with the same
bucket count, so joins between them run within buckets with no Exchange. While they exist,
broadcast joins are turned off: small frames would otherwise be broadcast instead of joined in
buckets. The tables are named after the run (`tw_{run id}_{frame}`), so `drop_bucketed` removes
exactly this run's, and `storage.vacuum` the ones a killed run left.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from spark_jobs.engine.session import Engine

BUCKETS = 8
_BROADCAST = "spark.sql.autoBroadcastJoinThreshold"


def _prefix(run_id: str) -> str:
    return "tw_" + run_id.replace("-", "_").lower()


def bucket_frames(
    engine: Engine, run_id: str, base: DataFrame, frames: dict[str, DataFrame], key: str
) -> tuple[DataFrame, dict[str, DataFrame]]:
    """The impressions `base` and each frame as tables bucketed and sorted by `key` (classic Spark
    only); broadcast joins are off until `drop_bucketed`."""
    prefix = _prefix(run_id)
    base = bucketed(engine, base, f"{prefix}_impressions", key)
    frames = {name: bucketed(engine, df, f"{prefix}_{name}", key) for name, df in frames.items()}
    engine.spark.conf.set(_BROADCAST, "-1")
    return base, frames


def bucketed(engine: Engine, df: DataFrame, table: str, key: str) -> DataFrame:
    """`df` as a session-catalog table bucketed and sorted by `key` (classic Spark only)."""
    spark = engine.spark
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    df.write.format("parquet").bucketBy(BUCKETS, key).sortBy(key).mode("overwrite").saveAsTable(table)
    return spark.table(table)


def drop_bucketed(engine: Engine, run_id: str) -> None:
    """Remove this run's bucketed tables (and restore broadcast joins)."""
    if not engine.supports_bucketing:
        return
    engine.spark.conf.unset(_BROADCAST)
    prefix = _prefix(run_id)
    for t in engine.spark.catalog.listTables():
        if t.name.startswith(prefix):
            engine.spark.sql(f"DROP TABLE IF EXISTS {t.name}")
