"""The final joins of a training set: frames keyed by impression_id onto the impressions.

Plain left joins on the key. On classic Spark the job first writes every frame as a table
bucketed (and sorted) by the key with the same bucket count (`storage.bucketed`), so these joins
run within buckets with no Exchange; Sail has no bucketBy and runs them as hash joins. The rows
are the same either way.
"""

from __future__ import annotations

from pyspark.sql import DataFrame


def join_on_id(base: DataFrame, frames: dict[str, DataFrame], key: str) -> DataFrame:
    """`base` left-joined with every frame on `key`, in the frames' order."""
    out = base
    for df in frames.values():
        out = out.join(df, on=key, how="left")
    return out
