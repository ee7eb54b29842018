"""Great Expectations wrapper on Sail: built-in suites pass and fail as they should, Data Docs.

One embedded Sail server per module. The classic-Spark counterpart is test_gx_classic.py,
which reuses this module's rows and failure cases.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from types import SimpleNamespace
from typing import Any, Callable

import pytest

os.environ["TZ"] = "UTC"
time.tzset()

from spark_jobs.errors import DefinitionError  # noqa: E402
from spark_jobs.quality.gx import ValidationReport, validate_dataframe  # noqa: E402
from spark_jobs.quality.suites import (  # noqa: E402
    block_suite,
    snapshot_suite,
    training_suite,
    user_suite,
)

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)
TRAINING_SCHEMA = (
    "impression_id string, ts timestamp, feature_watermark timestamp, user_id long, "
    "views_cutoff timestamp, views_1h long, clicked int"
)
NOT_NULL = "expect_column_values_to_not_be_null"
PAIR = "expect_column_pair_values_a_to_be_greater_than_b"
IN_SET = "expect_column_values_to_be_in_set"


def _suite() -> list[dict]:
    return training_suite(
        label_columns=["clicked"],
        count_columns=["views_1h"],
        cutoff_pairs=[("views_cutoff", "ts"), ("views_cutoff", "feature_watermark")],
    )


def _rows(n: int = 12) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        ts = T0 + dt.timedelta(minutes=7 * i)
        watermark = None if i % 3 == 0 else ts - dt.timedelta(minutes=10)
        cutoff = (watermark or ts) - dt.timedelta(minutes=5)
        rows.append(
            {
                "impression_id": f"imp-{i:03d}",
                "ts": ts,
                "feature_watermark": watermark,
                "user_id": i % 4,
                # No cutoff for a row (e.g. an unknown key) must not trip the leakage guard.
                "views_cutoff": None if i == 4 else cutoff,
                "views_1h": i % 5,
                "clicked": i % 2,
            }
        )
    return rows


@pytest.fixture
def spark(sail_engine):  # type: ignore[no-untyped-def]
    sail_engine.activate()
    return sail_engine.spark


def _df(spark, rows: list[dict[str, Any]]):
    cols = [c.split()[0] for c in TRAINING_SCHEMA.split(", ")]
    return spark.createDataFrame([tuple(r[c] for c in cols) for r in rows], TRAINING_SCHEMA)


def _key(type_: str, **kwargs: Any) -> tuple[str, tuple]:
    return type_, tuple(sorted((k, str(v)) for k, v in kwargs.items()))


def _failed(report: ValidationReport) -> set[tuple[str, tuple]]:
    return {_key(r.expectation, **r.kwargs) for r in report.failed}


def test_passing_dataframe_succeeds_and_renders_report(spark, tmp_path, monkeypatch):
    # GE must not scaffold a gx/ project in the working directory.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    validation = SimpleNamespace(
        min_rows=10,
        max_null_fraction={"feature_watermark": 0.5},
        expectations=(
            SimpleNamespace(
                type="expect_column_values_to_be_between",
                kwargs={"column": "user_id", "min_value": 0, "max_value": 3},
            ),
        ),
    )
    specs = _suite() + user_suite(validation)
    report_dir = tmp_path / "report"

    report = validate_dataframe(
        _df(spark, _rows()), specs, suite_name="clicks_v1", report_dir=report_dir
    )

    assert report.success, report.summary_lines()
    assert report.failed == () and report.summary_lines() == []
    # One result per spec, in the order given (GE itself groups them by column).
    assert [(r.expectation, r.kwargs) for r in report.results] == [
        (s["type"], s["kwargs"]) for s in specs
    ]
    assert report.results[0].observed == "0 unexpected of 12 rows"
    assert report.seconds > 0
    assert list(cwd.iterdir()) == []

    assert report.report_path == report_dir.resolve() / "index.html"
    assert "clicks_v1" in report.report_path.read_text()
    # The validation page holds the results as server-rendered HTML (no JS needed) ...
    assert report.page_path is not None
    assert report.page_path.is_relative_to(report_dir.resolve())
    page = report.page_path.read_text()
    for column in ("impression_id", "clicked", "views_1h", "views_cutoff", "user_id"):
        assert column in page
    assert "Succeeded" in page
    # ... and pass/fail icons that show without the Font Awesome CDN.
    assert 'id="tilewise-offline-icons"' in page


FAILURES: list[tuple[str, Callable[[list[dict]], None], tuple[str, tuple]]] = [
    (
        "null impression_id",
        lambda rows: rows[3].update(impression_id=None),
        _key(NOT_NULL, column="impression_id"),
    ),
    (
        "duplicate impression_id",
        lambda rows: rows[5].update(impression_id=rows[2]["impression_id"]),
        _key("expect_column_values_to_be_unique", column="impression_id"),
    ),
    (
        "label 2",
        lambda rows: rows[1].update(clicked=2),
        _key(IN_SET, column="clicked", value_set=[0, 1]),
    ),
    (
        "null label",
        lambda rows: rows[9].update(clicked=None),
        _key(NOT_NULL, column="clicked"),
    ),
    (
        "negative count",
        lambda rows: rows[7].update(views_1h=-1),
        _key("expect_column_values_to_be_between", column="views_1h", min_value=0),
    ),
    (
        # Row 3 has no watermark, so only the timestamp guard can catch it.
        "cutoff after ts",
        lambda rows: rows[3].update(views_cutoff=rows[3]["ts"] + dt.timedelta(minutes=5)),
        _key(
            PAIR,
            column_A="ts",
            column_B="views_cutoff",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
    ),
    (
        "cutoff after watermark",
        lambda rows: rows[2].update(
            views_cutoff=rows[2]["feature_watermark"] + dt.timedelta(minutes=1)
        ),
        _key(
            PAIR,
            column_A="feature_watermark",
            column_B="views_cutoff",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
    ),
]


@pytest.mark.parametrize(
    "mutate,expected", [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_each_builtin_check_fails_on_bad_rows(spark, tmp_path, mutate, expected):
    rows = _rows()
    mutate(rows)
    report = validate_dataframe(_df(spark, rows), _suite(), suite_name="bad", report_dir=tmp_path)

    assert not report.success
    assert _failed(report) == {expected}
    (line,) = report.summary_lines()
    assert line.startswith(f"FAILED {expected[0]}(")
    assert "1 unexpected of 12 rows" in line or "2 unexpected of 12 rows" in line
    assert report.report_path is not None and report.report_path.is_file()
    assert "Failed" in report.page_path.read_text()


def test_cutoff_equal_to_timestamp_passes(spark, tmp_path):
    rows = _rows()
    rows[3].update(views_cutoff=rows[3]["ts"])
    report = validate_dataframe(_df(spark, rows), _suite(), suite_name="edge", report_dir=tmp_path)
    assert report.success, report.summary_lines()


def test_block_and_snapshot_suites(spark, tmp_path):
    data = [
        (1, "a", 300, dt.datetime(2026, 3, 1, 0, 0), 4),
        (1, "a", 300, dt.datetime(2026, 3, 1, 0, 5), 0),
        (1, "a", 3600, dt.datetime(2026, 3, 1, 0, 0), 4),
        (2, "a", 300, dt.datetime(2026, 3, 1, 0, 0), 1),
    ]
    schema = "user_id long, country string, block_size long, block_start timestamp, views long"
    specs = block_suite(["user_id", "country"], ["views"])

    ok = validate_dataframe(
        spark.createDataFrame(data, schema), specs, suite_name="blk", report_dir=tmp_path / "ok"
    )
    assert ok.success, ok.summary_lines()

    dup = validate_dataframe(
        spark.createDataFrame(data + [data[0]], schema),
        specs,
        suite_name="blk",
        report_dir=tmp_path / "dup",
    )
    primary = ["user_id", "country", "block_size", "block_start"]
    assert _failed(dup) == {_key("expect_compound_columns_to_be_unique", column_list=primary)}

    snap = spark.createDataFrame([(1, 3), (2, 0), (2, 5)], "user_id long, views_1h long")
    report = validate_dataframe(
        snap, snapshot_suite(["user_id"]), suite_name="snap", report_dir=tmp_path / "s"
    )
    assert _failed(report) == {_key("expect_column_values_to_be_unique", column="user_id")}
    assert "e.g. 2, 2" in report.summary_lines()[0]


def test_user_validation_block_fails_with_readable_lines(spark, tmp_path):
    rows = _rows()  # feature_watermark is null on 4 of 12 rows
    validation = SimpleNamespace(
        min_rows=1000, max_null_fraction={"feature_watermark": 0.2}, expectations=()
    )
    report = validate_dataframe(
        _df(spark, rows), user_suite(validation), suite_name="user", report_dir=tmp_path
    )
    assert not report.success
    assert report.summary_lines() == [
        "FAILED expect_table_row_count_to_be_between(min_value=1000): observed 12",
        "FAILED expect_column_values_to_not_be_null(column=feature_watermark, mostly=0.8): "
        "4 unexpected of 12 rows (33.3%), e.g. None, None, None, None",
    ]


def test_unknown_expectation_type_is_a_definition_error(spark, tmp_path):
    typo = {"type": "expect_column_values_to_be_uniq", "kwargs": {"column": "impression_id"}}
    report_dir = tmp_path / "report"
    with pytest.raises(
        DefinitionError,
        match=r"#8 \(expect_column_values_to_be_uniq\).*did you mean "
        r"expect_column_values_to_be_unique",
    ):
        validate_dataframe(
            _df(spark, _rows()), _suite() + [typo], suite_name="x", report_dir=report_dir
        )
    assert not report_dir.exists()  # failed before anything was written


@pytest.mark.parametrize(
    "spec,message",
    [
        (
            {"type": NOT_NULL, "kwargs": {"column": "clicked", "bogus": 1}},
            "bogus: extra fields not permitted",
        ),
        ({"type": NOT_NULL, "kwargs": {}}, "column: field required"),
        (
            {"type": NOT_NULL, "kwargs": {"column": "clicked", "mostly": 2}},
            "mostly: ensure this value is less than or equal to 1",
        ),
        ({"type": NOT_NULL, "kwargs": {"column": "clickd"}}, "no column clickd"),
        (
            {"type": NOT_NULL, "kwargs": {"column": "clicked", "id": "x"}},
            r"\['id'\] are not allowed",
        ),
        ({"type": NOT_NULL, "args": {}}, r"unknown field\(s\) \['args'\]"),
        ({"kwargs": {"column": "clicked"}}, "'type' must be an expectation name"),
    ],
)
def test_bad_expectation_specs_are_definition_errors(spark, tmp_path, spec, message):
    with pytest.raises(DefinitionError, match=message):
        validate_dataframe(_df(spark, _rows()), [spec], suite_name="x", report_dir=tmp_path)


def test_suite_name_cannot_leave_the_report_dir(spark, tmp_path):
    with pytest.raises(DefinitionError, match="suite name"):
        validate_dataframe(_df(spark, _rows()), _suite(), suite_name="../x", report_dir=tmp_path)


def test_expectation_that_errors_on_the_engine_is_a_failed_result(spark, tmp_path):
    # A numeric bound on a string column: GE raises while computing, and catches it.
    spec = {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "impression_id", "min_value": 0},
    }
    report = validate_dataframe(_df(spark, _rows()), [spec], suite_name="err", report_dir=tmp_path)
    assert not report.success
    assert report.results[0].observed.startswith("error: ")


def test_user_suite_conversion():
    validation = SimpleNamespace(
        min_rows=None,
        max_null_fraction={"a": 0.7, "b": 0},
        expectations=(
            SimpleNamespace(type=IN_SET, kwargs={"column": "c", "value_set": ("x", "y")}),
        ),
    )
    assert user_suite(validation) == [
        {"type": NOT_NULL, "kwargs": {"column": "a", "mostly": 0.3}},
        {"type": NOT_NULL, "kwargs": {"column": "b", "mostly": 1.0}},
        {"type": IN_SET, "kwargs": {"column": "c", "value_set": ["x", "y"]}},
    ]
    assert user_suite(None) == []
    with pytest.raises(DefinitionError, match="max_null_fraction.a"):
        user_suite(SimpleNamespace(min_rows=None, max_null_fraction={"a": 1.5}, expectations=()))


def test_validation_time_on_100k_rows_file_backed(spark, tmp_path):
    from pyspark.sql import functions as F

    n = 100_000
    ts = F.timestamp_seconds(F.lit(1_772_000_000) + F.col("id") * 60)
    watermark = ts - F.expr("INTERVAL 10 MINUTES")
    (
        spark.range(n)
        .select(
            F.concat(F.lit("imp-"), F.col("id").cast("string")).alias("impression_id"),
            ts.alias("ts"),
            F.when(F.col("id") % 3 == 0, None).otherwise(watermark).alias("feature_watermark"),
            (F.col("id") % 1000).alias("user_id"),
            (ts - F.expr("INTERVAL 30 MINUTES")).alias("views_cutoff"),
            (F.col("id") % 17).alias("views_1h"),
            (F.col("id") % 2).cast("int").alias("clicked"),
        )
        .write.parquet(str(tmp_path / "data"))
    )
    # File-backed, as the jobs pass it: each of GE's queries re-reads parquet, not a lineage.
    df = spark.read.parquet(str(tmp_path / "data"))
    validation = SimpleNamespace(
        min_rows=n, max_null_fraction={"feature_watermark": 0.5}, expectations=()
    )
    specs = _suite() + user_suite(validation)
    report = validate_dataframe(df, specs, suite_name="big", report_dir=tmp_path / "r")
    assert report.success, report.summary_lines()
    assert report.results[0].observed == f"0 unexpected of {n} rows"
    print(f"\nvalidated {n} rows x {len(report.results)} expectations in {report.seconds:.2f}s")
    assert report.seconds < 120
