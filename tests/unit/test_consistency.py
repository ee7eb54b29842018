"""Forward-logged features without an engine: the `logged:` block and its errors, lineage, the
totals and stale split of the consistency table, its suite and its report."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_jobs.defs.lineage import training_lineage
from spark_jobs.defs.loader import load_definitions
from spark_jobs.errors import DefinitionError
from spark_jobs.quality.consistency_report import write_report
from spark_jobs.quality.suites import consistency_suite
from spark_jobs.storage.manifest import consistency_line
from spark_jobs.storage.sources import footer_columns
from spark_jobs.transforms.consistency import SCHEMA, stale_split, totals

DEFS = """\
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts}
  impressions: {path: "${data_root}/impressions", format: parquet, timestamp: ts}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [5m, 1h]
    features:
      - {name: n, aggregation: count, windows: [1h]}
      - {name: total, aggregation: sum, column: value, windows: [1h]}
training_sets:
  ts:
    impressions: impressions
    features: [acts.*]
"""
LOGGED = """\
    logged:
      column: features
      values:
        user_n: n_1h
        user_total: total_1h
      tolerance: 1.0e-6
"""


def _load(tmp_path: Path, extra: str = "") -> object:
    (tmp_path / "defs").mkdir(exist_ok=True)
    (tmp_path / "defs" / "d.yaml").write_text(DEFS + extra)
    return load_definitions(tmp_path / "defs", data_root=str(tmp_path / "data"))


def _errors(tmp_path: Path, extra: str) -> list[str]:
    with pytest.raises(DefinitionError) as exc:
        _load(tmp_path, extra)
    return str(exc.value).splitlines()


def test_logged_block_parses(tmp_path: Path) -> None:
    ts = _load(tmp_path, LOGGED + "    validation:\n      min_match_rate: {user_n: 0.99}\n").training_sets["ts"]  # type: ignore[attr-defined]
    assert ts.logged.values == {"user_n": "n_1h", "user_total": "total_1h"}
    assert ts.logged.tolerance == 1e-6 and ts.logged.column == "features"
    assert ts.validation.min_match_rate == {"user_n": 0.99}
    assert ts.logged_column("user_n") == "logged_user_n"
    assert ts.where("logged.values.user_n").endswith("d.yaml:19 training_sets.ts.logged.values.user_n")


def test_default_tolerance_and_top_level_columns(tmp_path: Path) -> None:
    ts = _load(tmp_path, "    logged:\n      values: {n_1h: n_1h}\n").training_sets["ts"]  # type: ignore[attr-defined]
    assert ts.logged.tolerance == 1e-9 and ts.logged.column is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (LOGGED.replace("total_1h", "total_6h"), "d.yaml:20 training_sets.ts.logged.values.user_total: total_6h is not a feature column of this training set (columns: n_1h, total_1h)"),
        (LOGGED + "    validation:\n      min_match_rate: {user_x: 0.9}\n",
         "d.yaml:23 training_sets.ts.validation.min_match_rate.user_x: user_x is not a logged value of this training set (logged: user_n, user_total)"),
        (LOGGED + "    validation:\n      min_match_rate: {user_n: 1.5}\n", "d.yaml:23 training_sets.ts.validation.min_match_rate.user_n: 1.5 is not valid"),
        (LOGGED.replace("1.0e-6", "-1.0"), "d.yaml:21 training_sets.ts.logged.tolerance: -1.0 is not valid"),
        (LOGGED.replace("user_n: n_1h", "User-N: n_1h"), 'd.yaml:19 training_sets.ts.logged.values["User-N"]: User-N is not a valid name'),
        ("    logged:\n      values: {}\n", "d.yaml:17 training_sets.ts.logged.values: {} is not valid"),
    ],
)
def test_logged_errors_point_at_file_and_line(tmp_path: Path, extra: str, expected: str) -> None:
    errors = _errors(tmp_path, extra)
    assert any(expected in line for line in errors), errors


def test_a_broken_feature_set_is_one_error_not_one_per_logged_value(tmp_path: Path) -> None:
    (tmp_path / "defs").mkdir()
    more = "  more:\n    source: events\n    key: user_id\n    block_sizes: [5m, 1h]\n    features:\n      - {name: m, aggregation: count, windows: [1h]}\n"
    broken = DEFS.replace("aggregation: count", "aggregation: cnt").replace("training_sets:\n", more + "training_sets:\n")
    broken = broken.replace("features: [acts.*]", "features: [acts.*, more.*]")
    (tmp_path / "defs" / "d.yaml").write_text(broken + LOGGED)
    with pytest.raises(DefinitionError) as exc:
        load_definitions(tmp_path / "defs", data_root=str(tmp_path / "data"))
    errors = str(exc.value).splitlines()
    assert len(errors) == 1 and "feature_sets.acts.features[0] (n).aggregation" in errors[0], errors


def test_logged_values_missing_from_the_impression_files(tmp_path: Path) -> None:
    defs = _load(tmp_path, LOGGED)
    ts = defs.training_sets["ts"]  # type: ignore[attr-defined]
    folder = tmp_path / "data" / "impressions"
    folder.mkdir(parents=True)
    features = pa.array([{"user_n": 1, "other": 2.0}], type=pa.struct([("user_n", pa.int64()), ("other", pa.float64())]))
    pq.write_table(pa.table({"impression_id": ["i"], "features": features}), folder / "a.parquet")
    columns = footer_columns(defs.sources["impressions"])  # type: ignore[attr-defined]
    assert columns == {"impression_id": None, "features": frozenset({"user_n", "other"})}
    assert ts.logged_problems(columns) == [
        f"{ts.file}:20 training_sets.ts.logged.values.user_total: user_total is not a field of the impressions' "
        "column features (other, user_n)"
    ]
    assert ts.logged_problems({"impression_id": None}) == [
        f"{ts.file}:17 training_sets.ts.logged.column: features is not a column of the impressions (impression_id)"
    ]
    assert ts.logged_problems({"features": None}) == []  # a map: its keys are data
    top = _load(tmp_path, "    logged:\n      values: {n_1h: n_1h}\n").training_sets["ts"]  # type: ignore[attr-defined]
    assert top.logged_problems({"n_1h": None}) == [] and len(top.logged_problems({"x": None})) == 1


def test_lineage_adds_logged_only_when_present(tmp_path: Path) -> None:
    plain = training_lineage(_load(tmp_path), "ts")  # type: ignore[arg-type]
    assert "logged" not in plain
    logged = training_lineage(_load(tmp_path, LOGGED), "ts")  # type: ignore[arg-type]
    assert logged["logged"] == {"column": "features", "values": {"user_n": "n_1h", "user_total": "total_1h"}}
    assert {k: v for k, v in logged.items() if k != "logged"} == plain


def _row(day: int, name: str, compared: int, matched: int, stale: int | None, lag: int | None, **kw: object) -> dict:
    base = {f.name: None for f in SCHEMA.fields}
    return {**base, "impression_date": date(2026, 1, day), "logged": name, "feature": f"{name}_col", "rows": compared + 2,
            "compared": compared, "matched": matched, "match_rate": matched / compared if compared else None,
            "logged_null": 1, "backfilled_null": 1, "both_null": 0, "stale_matched": stale, "stale_lag_blocks": lag, **kw}


def test_totals_and_summary_line() -> None:
    rows = [_row(1, "a", 100, 100, 0, None), _row(2, "a", 100, 80, 15, 4), _row(3, "a", 50, 45, 5, 1),
            _row(1, "s", 10, 9, None, None), _row(2, "s", 0, 0, None, None)]
    t = totals(rows)
    assert t["a"] == {"feature": "a_col", "rows": 256, "compared": 250, "matched": 225, "logged_null": 3,
                      "backfilled_null": 3, "both_null": 0, "stale_matched": 20, "worst_date": "2026-01-02",
                      "worst_rate": 0.8, "dates": 3, "match_rate": 0.9, "differ": 25, "stale_lag_blocks": 4}
    assert t["s"]["stale_matched"] is None and t["s"]["match_rate"] == 0.9
    assert consistency_line("a", t["a"]) == (
        "a vs a_col: match 90.00%, 25 of 250 compared rows differ (3 logged null, 3 backfilled null); "
        "20 stale, most at 4 blocks, 5 logic; worst day 2026-01-02 80.00%"
    )
    assert "stale" not in consistency_line("s", t["s"])


def test_stale_split_takes_the_most_common_first_lag() -> None:
    d = date(2026, 1, 1)
    got = stale_split([
        {"impression_date": d, "logged": "a", "_tw_first": 2, "n": 3},
        {"impression_date": d, "logged": "a", "_tw_first": 5, "n": 3},
        {"impression_date": d, "logged": "a", "_tw_first": 1, "n": 1},
        {"impression_date": d, "logged": "b", "_tw_first": 6, "n": 2},
    ])
    assert got == {(d, "a"): (7, 2), (d, "b"): (2, 6)}  # a tie goes to the smaller lag


def test_suite_checks_every_rule() -> None:
    suite = consistency_suite()
    between = {s["kwargs"]["column"]: s["kwargs"] for s in suite if s["type"] == "expect_column_values_to_be_between"}
    assert set(between) == {"rows", "compared", "matched", "logged_null", "backfilled_null", "both_null", "stale_matched",
                            "match_rate"}
    assert between["match_rate"] == {"column": "match_rate", "min_value": 0, "max_value": 1}
    conditions = [s["kwargs"].get("row_condition") for s in suite]
    assert "NOT (rows <=> compared + logged_null + backfilled_null + both_null)" in conditions
    assert {"type": "expect_column_pair_values_a_to_be_greater_than_b",
            "kwargs": {"column_A": "compared", "column_B": "matched", "or_equal": True}} in suite


def test_report_draws_and_lists_every_row(tmp_path: Path) -> None:
    rows = [_row(1, "a", 100, 100, 0, None, mean_abs_diff=0.0, max_abs_diff=0.0),
            _row(2, "a", 100, 80, 15, 4, mean_abs_diff=1.5, max_abs_diff=9.0), _row(1, "s", 10, 9, None, None)]
    png, page = write_report(rows, {"a": [1.0, -2.0, 9.0]}, tmp_path / "r", "consistency/x")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = page.read_text()
    assert "consistency.png" in text and text.count("<tr>") == 4 and "2026-01-02" in text
    assert "stale_lag_blocks" in textwrap.dedent(text)
