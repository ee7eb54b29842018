"""Synthetic social/content-app data for the tilewise demo, written as plain Parquet files.

Three tables, one file per day, under ``out_dir``: ``events/`` (views, likes and shares),
``impressions/`` (items shown to users, with the online feature store's watermark at serving time
and, in the struct ``features``, the feature values the online model saw: forward logging) and
``labels/`` (clicks and saves that arrive after the impression). The data is meant to exercise
every point-in-time rule, not only the happy path: skewed keys, a daily cycle, exact duplicate
events, late events, null keys and timestamps, timestamps exactly on 5-minute block boundaries,
null and clock-skewed watermarks, and labels that fall outside their ``within`` window. Label
rates depend on the user's and the item's activity so that the features carry signal.

The logged features are what an online store computes with tilewise's point-in-time rule,
plus two incidents: on 2026-01-02 from 14:00 to 18:00 UTC the stream feeding
the store stalls 20 minutes (four blocks) behind while the watermark it reports keeps moving
(stale values), and the online code of ``user_dur_sum_1h`` forgot the ``duration_s < 3600``
filter of its offline definition (a logic difference whenever an idle tab is in the window).

Everything is numpy/pyarrow (no Spark), seeded, so the same arguments give the same data.
Timestamps are naive ``timestamp[us]`` values that represent UTC.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# Naive, microsecond precision; every value is UTC (tilewise's clock).
TIMESTAMP_TYPE = pa.timestamp("us")

_US_PER_S = 1_000_000
_US_PER_HOUR = 3600 * _US_PER_S
_US_PER_DAY = 24 * _US_PER_HOUR
_BLOCK_US = 5 * 60 * _US_PER_S  # the demo's finest block; some timestamps land exactly on it

# Relative activity per UTC hour: quiet at night, a peak in the evening.
_HOURLY_WEIGHTS = np.array(
    [3.0, 2.0, 1.5, 1.0, 1.0, 1.0, 1.5, 2.5, 3.5, 4.0, 4.5, 5.0,
     5.5, 5.5, 5.5, 6.0, 6.5, 7.5, 9.0, 10.0, 10.0, 9.0, 7.0, 5.0]
)
_HOURLY_P = _HOURLY_WEIGHTS / _HOURLY_WEIGHTS.sum()

_EVENT_TYPES = np.array(["view", "like", "share"])
_EVENT_TYPE_P = [0.85, 0.10, 0.05]

# Rates of the deliberate data-quality cases.
_EVENT_DUPLICATE_RATE = 0.01
_EVENT_LATE_RATE = 0.005
_EVENT_NULL_USER_RATE = 0.0005
_EVENT_NULL_TS_RATE = 0.0005
_BOUNDARY_RATE = 0.005
_IDLE_VIEW_RATE = 0.002  # a tab left open: dwell times of hours that a sane feature filters out
_IMPRESSION_DUPLICATE_RATE = 0.005
_IMPRESSION_LOST_RATE = 0.001  # impression-log loss: labels whose impression is missing
_WATERMARK_NULL_RATE = 0.02
_WATERMARK_AFTER_TS_RATE = 0.01
_DOUBLE_CLICK_RATE = 0.03

# The online store's incidents (see the module docstring), in epoch microseconds of the
# impression time: [start, end) and how many finest blocks the store was behind.
_STALE_FROM = (date(2026, 1, 2) - date(1970, 1, 1)).days * _US_PER_DAY + 14 * _US_PER_HOUR
_STALE_TO = _STALE_FROM + 4 * _US_PER_HOUR
_STALE_BLOCKS = 4


def generate(
    out_dir: Path,
    *,
    days: int = 3,
    users: int = 2000,
    items: int = 500,
    events_per_day: int = 200_000,
    impressions_per_day: int = 20_000,
    seed: int = 7,
    start: date = date(2026, 1, 1),
) -> dict[str, Any]:
    """Write ``events/``, ``impressions/`` and ``labels/`` for ``days`` days from ``start``.

    Files are ``{table}/{table}-YYYY-MM-DD.parquet`` (no ``key=value`` folders, so Spark reads them
    without partition discovery). Files of these names left over from an earlier call are removed
    first, so the folders hold exactly this call's data. Returns a small summary: rows per table,
    the date range ``[start, end)`` and the counts of each deliberate data-quality case.
    """
    if days < 1 or users < 1 or items < 1 or events_per_day < 1 or impressions_per_day < 1:
        raise ValueError("days, users, items, events_per_day and impressions_per_day must be >= 1")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    dates = [start + timedelta(days=d) for d in range(days)]
    day_starts = [_epoch_us(d) for d in dates]

    user_ids = _ids("u", users, 5)
    item_ids = _ids("i", items, 4)
    # Zipf-like popularity, the same for events and impressions: active users also see more.
    user_p = _zipf_p(users, 1.05, rng)
    item_p = _zipf_p(items, 1.1, rng)

    for table in ("events", "impressions", "labels"):
        (out_dir / table).mkdir(parents=True, exist_ok=True)
        for stale in (out_dir / table).glob(f"{table}-*.parquet"):
            stale.unlink()

    summary: dict[str, Any] = {
        "start": dates[0].isoformat(),
        "end": (dates[-1] + timedelta(days=1)).isoformat(),
        "days": days,
        "rows": {"events": 0, "impressions": 0, "labels": 0},
        "events": dict.fromkeys(
            ("duplicates", "late", "null_user_id", "null_ts", "on_block_boundary"), 0
        ),
        "impressions": dict.fromkeys(
            ("duplicates", "null_watermark", "watermark_after_ts", "on_block_boundary"), 0
        ),
        "labels": dict.fromkeys(("click", "save", "outside_range", "orphan"), 0),
    }

    views: list[dict[str, np.ndarray]] = []
    for day, (day_date, day_start) in enumerate(zip(dates, day_starts)):
        table, counts, day_views = _events_for_day(
            rng, day_date, day_start, first_day=day == 0,
            n=events_per_day, user_ids=user_ids, item_ids=item_ids, user_p=user_p, item_p=item_p,
        )
        views.append(day_views)
        pq.write_table(table, out_dir / "events" / f"events-{day_date.isoformat()}.parquet")
        summary["rows"]["events"] += table.num_rows
        for key, value in counts.items():
            summary["events"][key] += value

    impressions: list[dict[str, np.ndarray]] = []
    for day_date, day_start in zip(dates, day_starts):
        impressions.append(
            _impressions_for_day(rng, day_date, day_start, n=impressions_per_day,
                                 user_p=user_p, item_p=item_p)
        )
    labels = _labels(rng, impressions, user_p, item_p)
    all_views = {k: np.concatenate([v[k] for v in views]) for k in views[0]}
    origin = day_starts[0] - _US_PER_DAY

    for day_date, imp in zip(dates, impressions):
        imp["features"] = _online_features(imp, all_views, origin, days + 2)
        table, counts = _impression_table(rng, imp, user_ids, item_ids)
        pq.write_table(
            table, out_dir / "impressions" / f"impressions-{day_date.isoformat()}.parquet"
        )
        summary["rows"]["impressions"] += table.num_rows
        for key, value in counts.items():
            summary["impressions"][key] += value

    # Labels land in the file of the day they happened; those after the last day have not been
    # observed yet, which is what makes the last impressions immature.
    label_day = (labels["ts"] - day_starts[0]) // _US_PER_DAY
    summary["labels"]["outside_range"] = int(np.count_nonzero(label_day >= days))
    summary["labels"]["orphan"] = int(np.count_nonzero(labels["orphan"] & (label_day < days)))
    for day, day_date in enumerate(dates):
        in_day = np.flatnonzero(label_day == day)
        in_day = in_day[np.argsort(labels["ts"][in_day], kind="stable")]
        table = pa.table(
            {
                "impression_id": pa.array(labels["impression_id"][in_day], type=pa.string()),
                "ts": _timestamps(labels["ts"][in_day]),
                "action": pa.array(labels["action"][in_day], type=pa.string()),
            }
        )
        pq.write_table(table, out_dir / "labels" / f"labels-{day_date.isoformat()}.parquet")
        summary["rows"]["labels"] += table.num_rows
        for action in ("click", "save"):
            summary["labels"][action] += int(np.count_nonzero(labels["action"][in_day] == action))
    return summary


def _events_for_day(
    rng: np.random.Generator,
    day_date: date,
    day_start: int,
    *,
    first_day: bool,
    n: int,
    user_ids: pa.Array,
    item_ids: pa.Array,
    user_p: np.ndarray,
    item_p: np.ndarray,
) -> tuple[pa.Table, dict[str, int], dict[str, np.ndarray]]:
    """One day's events file, with its duplicates, late, null and boundary rows, and its views
    (each once, with a timestamp) for the online store."""
    user_idx = rng.choice(len(user_p), size=n, p=user_p)
    item_idx = rng.choice(len(item_p), size=n, p=item_p)
    event_type = rng.choice(len(_EVENT_TYPES), size=n, p=_EVENT_TYPE_P)
    is_view = event_type == 0

    # Dwell time of a view: lognormal around ~12 s, plus a few idle tabs of hours.
    duration = np.full(n, np.nan)
    duration[is_view] = rng.lognormal(mean=2.5, sigma=1.0, size=int(is_view.sum()))
    idle = is_view & (rng.random(n) < _IDLE_VIEW_RATE)
    duration[idle] = rng.uniform(3600.0, 8 * 3600.0, size=int(idle.sum()))
    duration = np.round(duration, 3)

    ts = day_start + _time_of_day_us(rng, n)
    boundary = rng.random(n) < _BOUNDARY_RATE
    ts[boundary] -= ts[boundary] % _BLOCK_US
    # Mobile clients upload late: some of today's file happened yesterday evening. The first
    # day has none, so every event time stays inside the generated date range.
    late = np.zeros(n, dtype=bool) if first_day else rng.random(n) < _EVENT_LATE_RATE
    ts[late] = day_start - rng.integers(1, 6 * _US_PER_HOUR, size=int(late.sum()))
    # Rows are written in arrival order; a late row arrives at some time today.
    arrival = ts.copy()
    arrival[late] = day_start + _time_of_day_us(rng, int(late.sum()))

    null_user = rng.random(n) < _EVENT_NULL_USER_RATE
    null_ts = rng.random(n) < _EVENT_NULL_TS_RATE

    # At-least-once delivery: exact copies of some events, arriving shortly after the original.
    dup = np.flatnonzero(rng.random(n) < _EVENT_DUPLICATE_RATE)
    rows = np.concatenate([np.arange(n), dup])
    arrival = np.concatenate([arrival, arrival[dup] + rng.integers(1, 60 * _US_PER_S, dup.size)])
    order = rows[np.argsort(arrival, kind="stable")]

    event_id = _ids(f"e{day_date:%Y%m%d}-", n, 7)
    table = pa.table(
        {
            "event_id": event_id.take(pa.array(order)),
            "user_id": user_ids.take(pa.array(user_idx[order], mask=null_user[order])),
            "item_id": item_ids.take(pa.array(item_idx[order])),
            "event_type": pa.array(_EVENT_TYPES, type=pa.string()).take(pa.array(event_type[order])),
            "duration_s": pa.array(duration[order], type=pa.float64(), from_pandas=True),
            "ts": _timestamps(ts[order], null=null_ts[order]),
        }
    )
    counts = {
        "duplicates": int(dup.size),
        # Counted as written (copies included, null ts excluded): what a reader of the file sees.
        "late": int(np.count_nonzero(late[order] & ~null_ts[order])),
        "null_user_id": int(null_user[order].sum()),
        "null_ts": int(null_ts[order].sum()),
        "on_block_boundary": int(np.count_nonzero((ts[order] % _BLOCK_US == 0) & ~null_ts[order])),
    }
    seen = is_view & ~null_ts
    day_views = {
        "ts": ts[seen],
        "user_idx": np.where(null_user[seen], -1, user_idx[seen]).astype(np.int32),
        "item_idx": item_idx[seen].astype(np.int32),
        "duration": duration[seen],
    }
    return table, counts, day_views


def _impressions_for_day(
    rng: np.random.Generator,
    day_date: date,
    day_start: int,
    *,
    n: int,
    user_p: np.ndarray,
    item_p: np.ndarray,
) -> dict[str, np.ndarray]:
    """One day's distinct impressions as columns (duplicates and losses are added on writing)."""
    ts = day_start + _time_of_day_us(rng, n)
    boundary = rng.random(n) < _BOUNDARY_RATE
    ts[boundary] -= ts[boundary] % _BLOCK_US
    ts.sort()

    # The online store lags the serving time by 2-20 minutes, at microsecond precision so that
    # the watermark is (almost surely) not on a block boundary; some servers' clocks run ahead
    # (watermark after ts, which the min() rule must absorb) and some log no watermark at all.
    watermark = ts - rng.integers(2 * 60 * _US_PER_S, 20 * 60 * _US_PER_S, size=n)
    after = rng.random(n) < _WATERMARK_AFTER_TS_RATE
    watermark[after] = ts[after] + rng.integers(1, 3 * 60 * _US_PER_S, size=int(after.sum()))
    null_watermark = rng.random(n) < _WATERMARK_NULL_RATE

    return {
        "impression_id": np.array(_ids(f"m{day_date:%Y%m%d}-", n, 6).to_pylist(), dtype=object),
        "user_idx": rng.choice(len(user_p), size=n, p=user_p),
        "item_idx": rng.choice(len(item_p), size=n, p=item_p),
        "ts": ts,
        "feature_watermark": watermark,
        "null_watermark": null_watermark,
        "watermark_after_ts": after & ~null_watermark,
        "lost": rng.random(n) < _IMPRESSION_LOST_RATE,
    }


def _impression_table(
    rng: np.random.Generator,
    imp: dict[str, np.ndarray],
    user_ids: pa.Array,
    item_ids: pa.Array,
) -> tuple[pa.Table, dict[str, int]]:
    """The impressions file of one day: lost rows dropped, ~0.5% rows logged twice."""
    kept = np.flatnonzero(~imp["lost"])
    dup = kept[rng.random(kept.size) < _IMPRESSION_DUPLICATE_RATE]
    rows = np.sort(np.concatenate([kept, dup]), kind="stable")
    table = pa.table(
        {
            "impression_id": pa.array(imp["impression_id"][rows], type=pa.string()),
            "user_id": user_ids.take(pa.array(imp["user_idx"][rows])),
            "item_id": item_ids.take(pa.array(imp["item_idx"][rows])),
            "ts": _timestamps(imp["ts"][rows]),
            "feature_watermark": _timestamps(
                imp["feature_watermark"][rows], null=imp["null_watermark"][rows]
            ),
            "features": pa.StructArray.from_arrays(
                [pa.array(v[rows]) for v in imp["features"].values()], names=list(imp["features"])
            ),
        }
    )
    counts = {
        "duplicates": int(dup.size),
        "null_watermark": int(imp["null_watermark"][rows].sum()),
        "watermark_after_ts": int(imp["watermark_after_ts"][rows].sum()),
        "on_block_boundary": int(np.count_nonzero(imp["ts"][rows] % _BLOCK_US == 0)),
    }
    return table, counts


def _online_features(
    imp: dict[str, np.ndarray], views: dict[str, np.ndarray], origin: int, span_days: int
) -> dict[str, np.ndarray]:
    """The values an online store served at each impression (see the module docstring).

    The store follows the point-in-time rule: windows start at ``floor(ts) - W`` and end at
    ``min(floor(watermark), floor(ts))`` (``floor(ts)`` without a watermark), on 5-minute blocks.
    """
    g = _BLOCK_US
    t = imp["ts"]
    w = np.where(imp["null_watermark"], t, imp["feature_watermark"])
    t_floor = t - t % g
    end = np.minimum(w - w % g, t_floor)
    stale = (t >= _STALE_FROM) & (t < _STALE_TO)
    end = np.where(stale, end - _STALE_BLOCKS * g, end)
    span = span_days * _US_PER_DAY
    known = views["user_idx"] >= 0
    by_user = _WindowIndex(views["user_idx"][known], views["ts"][known], views["duration"][known], origin, span)
    by_item = _WindowIndex(views["item_idx"], views["ts"], views["duration"], origin, span)
    user, item = imp["user_idx"], imp["item_idx"]
    views_1h, _ = by_user.query(user, t_floor - _US_PER_HOUR, end)
    # The online code forgot the filter duration_s < 3600 (idle tabs): the logic incident.
    _, dur_sum_1h = by_user.query(user, t_floor - _US_PER_HOUR, end)
    item_views_1d, _ = by_item.query(item, t_floor - _US_PER_DAY, end)
    return {
        "user_views_1h": views_1h,
        "user_dur_sum_1h": np.round(dur_sum_1h, 6),
        "item_views_1d": item_views_1d,
    }


class _WindowIndex:
    """Count and sum of values per key over ``[lo, hi)`` time ranges, by binary search on
    (key, time) and prefix sums."""

    def __init__(self, keys: np.ndarray, ts: np.ndarray, values: np.ndarray, origin: int, span: int):
        self.origin, self.span = origin, span
        composite = keys.astype(np.int64) * span + (ts - origin)
        order = np.argsort(composite, kind="stable")
        self.composite = composite[order]
        self.prefix = np.concatenate([[0.0], np.cumsum(values[order])])

    def query(self, keys: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = np.clip(lo - self.origin, 0, self.span)
        hi = np.clip(hi - self.origin, 0, self.span)
        hi = np.maximum(hi, lo)
        base = keys.astype(np.int64) * self.span
        a = np.searchsorted(self.composite, base + lo, side="left")
        b = np.searchsorted(self.composite, base + hi, side="left")
        return (b - a).astype(np.int64), self.prefix[b] - self.prefix[a]


def _labels(
    rng: np.random.Generator,
    impressions: list[dict[str, np.ndarray]],
    user_p: np.ndarray,
    item_p: np.ndarray,
) -> dict[str, np.ndarray]:
    """Clicks and saves for all impressions, with delays from seconds to days.

    The probability of an action rises with the user's and the item's popularity (the same
    weights that drive events), so view counts and item popularity predict the labels.
    """
    imp_id = np.concatenate([imp["impression_id"] for imp in impressions])
    imp_ts = np.concatenate([imp["ts"] for imp in impressions])
    # Standardised over the impressions (not over all users), so the base rate is the intercept.
    user_z = _standardised(np.log(user_p[np.concatenate([i["user_idx"] for i in impressions])]))
    item_z = _standardised(np.log(item_p[np.concatenate([i["item_idx"] for i in impressions])]))
    lost = np.concatenate([imp["lost"] for imp in impressions])
    n = imp_id.size

    clicked = rng.random(n) < _sigmoid(-2.6 + 0.6 * user_z + 0.5 * item_z)
    # Most clicks come within a minute or two; some users come back hours later (outside 1h).
    click_delay = np.where(
        rng.random(n) < 0.92,
        rng.lognormal(mean=np.log(40.0), sigma=1.2, size=n),
        rng.uniform(3600.0, 30 * 3600.0, size=n),
    )
    saved = rng.random(n) < _sigmoid(-3.8 + 0.4 * user_z + 0.7 * item_z)
    # Saves take minutes to hours; ~10% come after more than a day (outside 1d).
    save_delay = np.where(
        rng.random(n) < 0.90,
        rng.lognormal(mean=np.log(20 * 60.0), sigma=1.5, size=n).clip(max=23 * 3600.0),
        rng.uniform(24 * 3600.0, 3 * 24 * 3600.0, size=n),
    )
    click_rows = np.flatnonzero(clicked)
    double = click_rows[rng.random(click_rows.size) < _DOUBLE_CLICK_RATE]
    save_rows = np.flatnonzero(saved)

    delay_s = np.concatenate(
        [click_delay[click_rows], click_delay[double] + rng.uniform(0.2, 5.0, double.size),
         save_delay[save_rows]]
    )
    rows = np.concatenate([click_rows, double, save_rows])
    return {
        "impression_id": imp_id[rows],
        "ts": imp_ts[rows] + np.round(delay_s * _US_PER_S).astype(np.int64),
        "action": np.array(
            ["click"] * (click_rows.size + double.size) + ["save"] * save_rows.size, dtype=object
        ),
        "orphan": lost[rows],
    }


def _zipf_p(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like probabilities over ``n`` entities, ranks shuffled so id order carries no rank."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(weights / weights.sum())


def _time_of_day_us(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microseconds after midnight following the daily cycle of ``_HOURLY_WEIGHTS``."""
    hour = rng.choice(24, size=n, p=_HOURLY_P)
    return hour * _US_PER_HOUR + rng.integers(0, _US_PER_HOUR, size=n)


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """``prefix`` + ``0..n-1`` zero-padded to ``width`` digits (more where a number needs them).

    Built as bytes with numpy, one fixed-width block per digit count (about 6x faster than
    formatting with pyarrow compute, which matters at 50M events a day); the same strings.
    """
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    chunks: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    lo, digits = 0, width
    while lo < n:
        hi = min(n, 10**digits)
        if hi > lo:
            numbers = np.arange(lo, hi, dtype=np.int64)
            rows = np.empty((hi - lo, head.size + digits), dtype=np.uint8)
            rows[:, : head.size] = head
            for j in range(digits):
                rows[:, head.size + j] = (numbers // 10 ** (digits - 1 - j)) % 10 + ord("0")
            chunks.append(rows.reshape(-1))
            lengths.append(np.full(hi - lo, head.size + digits, dtype=np.int32))
        lo, digits = max(lo, hi), digits + 1
    offsets = np.zeros(n + 1, dtype=np.int32)
    if n:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    data = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint8)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _timestamps(us: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(us, type=pa.int64(), mask=null).cast(TIMESTAMP_TYPE)


def _epoch_us(day: date) -> int:
    return (day - date(1970, 1, 1)).days * _US_PER_DAY


def _standardised(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
