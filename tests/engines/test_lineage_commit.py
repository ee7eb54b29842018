"""A table's lineage and its commit cannot disagree, wherever the writing process dies.

The lineage file sits beside the data and cannot be written in the same commit, so a write that
changes it (a rebuild, or the first write) records the new lineage as pending before committing:
it is in force once a commit lands after it. These tests kill the write on either side of its
commit (by raising where the process would die) and check which definition the table accepts.
"""

from __future__ import annotations

import json

import pytest
from chispa import assert_df_equality

from spark_jobs.errors import InputDataError
from spark_jobs.storage.tables import LINEAGE_FILE, Warehouse
from spark_jobs.storage.vacuum import vacuum_table

TABLE = "blocks/t"
OLD = {"features": {"v": {"filter": "x > 0"}}}
NEW = {"features": {"v": {"filter": "x > 1"}}}


class Died(Exception):
    """Stands for the process dying at this point."""


def _rows(wh: Warehouse, v: int):  # type: ignore[no-untyped-def]
    return wh.spark.createDataFrame([("a", 1, v), ("b", 1, v)], "d string, k int, v int")


def _write(wh: Warehouse, v: int, lineage: dict, rebuild: bool = False) -> None:
    wh.replace_range(TABLE, _rows(wh, v), "d IS NOT NULL", ["d"], rebuild=rebuild, lineage=lineage)


def _accepts(wh: Warehouse, lineage: dict) -> bool:
    try:
        wh.check_lineage(TABLE, lineage)
        return True
    except InputDataError as exc:
        assert "--rebuild" in str(exc)
        return False


def _die(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise Died


def test_a_rebuild_that_dies_after_its_commit_has_the_new_lineage(warehouse: Warehouse, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _write(warehouse, 0, OLD)
    with monkeypatch.context() as m:
        m.setattr(Warehouse, "_record_lineage", _die)
        with pytest.raises(Died):
            _write(warehouse, 1, NEW, rebuild=True)
    assert_df_equality(warehouse.read(TABLE).select("d", "k", "v").orderBy("d"), _rows(warehouse, 1), ignore_nullable=True)
    assert _accepts(warehouse, NEW) and not _accepts(warehouse, OLD), "the rows are the new definition's"
    _write(warehouse, 2, NEW)  # the next nightly run goes on, and settles the file
    state = json.loads((warehouse.path(TABLE) / LINEAGE_FILE).read_text())
    assert state["lineage"] == NEW and "pending" not in state


def test_a_rebuild_that_dies_before_its_commit_keeps_the_old_lineage_also_after_a_vacuum(warehouse: Warehouse, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _write(warehouse, 0, OLD)
    _write(warehouse, 1, OLD)  # replaced files, so that a vacuum deletes and (on Delta) commits
    with monkeypatch.context() as m:
        m.setattr(Warehouse, "overwrite", _die)
        with pytest.raises(Died):
            _write(warehouse, 2, NEW, rebuild=True)
    assert_df_equality(warehouse.read(TABLE).select("d", "k", "v").orderBy("d"), _rows(warehouse, 1), ignore_nullable=True)
    assert _accepts(warehouse, OLD) and not _accepts(warehouse, NEW)
    version = warehouse.version(TABLE)
    freed = vacuum_table(warehouse.root, TABLE, retain_hours=0, dry_run=False, lock_timeout_s=5)
    assert freed is not None and freed.files > 0
    assert warehouse.version(TABLE) == version + 2, "the vacuum committed: not to be taken for the rebuild"
    assert _accepts(warehouse, OLD) and not _accepts(warehouse, NEW)


def test_a_first_write_that_dies_before_its_commit_leaves_no_lineage(warehouse: Warehouse, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        m.setattr(Warehouse, "check_schema", _die)  # the Delta commit's first step
        with pytest.raises(Died):
            _write(warehouse, 0, OLD)
    assert warehouse.version(TABLE) is None
    _write(warehouse, 0, NEW)  # a table that never existed takes any definition
    assert _accepts(warehouse, NEW) and not _accepts(warehouse, OLD)
