"""Definitions: durations, the typed models, and the loader's errors (file, line, path, value)."""

from __future__ import annotations

import hashlib
import json
import string
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spark_jobs.defs.durations import Duration, parse_duration
from spark_jobs.defs.loader import load_definitions
from spark_jobs.defs.models import (
    AGGREGATIONS,
    Definitions,
    ExpectationSpec,
    Feature,
    FeatureRef,
    FeatureSet,
    Label,
    Source,
    TrainingSet,
    Validation,
)
from spark_jobs.defs.sql_allow_list import BARE_FUNCTIONS, FORBIDDEN, allowed_functions
from spark_jobs.defs.sql_guard import (
    SqlError,
    call_problems,
    check_filter,
    check_view_sql,
    parse,
    tokenize,
    view_references,
)
from spark_jobs.errors import DefinitionError, InputDataError, TilewiseError, ValidationFailed

# Sources (and one feature set) every case may refer to.
BASE = """\
sources:
  events:
    path: ${data_root}/events
    format: parquet
    timestamp: ts
  impressions:
    path: ${data_root}/impressions
    format: parquet
    timestamp: ts
  engagements:
    path: ${data_root}/labels
    format: delta
    timestamp: ts
feature_sets:
  snap:
    source: events
    key: user_id
    block_sizes: [5m, 1h, 1d]
    features:
      - name: views
        aggregation: count
        windows: [1h, 1d]
      - name: dur_avg
        aggregation: avg
        column: duration_s
        windows: [1h, 1d]
"""

MARK = "# <-"  # marks the line a problem must point at


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def load(root: Path, files: dict[str, str], **kwargs: object) -> Definitions:
    write(root, files)
    return load_definitions(root / "feature_defs", **kwargs)  # type: ignore[arg-type]


def problems(root: Path, files: dict[str, str]) -> str:
    with pytest.raises(DefinitionError) as info:
        load(root, files)
    return str(info.value)


def marked_line(text: str) -> int:
    return next(i for i, line in enumerate(textwrap.dedent(text).splitlines(), start=1) if MARK in line)


def assert_problem(message: str, file: str, line: int, path: str, value: str, *words: str) -> None:
    """One line of `message` is `file:line path: ...` and holds the value and every word."""
    where = f"{file}:{line} {path}: "
    lines = [text for text in message.splitlines() if text.startswith(where)]
    assert lines, f"no problem at {where!r} in:\n{message}"
    assert any(value in text and all(w in text for w in words) for text in lines), message


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # messages show paths relative to the working directory
    return tmp_path


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds, shown",
    [("30s", 30, "30s"), ("5m", 300, "5m"), ("1h", 3600, "1h"), ("1d", 86400, "1d"), ("7d", 604800, "7d"),
     ("2w", 1209600, "2w"), ("60m", 3600, "60m"), ("05m", 300, "5m"), (" 1h ", 3600, "1h")],
)
def test_parse_duration(text: str, seconds: int, shown: str) -> None:
    duration = parse_duration(text)
    assert duration.seconds == seconds
    assert str(duration) == shown


@pytest.mark.parametrize("text", ["", "5", "m", "0m", "-5m", "1.5h", "5M", "5 m", "5min", "1h30m", "99999d", "５m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration|too long"):
        parse_duration(text)


def test_duration_compares_by_seconds_and_keeps_its_unit() -> None:
    assert parse_duration("60m") == parse_duration("1h")
    assert hash(parse_duration("60m")) == hash(parse_duration("1h"))
    assert parse_duration("5m") < parse_duration("1h") < parse_duration("1d")
    assert str(Duration(300)) == "5m" and str(Duration(86400 * 14)) == "2w" and str(Duration(90)) == "90s"
    assert str(Duration(3600, "m")) == "60m"
    assert parse_duration("1d").is_multiple_of(parse_duration("5m"))
    assert not parse_duration("7m").is_multiple_of(parse_duration("5m"))
    with pytest.raises(ValueError):
        Duration(0)
    with pytest.raises(ValueError):
        Duration(90, "m")


@given(st.integers(min_value=1, max_value=500), st.sampled_from("smhdw"))
def test_duration_text_round_trips(count: int, unit: str) -> None:
    duration = parse_duration(f"{count}{unit}")
    assert str(duration) == f"{count}{unit}"
    assert parse_duration(str(duration)) == duration
    assert parse_duration(str(Duration(duration.seconds))) == duration


# -- errors ------------------------------------------------------------------------------------


def test_error_exit_codes() -> None:
    assert issubclass(DefinitionError, TilewiseError)
    assert (DefinitionError.exit_code, InputDataError.exit_code, ValidationFailed.exit_code) == (2, 2, 1)
    error = DefinitionError.collected(["a.yaml:1 x: bad", "b.yaml:2 y: bad"])
    assert str(error) == "a.yaml:1 x: bad\nb.yaml:2 y: bad"
    assert error.problems == ["a.yaml:1 x: bad", "b.yaml:2 y: bad"]
    assert DefinitionError("one").problems == ["one"]


# -- a full valid set --------------------------------------------------------------------------

FULL = """\
sources:
  events:
    path: ${data_root}/events
    format: parquet
    timestamp: ts
    dedupe_key: event_id
  views:
    sql: views.sql
    timestamp: ts
    dedupe_key: [event_id, user_id]
  impressions:
    path: ${data_root}/impressions
    format: delta
    timestamp: ts
  engagements:
    path: s3://bucket/labels
    format: json
    timestamp: ts
feature_sets:
  user_activity:
    source: views
    key: [user_id]
    block_sizes: [5m, 1h, 1d]
    lateness: 2h
    features:
      - {name: views, aggregation: count, windows: [1h, 1d], default: 0}
      - {name: dur_sum, aggregation: sum, column: duration_s, filter: "duration_s < 3600", windows: [1h]}
      - {name: dur_min, aggregation: min, column: duration_s, windows: [1h]}
      - {name: dur_max, aggregation: max, column: duration_s, windows: [1d]}
      - {name: dur_avg, aggregation: avg, column: duration_s, windows: [60m, 6h]}
      - {name: recent_items, aggregation: last_n, column: item_id, n: 5, windows: [1d]}
      - {name: distinct_items, aggregation: approx_count_distinct, column: item_id, windows: [7d]}
      - {name: dur_q, aggregation: approx_quantile, column: duration_s, quantiles: [0.5, 0.9], windows: [1d]}
  item_popularity:
    source: events
    key: item
    block_sizes: [1h]
    features:
      - {name: item_views, aggregation: count, filter: "event_type = 'view'", windows: [1d]}
training_sets:
  engagement:
    impressions: impressions
    keys: {item: item_id}
    features:
      - user_activity.*
      - item_popularity.item_views_1d
      - user_activity.views_1h
    labels:
      - {name: clicked, source: engagements, filter: "action = 'click'", within: 1h}
    validation:
      min_rows: 10
      max_null_fraction: {dur_avg_6h: 0.5}
      expectations:
        - type: expect_column_values_to_be_between
          kwargs: {column: views_1h, min_value: 0}
"""
VIEWS_SQL = "-- views only\nSELECT * FROM events WHERE event_type = 'view';\n"


def test_full_definitions(tmp_path: Path) -> None:
    defs = load(tmp_path, {"feature_defs/full.yaml": FULL, "sql/views.sql": VIEWS_SQL}, data_root="/data")

    assert defs.sources["events"] == Source(
        name="events", file="feature_defs/full.yaml", path="/data/events", format="parquet", timestamp="ts",
        dedupe_key=("event_id",),
    )
    views = defs.sources["views"]
    assert (views.path, views.format, views.sql_file) == (None, None, "views.sql")
    assert views.sql == "-- views only\nSELECT * FROM events WHERE event_type = 'view'"
    assert views.depends_on == ("events",) and views.dedupe_key == ("event_id", "user_id")
    assert defs.sources["events"].depends_on == ()

    fs = defs.feature_sets["user_activity"]
    assert {f.aggregation for f in fs.features} == set(AGGREGATIONS)
    assert fs.finest == Duration(300) and fs.lateness == Duration(7200) and fs.key == ("user_id",)
    assert fs.block_sizes == (Duration(300), Duration(3600), Duration(86400))
    views_feature = Feature(name="views", aggregation="count", windows=(Duration(3600), Duration(86400)), default=0)
    assert fs.feature("views") == views_feature
    assert fs.feature("recent_items").n == 5
    assert fs.feature("dur_q").quantiles == (0.5, 0.9)
    assert fs.feature("dur_sum").filter == "duration_s < 3600"
    assert fs.feature("dur_avg").output_columns == ("dur_avg_60m", "dur_avg_6h")
    assert defs.feature_sets["item_popularity"].key == ("item",)
    assert defs.feature_sets["item_popularity"].lateness == Duration(86400)

    ts = defs.training_sets["engagement"]
    assert ts.feature_sets == ("user_activity", "item_popularity")
    assert len(ts.features) == sum(len(f.windows) for f in fs.features) + 1  # views_1h only once
    assert ts.features[0] == FeatureRef(feature_set="user_activity", feature="views", window=Duration(3600))
    assert ts.features[-1].column == "item_views_1d" and str(ts.features[-1]) == "item_popularity.item_views_1d"
    assert ts.impression_column("item") == "item_id" and ts.impression_column("user_id") == "user_id"
    assert ts.labels == (Label(name="clicked", source="engagements", filter="action = 'click'", within=Duration(3600)),)
    assert ts.validation == Validation(
        min_rows=10,
        max_null_fraction={"dur_avg_6h": 0.5},
        expectations=(
            ExpectationSpec(type="expect_column_values_to_be_between", kwargs={"column": "views_1h", "min_value": 0}),
        ),
    )
    assert defs.files == {
        "feature_defs/full.yaml": hashlib.sha256(textwrap.dedent(FULL).encode()).hexdigest(),
        "sql/views.sql": hashlib.sha256(VIEWS_SQL.encode()).hexdigest(),
    }


def test_defaults_and_relative_data_root(tmp_path: Path) -> None:
    defs = load(tmp_path, {"feature_defs/base.yaml": BASE}, data_root="./data")
    assert defs.sources["events"].path == "./data/events"
    assert defs.sources["events"].dedupe_key == ()
    assert defs.training_sets == {}
    assert defs.feature_sets["snap"].lateness == Duration(86400)


def test_files_are_merged_recursively(tmp_path: Path) -> None:
    defs = load(
        tmp_path,
        {
            "feature_defs/a/sources.yml": BASE,
            "feature_defs/b/training.yaml": """\
                training_sets:
                  t:
                    impressions: impressions
                    features: [snap.views]
            """,
            "feature_defs/.hidden/ignored.yaml": "not: [valid",
            "feature_defs/notes.txt": "not yaml: [",
        },
    )
    assert set(defs.training_sets) == {"t"}
    assert list(defs.files) == ["feature_defs/a/sources.yml", "feature_defs/b/training.yaml"]


def test_an_empty_file_defines_nothing(tmp_path: Path) -> None:
    defs = load(tmp_path, {"feature_defs/empty.yaml": "", "feature_defs/comments.yaml": "# nothing yet\n"})
    assert (defs.sources, defs.feature_sets, defs.training_sets) == ({}, {}, {})


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    defs = load(
        tmp_path,
        {
            "feature_defs/a.yaml": BASE
            + """\
training_sets:
  t:
    impressions: impressions
    features: &feats [snap.views_1h]
  u:
    impressions: impressions
    features: *feats
    labels:
      - &clicked {name: clicked, source: engagements, within: 1h}
      - {<<: *clicked, name: saved}
""",
        },
    )
    assert defs.training_sets["u"].features == defs.training_sets["t"].features
    assert [label.name for label in defs.training_sets["u"].labels] == ["clicked", "saved"]


# -- feature references ------------------------------------------------------------------------

REFS = """\
sources:
  events: {path: /e, format: parquet, timestamp: ts}
  impressions: {path: /i, format: parquet, timestamp: ts}
feature_sets:
  fs:
    source: events
    key: user_id
    block_sizes: [1h]
    features:
      - {name: dur_avg, aggregation: avg, column: d, windows: [1h, 1d]}
      - {name: dur_avg_long, aggregation: avg, column: d, windows: [1d, 7d]}
      - {name: a1, aggregation: count, windows: [1h]}
training_sets:
  t:
    impressions: impressions
    features: FEATURES
"""


@pytest.mark.parametrize(
    "features, columns",
    [
        ("[fs.dur_avg_1h]", ["dur_avg_1h"]),
        ("[fs.dur_avg_1d]", ["dur_avg_1d"]),
        ("[fs.dur_avg_long_1d]", ["dur_avg_long_1d"]),
        ("[fs.dur_avg_long_7d, fs.dur_avg_1d]", ["dur_avg_long_7d", "dur_avg_1d"]),
        ("[fs.dur_avg]", ["dur_avg_1h", "dur_avg_1d"]),
        ("[fs.dur_avg_long]", ["dur_avg_long_1d", "dur_avg_long_7d"]),
        ("[fs.a1_1h]", ["a1_1h"]),
        ("[fs.a1_1h, fs.*, fs.dur_avg]", ["a1_1h", "dur_avg_1h", "dur_avg_1d", "dur_avg_long_1d", "dur_avg_long_7d"]),
    ],
)
def test_feature_refs_resolve(tmp_path: Path, features: str, columns: list[str]) -> None:
    defs = load(tmp_path, {"feature_defs/r.yaml": REFS.replace("FEATURES", features)})
    assert [ref.column for ref in defs.training_sets["t"].features] == columns
    assert all(ref.feature_set == "fs" for ref in defs.training_sets["t"].features)


@pytest.mark.parametrize(
    "ref, words",
    [
        ("nope.dur_avg_1h", ["nope is not a feature set", "defined: fs"]),
        ("fs.dur_sum_1h", ["fs has no feature dur_sum_1h", "features: a1, dur_avg, dur_avg_long"]),
        ("fs.dur_avg_7d", ["fs.dur_avg has no window 7d", "windows: 1h, 1d"]),
        ("fs.dur_avg_long_1h", ["fs.dur_avg_long has no window 1h", "windows: 1d, 7d"]),
        ("fs.dur_avg_60m", ["fs.dur_avg has no window 60m"]),
        ("dur_avg_1h", ["is not a feature reference", "feature_set.feature_window"]),
        ("fs.x.y", ["is not a feature reference"]),
    ],
)
def test_unknown_feature_refs(tmp_path: Path, ref: str, words: list[str]) -> None:
    text = REFS.replace("FEATURES", f"\n      - fs.a1_1h\n      - {ref}  {MARK}")
    message = problems(tmp_path, {"feature_defs/r.yaml": text})
    assert_problem(message, "feature_defs/r.yaml", marked_line(text), "training_sets.t.features[1]", ref, *words)


# -- bad definitions ---------------------------------------------------------------------------
# Each case is a file next to BASE; the line marked `# <-` is where the problem must point.

FEATURE_SET = """\
feature_sets:
  fs:
    source: events
    key: [user_id]
    block_sizes: BLOCKS
    features:
      - name: views
        aggregation: count
        windows: [1h]
      FEATURE
"""


def feature_case(feature: str, blocks: str = "[5m, 1h, 1d]") -> str:
    body = textwrap.indent(textwrap.dedent(feature), "        ").strip()
    return FEATURE_SET.replace("BLOCKS", blocks).replace("FEATURE", "- " + body)


CASES = [
    pytest.param(
        feature_case(f"""\
            name: dur
            aggregation: summ  {MARK}
            column: duration_s
            windows: [1h]"""),
        "feature_sets.fs.features[1] (dur).aggregation", "summ",
        ["is not an aggregation", "count, sum, min, max, avg, last_n, approx_count_distinct, approx_quantile"],
        id="unknown-aggregation",
    ),
    pytest.param(
        feature_case(f"""\
            name: dur
            aggregation: sum
            column: duration_s
            windows: [1h, 7m]  {MARK}"""),
        "feature_sets.fs.features[1] (dur).windows[1]", "7m", ["is not a multiple of the finest block 5m"],
        id="window-not-multiple-of-finest",
    ),
    pytest.param(
        feature_case("name: dur\naggregation: count\nwindows: [1h]", blocks=f"[5m, 1h, 90m]  {MARK}"),
        "feature_sets.fs.block_sizes[2]", "90m", ["is not a multiple of the block size before it, 1h"],
        id="block-size-not-multiple",
    ),
    pytest.param(
        feature_case("name: dur\naggregation: count\nwindows: [1h]", blocks=f"[1h, 5m]  {MARK}"),
        "feature_sets.fs.block_sizes[1]", "5m", ["is not longer than 1h", "finest first"],
        id="block-sizes-not-increasing",
    ),
    pytest.param(
        f"""\
        feature_sets:
          fs:
            source: events
            key: user_id
            block_sizes: [5m, 1h]
            lateness: 7m  {MARK}
            features: [{{name: views, aggregation: count, windows: [1h]}}]
        """,
        "feature_sets.fs.lateness", "7m", ["is not a multiple of the finest block 5m"],
        id="lateness-not-multiple",
    ),
    pytest.param(
        feature_case(f"""\
            name: dur  {MARK}
            aggregation: sum
            windows: [1h]"""),
        "feature_sets.fs.features[1] (dur).column", "missing", ["sum needs the column"],
        id="missing-column",
    ),
    pytest.param(
        feature_case(f"""\
            name: recent  {MARK}
            aggregation: last_n
            column: item_id
            windows: [1h]"""),
        "feature_sets.fs.features[1] (recent).n", "missing", ["last_n needs n"],
        id="missing-n",
    ),
    pytest.param(
        feature_case(f"""\
            name: q  {MARK}
            aggregation: approx_quantile
            column: duration_s
            windows: [1h]"""),
        "feature_sets.fs.features[1] (q).quantiles", "missing", ["approx_quantile needs quantiles"],
        id="missing-quantiles",
    ),
    pytest.param(
        feature_case(f"""\
            name: total
            aggregation: sum
            column: duration_s
            n: 3  {MARK}
            windows: [1h]"""),
        "feature_sets.fs.features[1] (total).n", "3", ["sum has no parameter n"],
        id="parameter-of-another-aggregation",
    ),
    pytest.param(
        feature_case(f"""\
            name: recent
            aggregation: last_n
            column: item_id
            n: 0  {MARK}
            windows: [1h]"""),
        "feature_sets.fs.features[1] (recent).n", "0", ["greater than or equal to 1"],
        id="n-below-one",
    ),
    pytest.param(
        feature_case(f"""\
            name: q
            aggregation: approx_quantile
            column: duration_s
            quantiles: [0.5, 1.5]  {MARK}
            windows: [1h]"""),
        "feature_sets.fs.features[1] (q).quantiles[1]", "1.5", ["less than or equal to 1"],
        id="quantile-above-one",
    ),
    pytest.param(
        feature_case(f"""\
            name: dur
            aggregation: count
            windows: [1h, 5x]  {MARK}"""),
        "feature_sets.fs.features[1] (dur).windows[1]", "5x", ["is not a duration", "e.g. 5m"],
        id="bad-duration-text",
    ),
    pytest.param(
        feature_case(f"""\
            name: dur
            aggregation: count
            windows: [0m]  {MARK}"""),
        "feature_sets.fs.features[1] (dur).windows[0]", "0m", ["longer than zero"],
        id="zero-duration",
    ),
    pytest.param(
        feature_case(f"""\
            name: dur
            aggregation: count
            windows: [60]  {MARK}"""),
        "feature_sets.fs.features[1] (dur).windows[0]", "60", ["is not a duration"],
        id="duration-without-unit",
    ),
    pytest.param(
        feature_case(f"""\
            name: dur
            aggregation: count
            windows: 1h  {MARK}"""),
        "feature_sets.fs.features[1] (dur).windows", "1h", ["should be a list"],
        id="windows-not-a-list",
    ),
    pytest.param(
        feature_case(f"""\
            name: dur
            aggregation: count
            windows: []  {MARK}"""),
        "feature_sets.fs.features[1] (dur).windows", "[]", ["should not be empty"],
        id="no-windows",
    ),
    pytest.param(
        feature_case(f"""\
            name: dur
            aggregation: count
            windws: [1h]  {MARK}"""),
        "feature_sets.fs.features[1] (dur).windws", "windws", ["is not a known field", "did you mean windows?",
                                                          "allowed: name, aggregation, column, filter, windows"],
        id="unknown-field",
    ),
    pytest.param(
        feature_case(f"""\
            name: Dur  {MARK}
            aggregation: count
            windows: [1h]"""),
        "feature_sets.fs.features[1] (Dur).name", "Dur", ["is not a valid name", "lowercase"],
        id="bad-feature-name",
    ),
    pytest.param(
        feature_case(f"""\
            name: views  {MARK}
            aggregation: count
            windows: [1d]"""),
        "feature_sets.fs.features[1] (views).name", "views", ["is defined twice", "features[0]"],
        id="duplicate-feature-name",
    ),
    pytest.param(
        f"""\
        feature_sets:
          fs:
            source: events
            key: user_id
            block_sizes: [5m]
            features:
              - {{name: views, aggregation: count, windows: [1h]}}  {MARK}
              - {{name: views_1h, aggregation: count, windows: [1d]}}
        """,
        "feature_sets.fs.features[0] (views).windows[0]", "1h", ["output column views_1h", "name of a feature"],
        id="output-column-is-a-feature-name",
    ),
    pytest.param(
        feature_case(f"""\
            name: views_avg
            aggregation: avg
            column: views
            windows: [1h, 60m]  {MARK}"""),
        "feature_sets.fs.features[1] (views_avg).windows[1]", "60m", ["repeats the window 1h"],
        id="repeated-window",
    ),
    pytest.param(
        feature_case(f"""\
            name: views_avg
            aggregation: count
            filter: "x > 1; DROP TABLE t"  {MARK}
            windows: [1h]"""),
        "feature_sets.fs.features[1] (views_avg).filter", '"x > 1; DROP TABLE t"', ["is not one boolean expression", ";"],
        id="filter-with-semicolon",
    ),
    pytest.param(
        feature_case(f"""\
            name: views_avg
            aggregation: count
            filter: "x IN (SELECT id FROM other)"  {MARK}
            windows: [1h]"""),
        "feature_sets.fs.features[1] (views_avg).filter", "SELECT", ["subqueries are not allowed"],
        id="filter-with-subquery",
    ),
    pytest.param(
        feature_case(f"""\
            name: views_avg
            aggregation: count
            filter: "a > 1, b > 2"  {MARK}
            windows: [1h]"""),
        "feature_sets.fs.features[1] (views_avg).filter", "a > 1, b > 2", ["separates expressions"],
        id="filter-with-two-expressions",
    ),
    pytest.param(
        feature_case(f"""\
            name: views_avg
            aggregation: count
            filter: "a > 1 -- b"  {MARK}
            windows: [1h]"""),
        "feature_sets.fs.features[1] (views_avg).filter", "a > 1 -- b", ["comments are not allowed"],
        id="filter-with-comment",
    ),
    pytest.param(
        feature_case(f"""\
            name: views_avg
            aggregation: count
            default: [0]  {MARK}
            windows: [1h]"""),
        "feature_sets.fs.features[1] (views_avg).default", "[0]", ["is not a valid default"],
        id="default-not-a-scalar",
    ),
    pytest.param(
        f"""\
        feature_sets:
          fs:
            source: evnts  {MARK}
            key: user_id
            block_sizes: [5m]
            features: [{{name: views, aggregation: count, windows: [1h]}}]
        """,
        "feature_sets.fs.source", "evnts", ["is not a source", "defined: engagements, events, impressions"],
        id="unknown-source-of-feature-set",
    ),
    pytest.param(
        f"""\
        feature_sets:
          fs:
            source: events
            key: {{user_id: 1}}  {MARK}
            block_sizes: [5m]
            features: [{{name: views, aggregation: count, windows: [1h]}}]
        """,
        "feature_sets.fs.key", "{user_id: 1}", ["should be a list"],
        id="key-not-a-string-or-list",
    ),
    pytest.param(
        f"""\
        feature_sets:
          fs:
            source: events
            key: user_id
            block_sizes: [5m]
            features: {{name: views, aggregation: count, windows: [1h]}}  {MARK}
        """,
        "feature_sets.fs.features", "{name: views", ["should be a list"],
        id="features-not-a-list",
    ),
    pytest.param(
        f"""\
        feature_sets:
          fs: [events]  {MARK}
        """,
        "feature_sets.fs", "[events]", ["a feature set is a mapping of source, key, block_sizes"],
        id="entry-not-a-mapping",
    ),
    pytest.param(
        f"""\
        feature_sets:
          Views:  {MARK}
            source: events
        """,
        "feature_sets.Views", "Views", ["is not a valid name"],
        id="bad-feature-set-name",
    ),
    pytest.param(
        f"""\
        sources:
          ../x:  {MARK}
            path: /x
            format: parquet
            timestamp: ts
        """,
        'sources["../x"]', "../x", ["is not a valid name", "lowercase letters, digits and _"],
        id="path-as-source-name",
    ),
    pytest.param(
        f"""\
        sources:
          clicks:
            name: other  {MARK}
            path: /x
            format: parquet
            timestamp: ts
        """,
        "sources.clicks.name", "name", ["is not a known field", "allowed: path, format, timestamp, dedupe_key, sql"],
        id="name-inside-an-entry",
    ),
    pytest.param(
        f"""\
        sources:
          clicks:
            path: /x
            format: orc  {MARK}
            timestamp: ts
        """,
        "sources.clicks.format", "orc", ["'parquet', 'delta', 'csv' or 'json'"],
        id="unknown-format",
    ),
    pytest.param(
        f"""\
        sources:
          clicks:  {MARK}
            path: /x
            timestamp: ts
        """,
        "sources.clicks.format", "missing", ["needs a format"],
        id="path-without-format",
    ),
    pytest.param(
        f"""\
        sources:
          clicks:  {MARK}
            path: /x
            format: parquet
        """,
        "sources.clicks.timestamp", "missing", ["required"],
        id="missing-timestamp",
    ),
    pytest.param(
        f"""\
        sources:
          clicks:  {MARK}
            timestamp: ts
        """,
        "sources.clicks", "", ["needs either path (with format) or sql"],
        id="neither-path-nor-sql",
    ),
    pytest.param(
        f"""\
        sources:
          clicks:
            path: ${{data_dir}}/clicks  {MARK}
            format: parquet
            timestamp: ts
        """,
        "sources.clicks.path", "${data_dir}/clicks", ["unknown variable", "${data_root}"],
        id="unknown-path-variable",
    ),
    pytest.param(
        f"""\
        sources:
          clicks:
            path: /x
            format: parquet
            timestamp: ts
            dedupe_key: [a, [b]]  {MARK}
        """,
        "sources.clicks.dedupe_key[1]", "[b]", ["should be a text"],
        id="dedupe-key-not-columns",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: imps  {MARK}
            features: [snap.views_1h]
        """,
        "training_sets.t.impressions", "imps", ["is not a source"],
        id="unknown-impressions-source",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: impressions
            features: [snap.views_1h]
            labels:
              - {{name: clicked, source: clicks, within: 1h}}  {MARK}
        """,
        "training_sets.t.labels[0] (clicked).source", "clicks", ["is not a source"],
        id="unknown-label-source",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: impressions
            features: [snap.views_1h]
            labels:
              - name: clicked
                source: engagements
                within: 1.5h  {MARK}
        """,
        "training_sets.t.labels[0] (clicked).within", "1.5h", ["is not a duration"],
        id="bad-within",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: impressions
            features: [snap.views_1h]
            labels:
              - name: Clicked  {MARK}
                source: engagements
                within: 1h
        """,
        "training_sets.t.labels[0] (Clicked).name", "Clicked", ["is not a valid name"],
        id="bad-label-name",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: impressions
            features: [snap.views_1h]
            labels:
              - {{name: clicked, source: engagements, within: 1h}}
              - {{name: clicked, source: engagements, within: 1d}}  {MARK}
        """,
        "training_sets.t.labels[1] (clicked).name", "clicked", ["is already the name of labels[0]"],
        id="duplicate-label",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: impressions
            features: [snap.views_1h]
            labels:
              - {{name: views_1h, source: engagements, within: 1h}}  {MARK}
        """,
        "training_sets.t.labels[0] (views_1h).name", "views_1h", ["is already the column of feature snap.views_1h"],
        id="label-named-like-a-feature-column",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: impressions
            keys: {{user: uid}}  {MARK}
            features: [snap.views_1h]
        """,
        "training_sets.t.keys.user", "user", ["is not a key column of the feature sets used", "keys: user_id"],
        id="keys-maps-no-key-column",
    ),
    pytest.param(
        f"""\
        feature_sets:
          other:
            source: events
            key: user_id
            block_sizes: [5m]
            features: [{{name: views, aggregation: count, windows: [1h]}}]
        training_sets:
          t:
            impressions: impressions
            features:
              - snap.views_1h
              - other.views_1h  {MARK}
        """,
        "training_sets.t.features[1]", "other.views_1h", ["gives column views_1h, as snap.views_1h does"],
        id="two-feature-sets-give-one-column",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: impressions
            features: [snap.views_1h]
            validation:
              min_rows: 10
              max_null_fraction: {{views_1h: 1.5}}  {MARK}
        """,
        "training_sets.t.validation.max_null_fraction.views_1h", "1.5", ["less than or equal to 1"],
        id="null-fraction-above-one",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: impressions
            features: [snap.views_1h]
            validation:
              expectations:
                - type: ExpectRowsToExist  {MARK}
        """,
        "training_sets.t.validation.expectations[0].type", "ExpectRowsToExist", ["snake_case", "expect_"],
        id="expectation-type-not-snake-case",
    ),
    pytest.param(
        f"""\
        training_sets:
          t:
            impressions: impressions
            features: [snap.views_1h]
            validation:
              min_row: 10  {MARK}
        """,
        "training_sets.t.validation.min_row", "min_row", ["did you mean min_rows?"],
        id="unknown-validation-field",
    ),
    pytest.param(
        f"""\
        training_set:  {MARK}
          t: {{}}
        """,
        "training_set", "training_set",
        ["did you mean training_sets?", "allowed: sources, feature_sets, training_sets"],
        id="unknown-section",
    ),
]


@pytest.mark.parametrize("case, path, value, words", CASES)
def test_bad_definition(tmp_path: Path, case: str, path: str, value: str, words: list[str]) -> None:
    message = problems(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/case.yaml": case})
    assert_problem(message, "feature_defs/case.yaml", marked_line(case), path, value, *words)


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("sources:\n  a: [1\n", 3, "expected ',' or ']'"),
        ("sources:\n  a:\n    path: x\n   format: y\n", 4, "YAML syntax error"),
        ("sources:\n  a: {path: x}\n  a: {path: y}\n", 3, "the key a appears twice"),
        ("a: 1\n---\nb: 2\n", 2, "single document"),
        ("sources:\n  a: !!python/object:os.system {}\n", 2, "not supported"),
        ("sources:\n  a: &x [*x]\n", 2, "refers to a value that contains it"),
        ("sources:\n  when: 2024-13-45\n", 2, "bad value"),
        ("sources:\n  ? [a, b]\n  : c\n", 2, "a key must be a plain value"),
    ],
)
def test_yaml_syntax_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    error = problems(tmp_path, {"feature_defs/bad.yaml": text})
    assert error.startswith(f"feature_defs/bad.yaml:{line}: YAML syntax error: "), error
    assert message in error


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    message = problems(tmp_path, {"feature_defs/list.yaml": "- sources\n- feature_sets\n"})
    assert message == (
        "feature_defs/list.yaml:1: [sources, feature_sets]: a definitions file is a mapping of"
        " sources, feature_sets, training_sets"
    )


def test_names_defined_twice_across_files(tmp_path: Path) -> None:
    second = f"""\
        sources:
          events:  {MARK}
            path: /other
            format: csv
            timestamp: ts
    """
    message = problems(tmp_path, {"feature_defs/a.yaml": BASE, "feature_defs/b.yaml": second})
    assert_problem(message, "feature_defs/b.yaml", marked_line(second), "sources.events", "events",
                   "is defined twice", "also in feature_defs/a.yaml:2")


def test_problems_of_all_files_are_collected_and_sorted(tmp_path: Path) -> None:
    message = problems(
        tmp_path,
        {
            "feature_defs/a.yaml": "sources:\n  x: {path: /x, format: orc, timestamp: ts}\n  Y: {}\n",
            "feature_defs/b.yaml": "feature_sets: [",
            "feature_defs/c.yaml": BASE.replace("[1h, 1d]", "[1h, 7m]", 1),
        },
    )
    lines = message.splitlines()
    assert [line.split(" ")[0] for line in lines] == [
        "feature_defs/a.yaml:2", "feature_defs/a.yaml:3", "feature_defs/b.yaml:1:", "feature_defs/c.yaml:22"
    ]
    assert lines[3].endswith("feature_sets.snap.features[0] (views).windows[1]: 7m is not a multiple of the finest block 5m")


def test_missing_definitions_folder(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="nowhere: no such definitions folder"):
        load_definitions(tmp_path / "nowhere")


def test_paths_outside_the_working_directory_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"defs/a.yaml": "sources: 5\n"})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(DefinitionError) as info:
        load_definitions(tmp_path / "defs")
    assert str(info.value).startswith(f"{tmp_path}/defs/a.yaml:1 sources: 5 is not valid")


# -- SQL views ---------------------------------------------------------------------------------

VIEW = f"""\
sources:
  views:
    sql: views.sql  {MARK}
    timestamp: ts
"""


@pytest.mark.parametrize(
    "sql, words",
    [
        ("SELECT * FROM events; DROP TABLE events", ["views.sql line 1", "; separates statements"]),
        ("SELECT 1;\nSELECT 2", ["views.sql line 1", "; separates statements"]),
        ("DROP TABLE events", ["views.sql line 1", "starts with DROP"]),
        ("INSERT INTO events SELECT * FROM events", ["starts with INSERT"]),
        ("CREATE VIEW v AS SELECT 1", ["starts with CREATE"]),
        ("SET spark.sql.ansi.enabled = false", ["starts with SET"]),
        ("USE other_db", ["starts with USE"]),
        ("WITH x AS (SELECT 1)\nDELETE FROM events", ["views.sql line 2", "DELETE is not allowed", "no DDL, DML"]),
        ("SELECT * FROM events\nWHERE 1 = 1\nMERGE INTO t", ["views.sql line 3", "MERGE is not allowed"]),
        ("SELECT * FROM (UPDATE t SET a = 1)", ["UPDATE is not allowed"]),
        ("SELECT 'unterminated FROM events", ["the quote ' is never closed"]),
        ("SELECT (1 FROM events", ["a ( is never closed"]),
        ("-- nothing\n", ["is empty"]),
        ("SELECT * FROM clicks", ["views.sql line 1", "clicks is not a source", "sources (engagements, events"]),
        ("SELECT * FROM parquet.`/etc/secrets`", ["parquet.`/etc/secrets` is not a source"]),
        ("SELECT * FROM read_files('/etc')", ["calls read_files()", "is not a function definitions may call"]),
        ("SELECT * FROM events e, other.db", ["other.db is not a source"]),
        ("SELECT *\nFROM events\nWHERE reflect('java.lang.System', 'getProperty', 'user.home') IS NOT NULL",
         ["views.sql line 3", "calls reflect(), which calls into the JVM"]),
        ("SELECT *, rand() AS r FROM events", ["views.sql line 1", "calls rand(), which differs on every run"]),
        ("SELECT user_id, collect_list(item_id) AS items FROM events GROUP BY user_id",
         ["calls collect_list()", "depends on the order rows arrive in"]),
        ("SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY ts) AS n FROM events", ["calls row_number()"]),
        ("SELECT *, input_file_name() AS f FROM events", ["calls input_file_name()", "split into files"]),
        ("SELECT * FROM events WHERE home = '${system:user.home}'", ["${...} is not allowed", "system property"]),
        ("SELECT * FROM events -- all of them \\\nWHERE rand() < 0.5", ["-- comment may not end with \\"]),
        ("SELECT TRANSFORM(user_id) USING 'cat' AS (u) FROM events", ["USING 'cat' runs an external program"]),
        ("SELECT * FROM events TABLESAMPLE (10 PERCENT)", ["TABLESAMPLE picks different rows on every run"]),
        ("SELECT * FROM events LIMIT 100", ["LIMIT keeps rows that may differ between runs"]),
        ("SELECT /*+ BROADCAST(events) */ * FROM events", ["hints (/*+ ... */) are not allowed"]),
        ("SELECT * FROM IDENTIFIER('par' || 'quet.`/etc`')", ["calls IDENTIFIER()", "cannot be checked"]),
        ("SELECT * FROM events WHERE ts < DATE 'today'", ["uses 'today'", "the time the query runs"]),
        ("SELECT * FROM events WHERE EXISTS (SELECT 1 FROM parquet.`/etc`)", ["parquet.`/etc` is not a source"]),
        ("SELECT coalesce((SELECT max(x) FROM secrets), 0) AS m FROM events", ["secrets is not a source"]),
    ],
)
def test_view_is_one_select_over_sources(tmp_path: Path, sql: str, words: list[str]) -> None:
    message = problems(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/v.yaml": VIEW, "sql/views.sql": sql})
    assert_problem(message, "feature_defs/v.yaml", marked_line(VIEW), "sources.views.sql", "views.sql", *words)


@pytest.mark.parametrize(
    "ref, words",
    [("missing.sql", ["missing.sql: no such file under sql"]), ("../secrets.sql", ["is not a file under sql"]),
     ("/etc/passwd", ["is not a file under sql"])],
)
def test_view_file_must_exist_under_sql(tmp_path: Path, ref: str, words: list[str]) -> None:
    write(tmp_path, {"secrets.sql": "SELECT 1"})
    case = VIEW.replace("views.sql", ref)
    message = problems(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/v.yaml": case})
    assert_problem(message, "feature_defs/v.yaml", marked_line(case), "sources.views.sql", ref, *words)


def test_views_name_the_sources_they_read(tmp_path: Path) -> None:
    views = """\
        sources:
          a: {sql: a.sql, timestamp: ts}
          b: {sql: b.sql, timestamp: ts}
    """
    a_sql = """\
        -- FROM and JOIN in comments, strings and function calls are no tables: FROM nowhere
        WITH recent AS (SELECT * FROM Events WHERE ts > timestamp_seconds(0) + INTERVAL 1 DAY)
        SELECT extract(hour FROM ts) AS h, trim(BOTH ' ' FROM name) AS n, 'JOIN x; DROP' AS s, `update`
        FROM recent r JOIN `impressions` i ON r.id = i.id, range(3) AS t(x)
        WHERE r.id IN (SELECT id FROM engagements);
    """
    files = {"feature_defs/base.yaml": BASE, "feature_defs/v.yaml": views, "sql/a.sql": a_sql}
    files["sql/b.sql"] = "SELECT * FROM a"
    defs = load(tmp_path, files)
    assert defs.sources["a"].depends_on == ("events", "impressions", "engagements")
    assert defs.sources["a"].sql is not None and defs.sources["a"].sql.endswith("FROM engagements)")
    assert defs.sources["b"].depends_on == ("a",)
    assert set(defs.files) == {"feature_defs/base.yaml", "feature_defs/v.yaml", "sql/a.sql", "sql/b.sql"}


def test_views_may_live_in_another_sql_folder(tmp_path: Path) -> None:
    write(tmp_path, {"team/queries/v.sql": "SELECT * FROM events"})
    defs = load(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/v.yaml": VIEW.replace("views.sql", "v.sql")},
                sql_dir=tmp_path / "team" / "queries")
    assert defs.sources["views"].depends_on == ("events",)
    assert "queries/v.sql" in defs.files


@pytest.mark.parametrize(
    "sqls, cycle",
    [
        ({"a": "SELECT * FROM b", "b": "SELECT * FROM a"}, "a -> b -> a"),
        ({"a": "SELECT * FROM a"}, "a -> a"),
        ({"a": "SELECT * FROM b", "b": "SELECT * FROM c JOIN events", "c": "SELECT * FROM a"}, "a -> b -> c -> a"),
    ],
)
def test_cycles_between_views(tmp_path: Path, sqls: dict[str, str], cycle: str) -> None:
    views = "sources:\n" + "".join(f"  {name}: {{sql: {name}.sql, timestamp: ts}}\n" for name in sqls)
    files = {"feature_defs/base.yaml": BASE, "feature_defs/v.yaml": views}
    files |= {f"sql/{name}.sql": sql for name, sql in sqls.items()}
    message = problems(tmp_path, files)
    assert_problem(message, "feature_defs/v.yaml", 2, "sources.a.sql", "a.sql", f"SQL views form a cycle: {cycle}")
    assert len(message.splitlines()) == 1


def test_sql_checks_directly() -> None:
    assert check_view_sql("SELECT 1 ;; \n") == "SELECT 1"
    assert check_view_sql("(SELECT 1) UNION ALL (SELECT 2)") == "(SELECT 1) UNION ALL (SELECT 2)"
    assert check_filter("a IN (1, 2) AND b LIKE 'x;%' AND `set` = 1 AND t.update > 0") == (
        "a IN (1, 2) AND b LIKE 'x;%' AND `set` = 1 AND t.update > 0"
    )
    for bad in ("", "a = 1) OR (1 = 1", "DROP TABLE t", "a = 'x"):
        with pytest.raises(ValueError, match="is not one boolean expression"):
            check_filter(bad)
    assert view_references("SELECT * FROM x LEFT SEMI JOIN y USING (id) WHERE z > 1", {"x", "y", "z"}) == ("x", "y")


# -- what filters and views may call -----------------------------------------------------------


def filter_case(expr: str) -> str:
    return feature_case(f"""\
        name: hits
        aggregation: count
        filter: {json.dumps(expr)}  {MARK}
        windows: [1h]""")


@pytest.mark.parametrize(
    "expr, words",
    [
        ("reflect('java.lang.System', 'getProperty', 'user.home') IS NOT NULL", ["calls reflect()", "into the JVM"]),
        ("java_method('java.lang.Runtime', 'getRuntime') IS NULL", ["calls java_method()", "into the JVM"]),
        ("`ReFlect`('a', 'b') IS NULL", ["calls `ReFlect`()", "into the JVM"]),
        ("system.builtin.try_reflect('a', 'b') IS NULL", ["calls system.builtin.try_reflect()", "into the JVM"]),
        ("rand() < 0.1", ["calls rand(), which differs on every run"]),
        ("abs(hash(uuid())) % 2 = 0", ["calls uuid(), which differs on every run"]),
        ("ts > current_timestamp() - INTERVAL 1 DAY", ["calls current_timestamp()", "is the time the query runs"]),
        ("ts > current_date", ["calls current_date (a function even without parentheses)", "the time the query runs"]),
        ("unix_timestamp() - unix_timestamp(ts) < 3600", ["calls unix_timestamp(), which without an argument"]),
        ("ts > TIMESTAMP 'now'", ["uses 'now', which read as a date or time is the time the query runs"]),
        ("input_file_name() LIKE '%2026%'", ["calls input_file_name()", "split into files and partitions"]),
        ("user = 'root'", ["calls user (a function even without parentheses)", "reads the environment"]),
        ("size(shuffle(items)) > 0", ["calls shuffle(), which differs on every run"]),
        ("IDENTIFIER('ref' || 'lect')('a', 'b') IS NULL", ["calls IDENTIFIER()", "cannot be checked"]),
        ("path = '${env:HOME}'", ["${...} is not allowed", "environment variable"]),
        ("team.my_udf(x) > 1", ["calls team.my_udf()", "not a built-in function"]),
        ("uper(kind) = 'VIEW'", ["calls uper()", "not a function definitions may call", "docs/definitions.md",
                                 "did you mean upper?"]),
        ("count(x) > 1", ["calls count()", "a filter tests one row"]),
    ],
)
def test_filters_call_only_allowed_functions(tmp_path: Path, expr: str, words: list[str]) -> None:
    case = filter_case(expr)
    message = problems(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/case.yaml": case})
    path = "feature_sets.fs.features[1] (hits).filter"
    assert_problem(message, "feature_defs/case.yaml", marked_line(case), path, expr[:12], *words)
    assert len(message.splitlines()) == 1, message


@pytest.mark.parametrize(
    "field, path",
    [("column", "feature_sets.fs.features[1] (hits).column"), ("key", "feature_sets.fs.key[0]"),
     ("timestamp", "sources.raw.timestamp")],
)
def test_a_column_name_cannot_leave_its_quotes(tmp_path: Path, field: str, path: str) -> None:
    name = "x` + length(reflect('java.lang.System', 'getProperty', 'user.home')) + `y"
    values = {"column": "duration_s", "key": "user_id", "timestamp": "ts"} | {field: name}
    case = f"""\
        sources:
          raw: {{path: /raw, format: parquet, timestamp: {json.dumps(values["timestamp"])}}}
        feature_sets:
          fs:
            source: raw
            key: [{json.dumps(values["key"])}]
            block_sizes: [5m]
            features:
              - {{name: views, aggregation: count, windows: [1h]}}
              - {{name: hits, aggregation: sum, column: {json.dumps(values["column"])}, windows: [1h]}}
    """
    message = problems(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/case.yaml": case})
    assert_problem(message, "feature_defs/case.yaml", next(i for i, text in enumerate(textwrap.dedent(case).splitlines(), 1)
                                                           if "reflect" in text), path, "x`", "is not a valid column name")
    assert len(message.splitlines()) == 1, message


def test_each_forbidden_function_is_one_problem(tmp_path: Path) -> None:
    case = filter_case("rand() < 0.5 AND rand() > 0.1 AND uuid() <> ''")
    message = problems(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/case.yaml": case})
    assert [line.split(", which")[0].rsplit(" ", 1)[-1] for line in message.splitlines()] == ["rand()", "uuid()"]


@pytest.mark.parametrize(
    "expr",
    [
        "duration_s < 3600 AND kind IN ('view', 'like')",
        "extract(hour FROM ts) BETWEEN 8 AND 18 AND a IS DISTINCT FROM b",
        "trim(BOTH ' ' FROM name) <> '' AND position('x' IN name) > 0",
        "CAST(price AS DECIMAL(10, 2)) > 9.99 AND code::VARCHAR(3) = 'abc' AND CAST(t AS ARRAY<STRUCT<a: INT>>) IS NULL",
        "exists(tags, t -> lower(t) = 'news') AND aggregate(counts, 0, (acc, c) -> acc + c) > 3",
        "SYSTEM.BUILTIN.ABS(delta) < 5 AND builtin.round(x, 1) = 0.5",
        "regexp_like(url, '^https://') AND NOT startswith(url, 'https://internal')",
        "kind = 'it''s' OR kind = \"it's\" OR kind = 'a\\\\' OR kind = r'c:\\'",
        "t.user = 'root' OR info.current_date IS NULL OR user_name = 'x'",  # fields, not calls
        "ts >= TIMESTAMP '2026-01-01 00:00:00' AND note <> 'now and then'",
        "unix_timestamp(ts, 'yyyy-MM-dd') > 0",
    ],
)
def test_filters_that_are_fine(expr: str) -> None:
    assert check_filter(expr) == expr


def test_views_that_are_fine(tmp_path: Path) -> None:
    sql = """\
        /* a comment: reflect('x') and rand() are not called */
        WITH daily(user_id, day, n) AS (
          SELECT user_id, date_trunc('DAY', ts), count(*) FILTER (WHERE duration_s > 0)
          FROM events GROUP BY 1, 2
        ), ranked AS (
          SELECT *, dense_rank() OVER (PARTITION BY user_id ORDER BY n DESC) AS r FROM daily
        )
        SELECT d.*, t.x, CAST(d.n AS DECIMAL(12, 2)) AS amount, e.pos, e.item  -- every day three times
        FROM ranked d, range(3) AS t(x) LATERAL VIEW posexplode(array(1, 2)) e AS pos, item
    """
    defs = load(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/v.yaml": VIEW, "sql/views.sql": sql})
    assert defs.sources["views"].depends_on == ("events",)


def test_every_allowed_example_is_read_as_a_call_of_its_function() -> None:
    wrong = {}
    for name, example in allowed_functions(view=True).items():
        sql = example if example.startswith("SELECT") else f"SELECT {example} AS c FROM tiny"
        parsed = parse(tokenize(sql))
        if name not in {call.name for call in parsed.calls} or list(call_problems(parsed, view=True)):
            wrong[name] = example
    assert not wrong
    assert not set(FORBIDDEN) & set(allowed_functions(view=True))
    assert BARE_FUNCTIONS <= set(FORBIDDEN)


def test_the_docs_list_every_allowed_and_forbidden_function() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "definitions.md").read_text()
    missing = [name for name in [*allowed_functions(view=True), *FORBIDDEN] if f"`{name}`" not in docs]
    assert not missing, f"docs/definitions.md does not name: {', '.join(missing)}"


def test_tokens_as_spark_reads_them() -> None:
    def texts(sql: str) -> list[str]:
        return [token.text for token in tokenize(sql)]

    assert texts("a /* x -- y */ b -- c */ reflect()") == ["a", "b"]
    assert texts("r'a\\' b 'c\\\\' d") == ["r'a\\'", "b", "'c\\\\'", "d"]  # no escapes in raw strings
    assert texts("a -- x\rb") == ["a", "b"]  # a -- comment ends at \r too
    assert texts("`a``b`.c <=> d::int -> e") == ["`a``b`", ".", "c", "<=>", "d", "::", "int", "->", "e"]
    numbers = [(t.kind, t.text) for t in tokenize("1L 1.5e3D .5 1abc 2BD 1.5reflect")]
    assert numbers == [("number", "1L"), ("number", "1.5e3D"), ("number", ".5"), ("word", "1abc"),
                       ("number", "2BD"), ("number", "1.5"), ("word", "reflect")]
    for bad, what in [("a /* b", "never closed"), ("a \u00e9", "not allowed outside a string"), ("`a", "never closed"),
                      ("'a\\\\", "never closed"), ("a /* /* */ reflect() */", "readers differ on nesting"),
                      ("'a\\' || reflect() || '", "write the string in the other quotes")]:
        with pytest.raises(SqlError, match=what):
            tokenize(bad)


def test_row_conditions_of_expectations_are_filters(tmp_path: Path) -> None:
    case = f"""\
        training_sets:
          t:
            impressions: impressions
            features: [snap.views_1h]
            validation:
              expectations:
                - type: expect_column_values_to_not_be_null
                  kwargs: {{column: views_1h, condition_parser: spark, row_condition: "views_1h > 0"}}
                - type: expect_column_values_to_not_be_null
                  kwargs: {{column: views_1h, condition_parser: spark, row_condition: "rand() < 0.5"}}  {MARK}
                - type: expect_column_values_to_not_be_null
                  kwargs:
                    column: views_1h
                    row_condition: {{type: pass_through, pass_through_filter: "reflect('a', 'b') IS NULL"}}
                - type: expect_column_values_to_not_be_null
                  kwargs: {{column: views_1h, row_condition: 'col("views_1h") > 0'}}
    """
    message = problems(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/case.yaml": case})
    prefix = "training_sets.t.validation.expectations"
    line = marked_line(case)
    assert_problem(message, "feature_defs/case.yaml", line, f"{prefix}[1].kwargs.row_condition", "rand()",
                   "differs on every run")
    assert_problem(message, "feature_defs/case.yaml", line + 4, f"{prefix}[2].kwargs.row_condition.pass_through_filter",
                   "reflect", "into the JVM")
    assert len(message.splitlines()) == 2, message


# -- one error per mistake ---------------------------------------------------------------------


def test_a_broken_feature_set_is_reported_once(tmp_path: Path) -> None:
    broken = BASE.replace("aggregation: avg", "aggregation: averge")
    training = """\
        training_sets:
          oracle_ts:
            impressions: impressions
            features: [snap.*]
          other_ts:
            impressions: impressions
            features: [snap.dur_avg_1h, snap.views_1h]
    """
    message = problems(tmp_path, {"feature_defs/base.yaml": broken, "feature_defs/t.yaml": training})
    line = next(i for i, text in enumerate(broken.splitlines(), start=1) if "averge" in text)
    assert message.splitlines() == [
        f"feature_defs/base.yaml:{line} feature_sets.snap.features[1] (dur_avg).aggregation: averge is not an"
        " aggregation (valid: count, sum, min, max, avg, last_n, approx_count_distinct, approx_quantile)"
    ]


def test_a_missing_column_names_the_feature(tmp_path: Path) -> None:
    case = f"""\
        feature_sets:
          fs:
            source: events
            key: user_id
            block_sizes: [5m]
            features:
              - {{name: f0, aggregation: count, windows: [1h]}}
              - {{name: f1, aggregation: count, windows: [1h]}}
              - {{name: f2, aggregation: count, windows: [1h]}}
              - {{name: f3, aggregation: count, windows: [1h]}}
              - name: dur_avg  {MARK}
                aggregation: avg
                windows: [1h]
        training_sets:
          t: {{impressions: impressions, features: [fs.*]}}
    """
    message = problems(tmp_path, {"feature_defs/base.yaml": BASE, "feature_defs/case.yaml": case})
    assert message.splitlines() == [
        f"feature_defs/case.yaml:{marked_line(case)} feature_sets.fs.features[4] (dur_avg).column: missing:"
        " avg needs the column it aggregates"
    ]


@pytest.mark.parametrize("section", ["sources", "feature_sets"])
def test_a_section_that_is_not_a_mapping_is_reported_once(tmp_path: Path, section: str) -> None:
    training = "training_sets:\n  t: {impressions: impressions, features: [snap.*]}\n"
    rest = BASE if section == "feature_sets" else BASE.split("feature_sets:")[1].join(["feature_sets:", ""])
    message = problems(tmp_path, {"feature_defs/a.yaml": f"{section}: [oops]\n", "feature_defs/b.yaml": rest,
                                  "feature_defs/c.yaml": training})
    assert message.splitlines() == [
        f"feature_defs/a.yaml:1 {section}: [oops] is not valid: {section} is a mapping of name -> definition"
    ]


# -- the models on their own -------------------------------------------------------------------


def test_models_are_frozen_and_check_themselves() -> None:
    feature = Feature(name="views", aggregation="count", windows=("1h",))
    assert feature.windows == (Duration(3600),)
    with pytest.raises(ValidationError):
        feature.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="7m is not a multiple of the finest block 5m"):
        FeatureSet(name="fs", source="events", key="user_id", block_sizes=("5m",),
                   features=(Feature(name="views", aggregation="count", windows=("7m",)),))
    with pytest.raises(ValidationError, match="is not a known field"):
        Label(name="clicked", source="events", within="1h", windws="1h")
    training = TrainingSet(name="t", impressions="impressions",
                           features=(FeatureRef(feature_set="fs", feature="views", window="1h"),))
    assert training.feature_columns == ("views_1h",)
    assert training.model_dump()["features"][0]["window"] == "1h"


# -- fuzz --------------------------------------------------------------------------------------

FIELDS = sorted(
    {"sources", "feature_sets", "training_sets", "path", "format", "timestamp", "dedupe_key", "sql", "source", "key",
     "block_sizes", "lateness", "features", "name", "aggregation", "column", "filter", "windows", "default", "n",
     "quantiles", "impressions", "keys", "labels", "within", "validation", "min_rows", "max_null_fraction",
     "expectations", "type", "kwargs", "events", "snap", "t", "views", "depends_on"}
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**20), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["5m", "1h", "7m", "0m", "1d", "count", "last_n", "sum", "approx_quantile", "events", "snap.*",
                     "snap.views_1h", "snap.views", "v.sql", "x > 1", "SELECT 1", "${data_root}/x", "parquet", "Bad"]),
)
keys = st.one_of(
    st.sampled_from(FIELDS), st.text(string.ascii_lowercase + "_", min_size=1, max_size=8), st.integers(0, 3)
)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(documents, st.dictionaries(st.sampled_from(["sources", "feature_sets", "training_sets"]),
                                            st.dictionaries(keys, documents, max_size=3), max_size=3)))
def test_loader_never_raises_anything_but_definition_error(document: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fuzz = yaml.safe_dump(document)
        write(root, {"feature_defs/fuzz.yaml": fuzz, "feature_defs/base.yaml": BASE, "sql/v.sql": "SELECT 1"})
        try:
            load_definitions(root / "feature_defs")
        except DefinitionError as error:
            assert error.problems and all(":" in line for line in error.problems)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=string.printable + "\u00e9\u2028", max_size=200))
def test_loader_never_raises_on_arbitrary_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "feature_defs").mkdir()
        (root / "feature_defs" / "fuzz.yaml").write_text(text)
        try:
            load_definitions(root / "feature_defs")
        except DefinitionError:
            pass
