"""How a backfill's range splits into chunks: a pure plan on epoch seconds, tested without Spark.

A long backfill runs its range [lo, hi) as consecutive chunks, each committed on its own. Chunk
edges inside the range fall on the feature set's coarsest block edges (epoch-aligned), so no block
of any size spans two chunks and each chunk's roll-ups see all their finer blocks; only the range's
own outer edges may cut a coarse block, exactly as a single run does. The chunk size is
`--step-days` when given, else the number of days whose source bytes fit the memory budget.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400
# Bytes of process memory per byte of compressed Parquet a chunk reads: decoding plus the hash
# tables of dedupe and block aggregation. Measured on Sail: 120 days of Zipf-user events (143 MB
# of Parquet, 6M events) peaked at 7.4 GB in one chunk and 2.2 GB in 15-day chunks, ~43x above
# a ~1.2 GB base.
MEMORY_PER_SOURCE_BYTE = 48
# The share of the engine's memory one chunk may plan for (the rest: the process's base, staging,
# validation, and the estimate's error).
MEMORY_SHARE = 0.2


@dataclass(frozen=True)
class Chunk:
    """Events [lo, hi) (epoch seconds) of one chunk; `index` counts from 0 in time order."""

    index: int
    lo: int
    hi: int

    @property
    def days(self) -> float:
        return (self.hi - self.lo) / DAY


def plan_chunks(lo: int, hi: int, align: int, step: int) -> list[Chunk]:
    """[lo, hi) cut at every multiple of `step` (rounded up to a multiple of `align`) after the
    first `align` edge at or before `lo`; one chunk when `step` covers the range."""
    if hi <= lo:
        return []
    step = max(align, -(-step // align) * align)
    edges = [lo]
    edge = lo - lo % align + step
    while edge < hi:
        edges.append(edge)
        edge += step
    edges.append(hi)
    return [Chunk(i, a, b) for i, (a, b) in enumerate(zip(edges, edges[1:]))]


def auto_step_days(source_bytes: int, range_days: float, memory_bytes: int) -> int:
    """Days per chunk such that a chunk's share of the source (at its average bytes per day) fits
    the memory budget; at least 1. `source_bytes` are the files the range reads."""
    if source_bytes <= 0 or range_days <= 0:
        return max(1, int(-(-range_days // 1)))
    per_day = source_bytes / range_days * MEMORY_PER_SOURCE_BYTE
    return max(1, int(memory_bytes * MEMORY_SHARE // per_day))
