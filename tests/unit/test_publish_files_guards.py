"""`deltars.publish_files` guards, on tables and staged files written with pyarrow (no engine):
what it refuses before touching anything, what a failure after the commit leaves, and the file
statistics readers skip files by. The engine-written cases are in tests/engines/test_publish_files.py."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, QueryBuilder, write_deltalake

from spark_jobs.storage import deltars
from spark_jobs.storage.tables import WholePartitions

PB = ["block_size", "block_date"]
SCHEMA = pa.schema([("k", pa.string()), ("block_start", pa.timestamp("us", tz="UTC")), ("n", pa.int64()),
                    ("block_size", pa.int64()), ("block_date", pa.date32())])


def _rows(day: int, first: int, n: int = 3) -> pa.Table:
    starts = [datetime(2026, 1, day, h, tzinfo=timezone.utc) for h in range(n)]
    return pa.table({"k": ["a"] * n, "block_start": starts, "n": [first + i for i in range(n)],
                     "block_size": [300] * n, "block_date": [date(2026, 1, day)] * n}, schema=SCHEMA)


def _table(tmp_path: Path, config: dict[str, str] | None = None) -> Path:
    """Days 1-3, three rows each: n = 10..12, 20..22, 30..32."""
    path = tmp_path / "blocks" / "t"
    for day in (1, 2, 3):
        write_deltalake(str(path), _rows(day, day * 10), partition_by=PB, mode="append", configuration=config)
    return path


def _stage(tmp_path: Path, day: int, first: int) -> Path:
    folder = tmp_path / "staged"
    file = folder / f"block_size=300/block_date=2026-01-{day:02d}/part-00000.c000.snappy.parquet"
    file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_rows(day, first).drop(PB), file)
    return folder


def _day(day: int) -> WholePartitions:
    return WholePartitions("block_date", date(2026, 1, day), date(2026, 1, day), (("block_size", 300),))


def _publish(path: Path, folder: Path, day: int, **kw: object) -> None:
    schema = deltars.spark_schema(DeltaTable(str(path)))
    deltars.publish_files(path, [folder], schema, PB, _day(day).holds, run_id="run-1", **kw)  # type: ignore[arg-type]


def _ns(path: Path) -> list[int]:
    return sorted(DeltaTable(str(path)).to_pyarrow_table().column("n").to_pylist())


def _data_files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*.parquet") if "_delta_log" not in p.parts}


def test_a_failure_after_the_commit_landed_keeps_the_files_it_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # delta-rs writes a checkpoint after its commit (here the fourth, version 3): make that step fail.
    path = _table(tmp_path, {"delta.checkpointInterval": "4"})
    (path / "_delta_log" / "_last_checkpoint").mkdir()
    with caplog.at_level(logging.WARNING, logger="spark_jobs.storage.deltars"):
        _publish(path, _stage(tmp_path, 2, 100), 2)
    assert DeltaTable(str(path)).version() == 3
    assert _ns(path) == [10, 11, 12, 30, 31, 32, 100, 101, 102]  # every file it names is there
    assert "version 3 was committed and stands" in caplog.text


def test_a_ctrl_c_after_the_commit_is_raised_and_the_committed_files_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _table(tmp_path)
    real = DeltaTable.create_write_transaction

    def commit_then_interrupt(self: DeltaTable, *a: object, **k: object) -> None:
        real(self, *a, **k)
        raise KeyboardInterrupt  # what Python raises once the call returns when SIGINT came during it

    monkeypatch.setattr(DeltaTable, "create_write_transaction", commit_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _publish(path, _stage(tmp_path, 2, 100), 2)
    monkeypatch.undo()
    assert DeltaTable(str(path)).version() == 3
    assert _ns(path) == [10, 11, 12, 30, 31, 32, 100, 101, 102]


def test_a_commit_that_never_landed_leaves_no_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _table(tmp_path)
    before = _data_files(path)

    def refuse(self: DeltaTable, *a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", refuse)
    with pytest.raises(OSError, match="disk full"):
        _publish(path, _stage(tmp_path, 2, 100), 2)
    monkeypatch.undo()
    assert _data_files(path) == before and DeltaTable(str(path)).version() == 2


def test_nulls_inside_arrays_and_structs_the_table_declares_not_null_are_refused(tmp_path: Path) -> None:
    schema = pa.schema([("h", pa.list_(pa.field("item", pa.int64(), nullable=False))),
                        ("s", pa.struct([pa.field("ts", pa.int64(), nullable=False)])),
                        ("block_size", pa.int64()), ("block_date", pa.date32())])
    path = tmp_path / "t"
    write_deltalake(str(path), pa.table({"h": [[1, 2]], "s": [{"ts": 1}], "block_size": [300],
                                         "block_date": [date(2026, 1, 2)]}, schema=schema), partition_by=PB)
    folder = tmp_path / "staged"
    file = folder / "block_size=300/block_date=2026-01-02/part-0.c000.snappy.parquet"
    file.parent.mkdir(parents=True)
    loose_h, strict_h = pa.list_(pa.int64()), schema.field("h").type
    for h, s, where in (([[1, None]], [{"ts": 1}], "the elements of h"), ([[1]], [{"ts": None}], "s.ts")):
        pq.write_table(pa.table({"h": pa.array(h, loose_h if where.endswith(" h") else strict_h),
                                 "s": pa.array(s, pa.struct([("ts", pa.int64())]))}), file)
        with pytest.raises(deltars.CannotPublishFiles, match=f"NULLs in {where}, which the table declares NOT NULL"):
            _publish(path, folder, 2)
    assert DeltaTable(str(path)).version() == 0
    # The same values from a writer that declares the fields required are published.
    pq.write_table(pa.table({"h": [[5]], "s": [{"ts": 5}]},
                            schema=pa.schema([schema.field("h"), schema.field("s")])), file)
    _publish(path, folder, 2)
    assert DeltaTable(str(path)).to_pyarrow_table().column("h").to_pylist() == [[5]]


def test_append_only_tables_and_column_invariants_are_refused(tmp_path: Path) -> None:
    path = _table(tmp_path / "a", {"delta.appendOnly": "true"})
    with pytest.raises(deltars.CannotPublishFiles, match="append-only"):
        _publish(path, _stage(tmp_path / "a", 2, 100), 2)
    path = tmp_path / "b" / "t"
    field = pa.field("n", pa.int64(), metadata={"delta.invariants": json.dumps({"expression": {"expression": "n > 0"}})})
    write_deltalake(str(path), pa.table({"n": [1], "block_size": [300], "block_date": [date(2026, 1, 2)]},
                                        schema=pa.schema([field, ("block_size", pa.int64()), ("block_date", pa.date32())])),
                    partition_by=PB)
    if "delta.invariants" not in DeltaTable(str(path)).schema().to_json():
        pytest.skip("this deltalake does not keep column invariants in the schema")
    folder = tmp_path / "b" / "staged"
    file = folder / "block_size=300/block_date=2026-01-02/part-0.c000.snappy.parquet"
    file.parent.mkdir(parents=True)
    pq.write_table(pa.table({"n": [-1]}), file)
    with pytest.raises(deltars.CannotPublishFiles, match="invariants"):
        _publish(path, folder, 2)


def test_staged_files_holding_another_number_of_rows_than_validated_publish_nothing(tmp_path: Path) -> None:
    path = _table(tmp_path)
    with pytest.raises(RuntimeError, match="hold 0 rows, not the 3 validated; nothing was published"):
        _publish(path, tmp_path / "no-such-folder", 2, rows=3)
    with pytest.raises(RuntimeError, match="hold 3 rows, not the 4 validated"):
        _publish(path, _stage(tmp_path, 2, 100), 2, rows=4)
    assert DeltaTable(str(path)).version() == 2 and _ns(path) == [10, 11, 12, 20, 21, 22, 30, 31, 32]
    _publish(path, _stage(tmp_path, 2, 100), 2, rows=3)
    assert _ns(path) == [10, 11, 12, 30, 31, 32, 100, 101, 102]


def test_a_partition_value_that_needs_escaping_is_removed_not_duplicated(tmp_path: Path) -> None:
    path = tmp_path / "t"
    write_deltalake(str(path), pa.table({"v": [1], "p": ["a:b c%"]}), partition_by=["p"])
    folder = tmp_path / "staged"
    file = folder / "p=a%3Ab c%25" / "part-0.c000.snappy.parquet"  # Spark's folder name for that value
    file.parent.mkdir(parents=True)
    pq.write_table(pa.table({"v": [2]}), file)
    deltars.publish_files(path, [folder], deltars.spark_schema(DeltaTable(str(path))), ["p"],
                          lambda values: values.get("p") == "a:b c%", run_id=None)
    assert DeltaTable(str(path)).to_pyarrow_table().to_pylist() == [{"v": 2, "p": "a:b c%"}]


def test_a_row_group_without_min_max_leaves_the_column_s_bounds_unstated(tmp_path: Path) -> None:
    file = tmp_path / "f.parquet"
    big = "z" * 5000  # over the writers' 4 KB statistics limit: that row group states no min/max
    with pq.ParquetWriter(file, pa.schema([("k", pa.string()), ("n", pa.int64())])) as writer:
        writer.write_table(pa.table({"k": [big], "n": [1]}))
        writer.write_table(pa.table({"k": ["b", "c"], "n": [2, 3]}))
    stats = json.loads(deltars.file_stats(file))
    assert stats["numRecords"] == 3 and stats["nullCount"] == {"k": 0, "n": 0}
    assert "k" not in stats["maxValues"] and stats["minValues"]["n"] == 1 and stats["maxValues"]["n"] == 3
    # A reader that skips files by these statistics still finds the row.
    path = tmp_path / "t"
    write_deltalake(str(path), pa.table({"k": ["a"], "n": [0], "block_size": [300], "block_date": [date(2026, 1, 2)]}),
                    partition_by=PB)
    folder = tmp_path / "staged"
    (folder / "block_size=300/block_date=2026-01-02").mkdir(parents=True)
    (folder / "block_size=300/block_date=2026-01-02/part-0.c000.snappy.parquet").write_bytes(file.read_bytes())
    _publish(path, folder, 2)
    found = QueryBuilder().register("t", DeltaTable(str(path))).execute("SELECT k FROM t WHERE k > 'y'").read_all()
    assert pa.table(found).num_rows == 1
