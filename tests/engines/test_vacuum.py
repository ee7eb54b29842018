"""`tilewise vacuum` on real tables: Delta written by Sail, and by classic Spark committed with delta-rs.

What a vacuum must never do is change what the latest version reads, or delete a file a version
within the retention still needs; what it must do is take the replaced files away.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame

from spark_jobs.errors import InputDataError
from spark_jobs.storage.tables import Warehouse
from spark_jobs.storage.vacuum import vacuum_table

TABLE = "blocks/t"
LINEAGE = {"feature": "v"}


def _write(wh: Warehouse, rows: list[tuple[str, int, int]], predicate: str) -> None:
    df = wh.spark.createDataFrame(rows, "d string, k int, v int")
    wh.replace_range(TABLE, df, predicate, ["d"], lineage=LINEAGE)


def _three_versions(wh: Warehouse) -> None:
    """v0 writes days a and b; v1 and v2 each replace day a."""
    _write(wh, [(d, k, 0) for d in ("a", "b") for k in range(3)], "d IS NOT NULL")
    _write(wh, [("a", k, 1) for k in range(3)], "d = 'a'")
    _write(wh, [("a", k, 2) for k in range(3)], "d = 'a'")


def _sorted(df: DataFrame) -> DataFrame:
    return df.select("d", "k", "v").orderBy("d", "k")


def _files(wh: Warehouse) -> dict[str, int]:
    root = wh.path(TABLE)
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _data_files(wh: Warehouse) -> set[str]:
    return {f for f in _files(wh) if f.endswith(".parquet")}


def _latest_data_files(wh: Warehouse) -> set[str]:
    """The parquet files the latest version reads, relative to the table folder."""
    from deltalake import DeltaTable

    root = wh.path(TABLE)
    return {str(Path(uri).relative_to(root)) for uri in DeltaTable(str(root)).file_uris()}


def _vacuum(wh: Warehouse, hours: float, dry_run: bool = False):  # type: ignore[no-untyped-def]
    return vacuum_table(wh.root, TABLE, retain_hours=hours, dry_run=dry_run, lock_timeout_s=5)


def test_vacuum_deletes_the_replaced_files_and_the_latest_version_reads_the_same(warehouse: Warehouse) -> None:
    _three_versions(warehouse)
    expected = warehouse.spark.createDataFrame([("a", k, 2) for k in range(3)] + [("b", k, 0) for k in range(3)], "d string, k int, v int")
    before = _files(warehouse)
    assert _data_files(warehouse) > _latest_data_files(warehouse), "the replaced versions left files behind"

    dry = _vacuum(warehouse, 0, dry_run=True)
    assert _files(warehouse) == before, "a dry run deletes nothing"
    freed = _vacuum(warehouse, 0)
    assert (freed.files, freed.bytes) == (dry.files, dry.bytes), "the dry run said what the vacuum deleted"

    assert _data_files(warehouse) == _latest_data_files(warehouse), "only the latest version's files are left"
    gone = set(before) - set(_files(warehouse))
    assert freed.files == len(gone) and freed.bytes == sum(before[f] for f in gone)
    assert (warehouse.path(TABLE) / "_tilewise_lineage.json").exists(), "the lineage stays"
    assert_df_equality(_sorted(warehouse.read(TABLE)), expected, ignore_nullable=True)

    version = warehouse.version(TABLE)
    assert _vacuum(warehouse, 0).files == 0, "a second vacuum finds nothing"
    assert warehouse.version(TABLE) == version, "and commits nothing"

    _write(warehouse, [("a", 9, 9)], "d = 'a'")  # the table takes writes as before
    after = warehouse.spark.createDataFrame([("a", 9, 9)] + [("b", k, 0) for k in range(3)], "d string, k int, v int")
    assert_df_equality(_sorted(warehouse.read(TABLE)), after, ignore_nullable=True)


def test_versions_replaced_within_the_retention_stay_readable(warehouse: Warehouse) -> None:
    _three_versions(warehouse)
    before = _files(warehouse)
    assert _vacuum(warehouse, 1).files == 0
    assert _files(warehouse) == before
    v0 = warehouse.spark.createDataFrame([(d, k, 0) for d in ("a", "b") for k in range(3)], "d string, k int, v int")
    assert_df_equality(_sorted(warehouse.read(TABLE, version=0)), v0, ignore_nullable=True)


def test_a_missing_table_is_none(warehouse: Warehouse) -> None:
    assert _vacuum(warehouse, 0) is None


def _age(path: Path, hours: float) -> None:
    """Set the modification time of `path` (and everything under it) `hours` into the past."""
    t = time.time() - hours * 3600
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (t, t))


def test_a_killed_writes_files_go_once_older_than_the_retention(warehouse: Warehouse) -> None:
    """Files no version names (a write killed before its commit) go when untouched for the retention."""
    _three_versions(warehouse)
    _vacuum(warehouse, 0)
    root = warehouse.path(TABLE)
    some_file = next(iter(_latest_data_files(warehouse)))
    # a data file written, the commit never made
    old, new = root / "d=a" / "part-killed-old.parquet", root / "d=a" / "part-killed-new.parquet"
    for f in (old, new):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes((root / some_file).read_bytes())
    _age(old, 3)
    freed = _vacuum(warehouse, 2)
    assert not old.exists() and new.exists(), "the old orphan goes, the one that may be a running write stays"
    assert freed.files == 1


def test_a_table_the_vacuum_cannot_read_is_exit_2_and_nothing_is_deleted(warehouse: Warehouse) -> None:
    _three_versions(warehouse)
    (warehouse.path(TABLE) / "_delta_log" / "00000000000000000003.json").write_text('{"torn": ')  # a commit another writer left half-written
    before = _files(warehouse)
    with pytest.raises(InputDataError, match="nothing was deleted") as err:
        _vacuum(warehouse, 0)
    assert "\n" not in str(err.value) and str(warehouse.path(TABLE)) in str(err.value)
    assert _files(warehouse) == before
