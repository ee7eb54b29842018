"""Publishing staged files as they are (`Warehouse.replace_partitions`, `deltars.publish_files`).

A nightly run stages its rows in the table's partition layout, validates them, then commits those
very files, removing the replaced partitions' old files in the same commit. Checked on both
engines: the table holds exactly the old rows outside the replaced partitions plus the staged rows
(also where a replaced partition got no staged rows), other partitions' files stay untouched, a
failed commit leaves neither a new file nor a new version, and files that do not fit the table
are refused before anything changes.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable

from spark_jobs.storage import deltars
from spark_jobs.storage.tables import Warehouse, WholePartitions, stage

TABLE = "blocks/t"
PARTS = ["size", "day"]
COLUMNS = ["k", "start", "n", "d", "h", "a", "size", "day"]


def _rows(wh: Warehouse, days: list[int], sizes: list[int], v: int):  # type: ignore[no-untyped-def]
    """20 rows per (size, day) of January 2026, with the column types of a block table."""
    day_list = ", ".join(str(d) for d in days)
    size_list = ", ".join(str(s) for s in sizes)
    return wh.spark.sql(
        f"""SELECT concat('k', CAST(id % 5 AS STRING)) AS k,
                   timestamp_seconds(1767225600 + (dd - 1) * 86400 + id * 600) AS start,
                   CAST(id * {v} AS BIGINT) AS n,
                   CAST(id AS DECIMAL(38, 9)) / 8 + {v} AS d,
                   array(id, {v}) AS h,
                   array(named_struct('ts', timestamp_seconds(1767225600 + id), 'v', CAST({v} AS STRING))) AS a,
                   CAST(sz AS BIGINT) AS size,
                   date_add(DATE'2026-01-01', dd - 1) AS day
            FROM range(20)
            CROSS JOIN (SELECT explode(array({day_list})) AS dd)
            CROSS JOIN (SELECT explode(array({size_list})) AS sz)"""
    ).select(*COLUMNS)


def _sorted(df):  # type: ignore[no-untyped-def]
    return df.select(*COLUMNS).orderBy("size", "day", "k", "start")


def _parquet(path: Path) -> set[Path]:
    """Every Parquet file in a folder (a table's also holds the files its versions removed)."""
    return {p for p in path.rglob("*.parquet") if "_delta_log" not in p.parts}


def _files(path: Path) -> set[Path]:
    """The data files of a table's latest version."""
    return {Path(u.removeprefix("file://")).resolve() for u in DeltaTable(str(path)).file_uris()}


def _days(first: int, last: int, size: int) -> WholePartitions:
    return WholePartitions("day", date(2026, 1, first), date(2026, 1, last), (("size", size),))


def test_whole_partitions_are_replaced_by_the_staged_files_themselves(warehouse: Warehouse, tmp_path: Path) -> None:
    # A new table cannot take files: replace_partitions creates it through the engine.
    old = stage(warehouse.spark, tmp_path / "s0", _rows(warehouse, [1, 2, 3, 4], [300, 3600], 1), PARTS)
    warehouse.replace_partitions(TABLE, old, [tmp_path / "s0"], [_days(1, 4, 300), _days(1, 4, 3600)], PARTS)
    path = warehouse.path(TABLE)
    before = _files(path)
    assert_df_equality(_sorted(warehouse.read(TABLE)), _sorted(old), ignore_nullable=True)

    # Size 300, days 2..4 replaced; the staged rows cover days 2 and 3 only, so day 4 ends up empty.
    folder = tmp_path / "s1"
    new = stage(warehouse.spark, folder, _rows(warehouse, [2, 3], [300], 2), PARTS)
    warehouse.run_id = "run-publish"
    result = warehouse.replace_partitions(TABLE, new, [folder], [_days(2, 4, 300)], PARTS)

    kept = old.filter("NOT (size = 300 AND day >= DATE'2026-01-02')")
    expected = _sorted(kept.unionByName(new))
    assert_df_equality(_sorted(warehouse.read(TABLE)), expected, ignore_nullable=True)
    assert result.version == warehouse.version(TABLE) == 1
    history = DeltaTable(str(path)).history(1)
    assert history[0].get("userMetadata") == "run-publish"
    lake = DeltaTable(str(path)).to_pyarrow_table()  # another reader sees the same rows
    assert lake.num_rows == expected.count() and sum(lake.column("n").to_pylist()) == sum(
        r.n for r in expected.select("n").collect())

    after = _files(path)
    untouched = {p for p in before if "size=300" not in str(p) or "day=2026-01-01" in str(p)}
    assert untouched <= after, "files of partitions not replaced stay as they are"
    assert not (before - untouched) & after, "the replaced partitions' old files are removed"
    staged = sorted(_parquet(folder))
    added = sorted(after - before)
    assert len(staged) == len(added) == 2
    if warehouse.commits_files:  # Sail and delta-rs: the staged files are the table's, not a copy
        assert all(any(os.path.samefile(a, s) for s in staged) for a in added)
        rows = expected.collect()  # `expected` reads the staged files
        shutil.rmtree(folder)  # what a run does after publishing
        assert _sorted(warehouse.read(TABLE)).collect() == rows


def test_a_staged_file_outside_the_replaced_partitions_is_written_by_the_engine_instead(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    old = _rows(warehouse, [1, 2, 3], [300], 1)
    warehouse.replace_range(TABLE, old, "day IS NOT NULL", PARTS)
    new = stage(warehouse.spark, tmp_path / "s", _rows(warehouse, [2, 3], [300], 2), PARTS)
    with pytest.raises(deltars.CannotPublishFiles, match="partition the write does not replace"):
        deltars.publish_files(warehouse.path(TABLE), [tmp_path / "s"], new.schema, PARTS,
                              lambda values: _days(2, 2, 300).holds(values), run_id=None)
    assert warehouse.version(TABLE) == 0

    # Like replace_range: only the rows of the replaced partitions are written.
    warehouse.replace_partitions(TABLE, new, [tmp_path / "s"], [_days(2, 2, 300)], PARTS)
    expected = old.filter("day != DATE'2026-01-02'").unionByName(new.filter("day = DATE'2026-01-02'"))
    assert_df_equality(_sorted(warehouse.read(TABLE)), _sorted(expected), ignore_nullable=True)


def test_nothing_to_add_or_remove_commits_no_version(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.replace_range(TABLE, _rows(warehouse, [1], [300], 1), "day IS NOT NULL", PARTS)
    empty = stage(warehouse.spark, tmp_path / "s", _rows(warehouse, [1], [300], 1).filter("n < 0"), PARTS)
    warehouse.replace_partitions(TABLE, empty, [tmp_path / "s"], [_days(5, 6, 300)], PARTS)  # a quiet night
    assert warehouse.version(TABLE) == 0
    warehouse.replace_partitions(TABLE, empty, [tmp_path / "s"], [_days(1, 1, 300)], PARTS)  # its events are gone
    assert warehouse.version(TABLE) == 1 and warehouse.read(TABLE).count() == 0


def test_files_that_do_not_fit_the_table_are_refused_before_anything_changes(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    warehouse.replace_range(TABLE, _rows(warehouse, [1], [300], 1), "day IS NOT NULL", PARTS)
    path = warehouse.path(TABLE)
    before = _parquet(path)
    other_type = stage(warehouse.spark, tmp_path / "s", _rows(warehouse, [1], [300], 2).withColumn("n", _double("n")), PARTS)
    with pytest.raises(deltars.CannotPublishFiles, match="types differ"):
        deltars.publish_files(path, [tmp_path / "s"], other_type.schema, PARTS, _days(1, 1, 300).holds, run_id=None)
    with pytest.raises(deltars.CannotPublishFiles, match="partitioned by"):
        deltars.publish_files(path, [tmp_path / "s"], other_type.schema, ["day"], _days(1, 1, 300).holds, run_id=None)
    assert warehouse.version(TABLE) == 0 and _parquet(path) == before


def test_a_failed_commit_leaves_no_file_and_a_retry_publishes_the_same_staged_files(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not warehouse.commits_files:
        pytest.skip("this engine writes through delta-spark, which commits its own files")
    warehouse.replace_range(TABLE, _rows(warehouse, [1, 2], [300], 1), "day IS NOT NULL", PARTS)
    path = warehouse.path(TABLE)
    before = _parquet(path)
    new = stage(warehouse.spark, tmp_path / "s", _rows(warehouse, [2], [300], 2), PARTS)
    staged = _parquet(tmp_path / "s")

    def full_disk(self, *a, **k):  # type: ignore[no-untyped-def]
        raise OSError("No space left on device")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", full_disk)
    with pytest.raises(OSError, match="No space left"):
        warehouse.replace_partitions(TABLE, new, [tmp_path / "s"], [_days(2, 2, 300)], PARTS)
    assert warehouse.version(TABLE) == 0 and _parquet(path) == before, "nothing published, no file left behind"
    assert _parquet(tmp_path / "s") == staged, "the staged files are still there"

    monkeypatch.undo()
    warehouse.replace_partitions(TABLE, new, [tmp_path / "s"], [_days(2, 2, 300)], PARTS)
    expected = _rows(warehouse, [1], [300], 1).unionByName(new)
    assert_df_equality(_sorted(warehouse.read(TABLE)), _sorted(expected), ignore_nullable=True)


def _double(column: str):  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    return F.col(column).cast("double")
