"""Bad input data (issue #7), end to end through `tilewise` on Sail.

Every fault ends either in exit 2 with a message naming the source and the file (and nothing
published: the table keeps its version), or in a documented drop counted in the run manifest and
shown in the summary; never in a silently wrong table. Each test copies one small prepared folder
(definitions, two days of events, impressions, labels, and a warehouse backfilled once from them)
and breaks one thing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import (
    EVENTS,
    IMPRESSIONS,
    LABELS,
    REPO,
    manifests,
    table_content,
    tilewise,
    write_defs,
    write_parquet,
)

DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts, dedupe_key: event_id}
  impressions: {path: "${data_root}/impressions", format: parquet, timestamp: ts}
  actions: {path: "${data_root}/labels", format: parquet, timestamp: ts}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [5m, 1h, 1d]
    lateness: 1d
    features:
      - {name: n, aggregation: count, windows: [1h, 1d]}
      - {name: total, aggregation: sum, column: value, windows: [1h]}
training_sets:
  ts:
    impressions: impressions
    features: [acts.*]
    labels:
      - {name: clicked, source: actions, filter: "action = 'click'", within: 1h}
"""
BLOCKS = "blocks/acts"
RANGE = ["--start", "2026-03-01", "--end", "2026-03-03"]


def _events(day: int, n: int = 20) -> list[dict]:
    t0 = datetime(2026, 3, day)
    return [
        {"event_id": f"e{day}-{i}", "user_id": f"u{i % 3}", "kind": "view", "value": float(i), "ts": t0 + timedelta(minutes=7 * i)}
        for i in range(n)
    ]


def _with_type(schema: pa.Schema, column: str, to: pa.DataType) -> pa.Schema:
    return pa.schema([pa.field(f.name, to) if f.name == column else f for f in schema])


def _retyped(
    rows: list[dict], schema: pa.Schema, column: str, to: pa.DataType, how: Callable[[Any], object] = str
) -> tuple[list[dict], pa.Schema]:
    """`rows` with `column` converted by `how`, and the schema with its type `to`."""
    return [{**r, column: how(r[column])} for r in rows], _with_type(schema, column, to)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Definitions, data and a warehouse with blocks/acts v0 for 2026-03-01 .. 2026-03-03."""
    root = tmp_path_factory.mktemp("bad-input")
    write_defs(root, DEFS)
    data = root / "data"
    write_parquet(data / "events" / "part-1.parquet", _events(1), EVENTS)
    write_parquet(data / "events" / "part-2.parquet", _events(2), EVENTS)
    imps = [
        {"impression_id": "a", "user_id": "u0", "ts": datetime(2026, 3, 1, 10), "feature_watermark": None},
        {"impression_id": "b", "user_id": "u1", "ts": datetime(2026, 3, 2, 11, 30), "feature_watermark": None},
    ]
    write_parquet(data / "impressions" / "part-1.parquet", imps, IMPRESSIONS)
    labels = [
        {"impression_id": "a", "ts": datetime(2026, 3, 1, 10, 10), "action": "click"},
        {"impression_id": "x", "ts": datetime(2026, 3, 2, 12), "action": "click"},  # the labels' data end
    ]
    write_parquet(data / "labels" / "part-1.parquet", labels, LABELS)
    res = _tilewise(root, "backfill", *RANGE)
    assert res.returncode == 0, res.stderr
    return root


@pytest.fixture
def root(prepared: Path, tmp_path: Path) -> Path:
    shutil.copytree(prepared, tmp_path / "p")
    return tmp_path / "p"


def _tilewise(root: Path, *args: str, conf: list[str] | None = None):  # type: ignore[no-untyped-def]
    where = ["--defs", str(root / "feature_defs"), "--set", f"data_root={root / 'data'}"]
    where += conf or ["--set", f"warehouse={root / 'wh'}"]
    return tilewise(*args, *where, cwd=root)


def _version(root: Path, table: str = BLOCKS) -> int:
    from deltalake import DeltaTable

    return int(DeltaTable(str(root / "wh" / table)).version())


def _last_run(root: Path, command: str) -> dict:
    return manifests(root / "wh", command)[-1]


def _message(res) -> str:  # type: ignore[no-untyped-def]
    """The one-line error `tilewise: ...` the command ended with."""
    lines = [line for line in res.stderr.splitlines() if line.startswith("tilewise: ")]
    assert lines, res.stderr[-3000:]
    return lines[-1]


def _assert_refused(res, root: Path, *pieces: str) -> None:  # type: ignore[no-untyped-def]
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    message = _message(res)
    for piece in pieces:
        assert piece in message, (piece, message)
    assert _version(root) == 0, "nothing is published"
    assert _last_run(root, "backfill")["status"] == "failed"


# -- 1. corrupt files ------------------------------------------------------------------------------


def _damage_a_data_page(path: Path) -> None:
    """Scramble the middle of the first column chunk's compressed data; the footer stays intact."""
    meta = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = meta.dictionary_page_offset if meta.has_dictionary_page else meta.data_page_offset
    end = start + meta.total_compressed_size
    raw = bytearray(path.read_bytes())
    for i in range(start + (end - start) // 3, end - 2):
        raw[i] = (raw[i] * 7 + 3) % 256
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["cut in half", "random bytes", "damaged data page"])
def test_a_corrupt_parquet_file_is_exit_2_naming_source_and_file(root: Path, damage: str) -> None:
    bad = root / "data" / "events" / "part-2.parquet"
    if damage == "cut in half":
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    elif damage == "random bytes":
        bad.write_bytes(os.urandom(3000))
    else:
        _write_many_rows(bad)
        _damage_a_data_page(bad)
    res = _tilewise(root, "backfill", *RANGE)
    _assert_refused(res, root, "source events", f"file {bad}")


def _write_many_rows(path: Path) -> None:
    """A file big enough (snappy-compressed pages) that damage lands in page data."""
    rows = [{**e, "event_id": f"{e['event_id']}-{k}"} for k in range(100) for e in _events(2)]
    write_parquet(path, rows, EVENTS)


@pytest.mark.slow  # a JVM start; classic Spark raises other errors (a raw Py4JJavaError from writes)
def test_a_damaged_data_page_on_classic_spark_is_exit_2_naming_the_file(root: Path) -> None:
    bad = root / "data" / "events" / "part-2.parquet"
    _write_many_rows(bad)
    _damage_a_data_page(bad)
    conf = ["--conf", str(REPO / "conf" / "spark-local.yaml"), "--set", f"warehouse={root / 'wh-spark'}"]
    res = _tilewise(root, "backfill", *RANGE, "--quiet", conf=conf)
    assert res.returncode == 2, res.stderr[-3000:]
    message = _message(res)
    assert message.startswith("tilewise: source events: file ") and str(bad) in message, message


# -- 2. missing or empty source folder --------------------------------------------------------------


def test_a_missing_source_path_is_exit_2_naming_source_and_path(root: Path) -> None:
    shutil.rmtree(root / "data" / "events")
    res = _tilewise(root, "backfill", *RANGE)
    _assert_refused(res, root, "source events", str(root / "data" / "events"), "does not exist")


def test_a_source_folder_without_data_files_is_exit_2(root: Path) -> None:
    for f in (root / "data" / "events").iterdir():
        f.unlink()
    (root / "data" / "events" / "_SUCCESS").write_text("")
    res = _tilewise(root, "backfill", *RANGE)
    _assert_refused(res, root, "source events", "no parquet files under", "zero rows")


# -- 3. schema drift ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drift", "expect"),
    [
        ("user_id renamed userid", ["column user_id is missing", "only this file has userid"]),
        ("value double -> string", ["column value is string, expected double"]),
        ("ts timestamp -> string", ["column ts is string, expected timestamp[us]"]),
    ],
)
def test_schema_drift_in_one_file_is_exit_2_naming_file_column_and_types(root: Path, drift: str, expect: list[str]) -> None:
    bad = root / "data" / "events" / "part-2.parquet"
    rows, schema = _events(2), EVENTS
    if drift.startswith("user_id"):
        rows = [{("userid" if k == "user_id" else k): v for k, v in r.items()} for r in rows]
        schema = pa.schema([f.with_name("userid") if f.name == "user_id" else f for f in EVENTS])
    elif drift.startswith("value"):
        rows, schema = _retyped(rows, schema, "value", pa.string())
    else:
        rows, schema = _retyped(rows, schema, "ts", pa.string(), how=datetime.isoformat)
    write_parquet(bad, rows, schema)
    res = _tilewise(root, "backfill", *RANGE)
    _assert_refused(res, root, f"source events: file {bad}: ", *expect)


# -- 4. timestamps as numbers and as text --------------------------------------------------------------


def _epoch_ms(t: datetime) -> int:
    return int(t.replace(tzinfo=timezone.utc).timestamp() * 1000)


def test_an_epoch_number_timestamp_is_exit_2_and_the_hinted_view_gives_the_same_blocks(root: Path) -> None:
    before = table_content(root / "wh", BLOCKS)
    for day in (1, 2):
        rows, schema = _retyped(_events(day), EVENTS, "ts", pa.int64(), how=_epoch_ms)
        write_parquet(root / "data" / "events" / f"part-{day}.parquet", rows, schema)
    res = _tilewise(root, "backfill", *RANGE)
    _assert_refused(
        res, root, "source events: timestamp column 'ts' is a number (bigint)", "does not guess",
        "SELECT *, timestamp_seconds(ts) AS event_ts FROM events_raw", "timestamp_millis(ts)",
    )
    # The fix the message shows, with the milliseconds function: the same blocks as before.
    fixed = DEFS.replace(
        'events: {path: "${data_root}/events", format: parquet, timestamp: ts, dedupe_key: event_id}',
        'events_raw: {path: "${data_root}/events", format: parquet, timestamp: ts}\n'
        "  events: {sql: events.sql, timestamp: event_ts, dedupe_key: event_id}",
    )
    write_defs(root, fixed, sql={"events.sql": "SELECT *, timestamp_millis(ts) AS event_ts FROM events_raw"})
    res = _tilewise(root, "backfill", *RANGE, "--quiet", "--rebuild")  # the source's definition changed
    assert res.returncode == 0, res.stderr
    assert table_content(root / "wh", BLOCKS) == before


def test_iso_strings_parse_and_unparseable_ones_are_a_separate_counted_drop(root: Path) -> None:
    before = table_content(root / "wh", BLOCKS)
    formats = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%f"]
    for day in (1, 2):
        rows = [{**e, "ts": e["ts"].strftime(formats[i % len(formats)])} for i, e in enumerate(_events(day))]
        if day == 2:
            rows += [
                {**rows[0], "event_id": "bad-1", "ts": "yesterday"},
                {**rows[0], "event_id": "bad-2", "ts": "03/02/2026 10:00"},
                {**rows[0], "event_id": "bad-3", "ts": "2026-02-30 10:00:00"},
                {**rows[0], "event_id": "null-1", "ts": None},
            ]
        write_parquet(root / "data" / "events" / f"part-{day}.parquet", rows, _with_type(EVENTS, "ts", pa.string()))
    res = _tilewise(root, "backfill", *RANGE)
    assert res.returncode == 0, res.stderr
    run = _last_run(root, "backfill")
    assert run["dropped"] == {"acts: unparseable timestamp": 3, "acts: null timestamp": 1}
    assert run["counts"]["acts"]["events_aggregated"] == 40
    assert "dropped 3 rows: acts: unparseable timestamp" in res.stderr
    assert table_content(root / "wh", BLOCKS) == before


# -- 5. far-future and far-past timestamps -----------------------------------------------------------


def _write_odd_times(root: Path, now: datetime) -> None:
    rows = [
        {"event_id": "now-1", "user_id": "u0", "kind": "view", "value": 1.0, "ts": now - timedelta(hours=1)},
        {"event_id": "now-2", "user_id": "u1", "kind": "view", "value": 2.0, "ts": now - timedelta(hours=1)},
        {"event_id": "soon-1", "user_id": "u0", "kind": "view", "value": 3.0, "ts": now + timedelta(hours=1)},
        {"event_id": "soon-2", "user_id": "u0", "kind": "view", "value": 4.0, "ts": now + timedelta(hours=2)},
        {"event_id": "y9999", "user_id": "u0", "kind": "view", "value": 5.0, "ts": datetime(9999, 12, 31, 23, 59)},
        {"event_id": "y1", "user_id": "u0", "kind": "view", "value": 6.0, "ts": datetime(1, 1, 1)},
        {"event_id": "y1969", "user_id": "u2", "kind": "view", "value": 7.0, "ts": datetime(1969, 12, 31, 23, 59, 59)},
    ]
    write_parquet(root / "data" / "events" / "part-odd.parquet", rows, EVENTS)


def test_events_after_the_run_clock_are_a_counted_drop_not_aggregated(root: Path) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    _write_odd_times(root, now)
    today = now.date()
    res = _tilewise(root, "backfill", "--start", str(today - timedelta(days=1)), "--end", str(today + timedelta(days=2)))
    assert res.returncode == 0, res.stderr
    run = _last_run(root, "backfill")
    assert run["dropped"] == {"acts: timestamp in future": 2}
    assert run["counts"]["acts"]["events_aggregated"] == 2
    assert run["inputs"]["_sources"]["events"]["files_read"] == 1, "the 2026-03 files are pruned"
    assert "dropped 2 rows: acts: timestamp in future" in res.stderr


def test_far_past_timestamps_do_not_crash_and_land_in_their_block(root: Path) -> None:
    _write_odd_times(root, datetime(2026, 3, 2))
    res = _tilewise(root, "backfill", "--start", "1969-12-31", "--end", "1970-01-01", "--quiet")
    assert res.returncode == 0, res.stderr
    run = _last_run(root, "backfill")
    assert run["counts"]["acts"]["events_aggregated"] == 1  # 1969-12-31 23:59:59; year 1 is out of range
    assert run["dropped"] == {}
    from deltalake import DeltaTable

    blocks = DeltaTable(str(root / "wh" / BLOCKS)).to_pandas(filters=[("user_id", "=", "u2")])
    starts = sorted((size, str(t)[:19]) for size, t in zip(blocks["block_size"], blocks["block_start"]) if t.year < 1970)
    assert starts == [(300, "1969-12-31 23:55:00"), (3600, "1969-12-31 23:00:00"), (86400, "1969-12-31 00:00:00")]


def test_a_year_9999_label_event_does_not_make_immature_impressions_mature(root: Path) -> None:
    late = [{"impression_id": "z", "ts": datetime(9999, 12, 31, 23), "action": "click"}]
    write_parquet(root / "data" / "labels" / "part-9999.parquet", late, LABELS)
    res = _tilewise(root, "training-set", "ts", "--start", "2026-03-01", "--end", "2026-03-03")
    assert res.returncode == 0, res.stderr
    run = _last_run(root, "training-set")
    assert run["counts"]["label_cutoffs"] == {"clicked": "2026-03-02 12:00:00"}, "the latest label event not in the future"
    assert run["counts"]["ts"]["immature_not_emitted"] == 1  # b at 11:30 + 1h is after 12:00
    assert run["dropped"] == {"labels actions: timestamp in future": 1}
    assert "dropped 1 rows: labels actions: timestamp in future" in res.stderr
    from deltalake import DeltaTable

    rows = DeltaTable(str(root / "wh" / "training" / "ts")).to_pandas()
    assert rows[["impression_id", "clicked"]].values.tolist() == [["a", 1]]


def test_label_events_without_a_time_or_an_impression_id_are_counted_drops(root: Path) -> None:
    odd = [
        {"impression_id": "a", "ts": None, "action": "click"},
        {"impression_id": None, "ts": datetime(2026, 3, 1, 10, 20), "action": "click"},
        {"impression_id": "a", "ts": datetime(2026, 3, 1, 10, 30), "action": "click"},  # a second, valid click
    ]
    write_parquet(root / "data" / "labels" / "part-2.parquet", odd, LABELS)
    res = _tilewise(root, "training-set", "ts", "--start", "2026-03-01", "--end", "2026-03-03")
    assert res.returncode == 0, res.stderr
    run = _last_run(root, "training-set")
    assert run["dropped"] == {"labels actions: null timestamp": 1, "labels actions: null impression_id": 1}
    assert "labels actions: null timestamp" in res.stderr
    from deltalake import DeltaTable

    rows = DeltaTable(str(root / "wh" / "training" / "ts")).to_pandas()
    assert rows[["impression_id", "clicked"]].values.tolist() == [["a", 1]]


def test_a_label_cutoff_in_the_future_is_exit_2(root: Path) -> None:
    res = _tilewise(root, "training-set", "ts", "--start", "2026-03-01", "--end", "2026-03-03", "--label-cutoff", "9999-01-01T00:00:00")
    assert res.returncode == 2, res.stderr
    assert "--label-cutoff 9999-01-01T00:00:00 is in the future" in res.stderr
    assert not (root / "wh" / "training").exists()


# -- 6. no events -------------------------------------------------------------------------------------


def test_no_events_in_the_range_succeeds_clears_the_range_and_says_so(root: Path) -> None:
    before = table_content(root / "wh", BLOCKS)
    assert before, "the prepared table has blocks"
    res = _tilewise(root, "backfill", "--start", "2026-03-10", "--end", "2026-03-11")
    assert res.returncode == 0, res.stderr
    assert "acts: 0 events of source events in [2026-03-09 00:00, 2026-03-11 00:00) (0 rows read, 0 in range)" in res.stderr
    assert table_content(root / "wh", BLOCKS) == before  # Sail commits no version when nothing changes
    assert f"{BLOCKS}: unchanged at version 0 (nothing to write)" in res.stderr
    # The source's files now hold zero rows (an export with nothing to say): a re-run of the
    # backfilled range succeeds and leaves it without blocks, instead of keeping stale ones.
    for day in (1, 2):
        write_parquet(root / "data" / "events" / f"part-{day}.parquet", [], EVENTS)
    res = _tilewise(root, "backfill", *RANGE)
    assert res.returncode == 0, res.stderr
    assert "acts: 0 events of source events in [2026-02-28 00:00, 2026-03-03 00:00)" in res.stderr
    assert _version(root) == 1
    assert table_content(root / "wh", BLOCKS) == []
    assert _last_run(root, "backfill")["outputs"][BLOCKS]["rows"] == 0
    assert f"wrote {BLOCKS}: version 1, 0 rows" in res.stderr  # the old blocks were removed: a commit


# -- 7. files as pandas writes them ---------------------------------------------------------------


def test_pandas_default_nanosecond_files_backfill_to_the_same_blocks(root: Path) -> None:
    import pandas as pd

    before = table_content(root / "wh", BLOCKS)
    for day in (1, 2):
        frame = pd.DataFrame(_events(day))
        frame["ts"] = frame["ts"].dt.tz_localize("UTC") + pd.Timedelta(nanoseconds=999)  # truncated away
        frame.to_parquet(root / "data" / "events" / f"part-{day}.parquet")  # pandas' default: timestamp[ns, tz=UTC]
    res = _tilewise(root, "backfill", *RANGE, "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    assert table_content(root / "wh", BLOCKS) == before
    assert _last_run(root, "backfill")["inputs"]["_sources"]["events"]["truncation_moved_block"] == {"ts": 0}


def test_a_column_of_a_type_the_engines_cannot_read_is_exit_2_naming_source_file_and_column(root: Path) -> None:
    bad = root / "data" / "events" / "part-2.parquet"
    table = pa.Table.from_pylist(_events(2), EVENTS).append_column("weight", pa.array([1.0] * 20, pa.float16()))
    pq.write_table(table, bad)
    res = _tilewise(root, "backfill", *RANGE)
    _assert_refused(res, root, f"source events: file {bad}: column weight has type halffloat", "cannot read (half float)")
