"""The aggregation registry: YAML `aggregation: NAME` -> its map / combine / finalize.

Adding an aggregation = one class in this package and one line in REGISTRY.
"""

from __future__ import annotations

from spark_jobs.aggregations.base import AggInput, Aggregation, PyEvent
from spark_jobs.aggregations.simple import Avg, Count, Max, Min, Sum
from spark_jobs.aggregations.sketches import ACD_K, QUANTILE_K, ApproxCountDistinct, ApproxQuantile, LastN

REGISTRY: dict[str, Aggregation] = {
    agg.name: agg
    for agg in (Count(), Sum(), Min(), Max(), Avg(), LastN(), ApproxCountDistinct(), ApproxQuantile())
}

__all__ = ["ACD_K", "QUANTILE_K", "REGISTRY", "AggInput", "Aggregation", "PyEvent"]
