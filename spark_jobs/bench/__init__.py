"""`tilewise bench`: what the block design buys, measured on this machine (issue #6).

Six sections, each a comparison made within one run (a shared, noisy machine makes absolute
seconds meaningless; ratios of timings taken side by side are what the results stand on):

- nightly:  one new day on top of N days of backfilled history: the nightly backfill (the day plus
            lateness) and the snapshot job assembling every key's windows, for feature sets whose
            windows go up to 1d, 7d, 30d and 90d; against a naive job that computes every window from
            the raw events of the whole window.
- pit:      point-in-time features for N impressions: tilewise's lookup (`transforms.pit.lookup`,
            what the training-set job runs) against the floor (an equi-join of the same
            impressions with one precomputed value per key) and a naive range join to raw events.
- engines:  the demo pipeline (backfill + training set) on Sail and on classic Spark.
- bucketed: the final joins of a training set with three feature sets on classic Spark, bucketed
            (`transforms.joins`) against plain shuffle joins: time and Exchanges in the plan.
- scale:    events/s and peak memory (RSS of the process tree: the Sail server lives in the
            worker process, classic Spark's JVM is its child) of a nightly run, 1M..50M events.
- backfill: a chunked backfill of 30, 90 and 365 days of history at the daily volume: events/s
            and peak memory; and a run killed (-9) at 60% of its chunks then resumed, the resumed
            run's time as a fraction of one full run.

The parent process generates the data (numpy/pyarrow, no engine) and runs every engine in a fresh
worker process (`python -m spark_jobs.bench --worker SPEC`), so memory is per run and the two
engines never share a process. Workers call the real jobs (backfill, snapshot, training lookups,
final joins); only the naive baselines are written here, with the same aggregation algebra.
Modules: `config` (sizes, names, feature sets), `harness` (the parent process), `tasks` (the
worker's tasks), `baselines` (the naive jobs), `report` (goals, markdown, chart).
Outputs: `results.json` (every timing, ratio, size, version, the machine), `results.md`, and
`results.png` when matplotlib is installed.
"""

from __future__ import annotations

from spark_jobs.bench.harness import PeakRss, main
from spark_jobs.bench.report import goals, markdown, write_chart

__all__ = ["PeakRss", "goals", "main", "markdown", "write_chart"]
