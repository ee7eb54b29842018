"""The bench's sizes (full, quick, tiny), its shared names and the feature sets it measures.

Every other module of the bench reads its sizes and names from here; the feature sets are the
demo's `events` source with the same features at windows up to 1d, 7d, 30d and 90d.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from spark_jobs.names import IMPRESSION_ID, WATERMARK


SECTIONS = ("nightly", "pit", "engines", "bucketed", "scale", "backfill")
START = date(2026, 1, 1)
ID = IMPRESSION_ID
LENGTHS = ("1d", "7d", "30d", "90d")
# pit: impressions of the last PIT_DAYS days of history (every 7d window has blocks behind them).
PIT_DAYS = 23


@dataclass(frozen=True)
class Sizes:
    mode: str
    history_days: int  # nightly/pit: days backfilled before the new day (>= 90 for 90d windows)
    events_per_day: int
    impressions_per_day: int
    users: int
    items: int
    naive_pit_impressions: int  # the naive range join runs on at most this many impressions
    engine_days: int
    engine_events_per_day: int
    engine_impressions_per_day: int
    scale_sail: tuple[int, ...]
    scale_spark: tuple[int, ...]
    repeats: int
    backfill_days: tuple[int, ...] = (30, 90, 365)
    backfill_step_days: int = 30
    resume_days: int = 90  # the killed-and-resumed backfill: its days and chunk size
    resume_step_days: int = 10


FULL = Sizes("full", 90, 200_000, 10_000, 2000, 500, 2_000, 3, 200_000, 20_000,
             (1_000_000, 10_000_000, 50_000_000), (1_000_000,), 2)
QUICK = Sizes("quick", 90, 5_000, 1_000, 2000, 500, 5_000, 2, 10_000, 1_000, (1_000_000,), (), 1, (30, 90))
TINY = Sizes("tiny", 90, 1_000, 100, 200, 50, 1_000, 2, 2_000, 300, (20_000,), (), 1, (10,), 2, 10, 2)

# The bench's own feature sets over the demo's `events` source: the same features, windows up to
# 1d, 7d, 30d and 90d; `user_shares` is the third feature set of the bucketed-join training set.
_FEATURES = (
    "      - {name: events, aggregation: count, windows: %(w)s}",
    "      - {name: views, aggregation: count, filter: \"event_type = 'view'\", windows: %(w)s}",
    "      - {name: dur_sum, aggregation: sum, column: duration_s, filter: duration_s < 3600, windows: %(w)s}",
    "      - {name: dur_avg, aggregation: avg, column: duration_s, filter: duration_s < 3600, windows: %(w)s}",
    "      - {name: dur_max, aggregation: max, column: duration_s, windows: %(w)s}",
    "      - {name: items, aggregation: approx_count_distinct, column: item_id, windows: %(w)s}",
    "      - {name: recent_items, aggregation: last_n, column: item_id, n: 5, windows: %(w)s}",
)
_WINDOWS = {"1d": "[1h, 1d]", "7d": "[1h, 1d, 7d]", "30d": "[1h, 1d, 7d, 30d]", "90d": "[1h, 1d, 7d, 30d, 90d]"}


def bench_defs_yaml() -> str:
    lines = ["feature_sets:"]
    for length, windows in _WINDOWS.items():
        lines += [f"  user_{length}:", "    source: events", "    key: [user_id]", "    block_sizes: [5m, 1h, 1d]",
                  "    lateness: 1d", "    features:"]
        lines += [f % {"w": windows} for f in _FEATURES]
    # The backfill section's feature set: the four aggregations of a typical long backfill.
    lines += ["  user_history:", "    source: events", "    key: [user_id]", "    block_sizes: [5m, 1h, 1d]",
              "    lateness: 1d", "    features:",
              "      - {name: events, aggregation: count, windows: [1h, 1d]}",
              "      - {name: dur_sum, aggregation: sum, column: duration_s, windows: [1d]}",
              "      - {name: dur_max, aggregation: max, column: duration_s, windows: [1d]}",
              "      - {name: items, aggregation: approx_count_distinct, column: item_id, windows: [1d]}"]
    lines += ["  user_shares:", "    source: events", "    key: [user_id]", "    block_sizes: [5m, 1h, 1d]",
              "    features:",
              "      - {name: shares, aggregation: count, filter: \"event_type = 'share'\", windows: [1h, 1d, 7d]}",
              "      - {name: likes, aggregation: count, filter: \"event_type = 'like'\", windows: [1h, 1d, 7d]}"]
    return "\n".join(lines) + "\n"
