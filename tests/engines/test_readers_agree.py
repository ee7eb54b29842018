"""Other readers get what the engine wrote: each output table read with deltalake, polars and a
pyarrow dataset over the Delta table's file list gives exactly the engine's rows, with every
timestamp a UTC instant (tz-aware UTC, the same microsecond)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from spark_jobs.jobs import backfill, snapshot, training
from spark_jobs.storage.tables import Warehouse
from tests.engines.test_source_timestamps import DEFS, write_variant
from tests.helpers import load, run_job, write_defs

TABLES = ("blocks/acts", "snapshots/acts", "training/ts")


@pytest.fixture(scope="module", params=["sail", "spark"])
def published(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Blocks, a snapshot and a training set (sums, counts, arrays, timestamps) written by one engine."""
    engine = request.getfixturevalue(f"{request.param}_engine")
    root = tmp_path_factory.mktemp(f"readers-{request.param}")
    defs = load(write_defs(root, DEFS), write_variant(root, "micros"))
    wh = Warehouse(engine.spark, root / "warehouse", engine.writer, lock_timeout_s=30)
    engine.activate()
    run_job(engine, wh, defs, "backfill", backfill.run, start=date(2026, 3, 1), end=date(2026, 3, 3), names=["acts"])
    run_job(engine, wh, defs, "snapshot", snapshot.run, as_of=datetime(2026, 3, 2, 12), names=["acts"])
    run_job(engine, wh, defs, "training-set", training.run, name="ts", start=date(2026, 3, 1), end=date(2026, 3, 4))
    return engine, wh


def _plain(value: Any) -> Any:
    """A value as comparable Python: UTC-aware datetimes, bytes, lists and dicts."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rows(records: list[dict[str, Any]], columns: list[str]) -> list[tuple]:
    return sorted((tuple(_plain(r[c]) for c in columns) for r in records), key=repr)


def _assert_utc(schema: pa.Schema, reader: str) -> None:
    for field in schema:
        if pa.types.is_timestamp(field.type):
            assert field.type.tz in ("UTC", "+00:00", "Etc/UTC"), f"{reader}: {field.name} is {field.type}, not a UTC instant"


@pytest.mark.parametrize("table", TABLES)
def test_deltalake_polars_and_pyarrow_read_exactly_what_the_engine_wrote(published, table: str) -> None:  # type: ignore[no-untyped-def]
    import polars as pl
    from deltalake import DeltaTable

    engine, wh = published
    path = Path(wh.root) / table
    assert (path / "_delta_log").is_dir(), f"{engine.name} wrote {table} without a Delta log"
    engine.activate()
    written = wh.read(table)
    columns = written.columns
    expected = _rows([r.asDict(recursive=True) for r in written.collect()], columns)
    assert len(expected) > 0
    time_columns = [f.name for f in written.schema.fields if f.dataType.typeName() == "timestamp"]
    assert time_columns, "every output table has a timestamp column"

    dt = DeltaTable(str(path))
    by_delta = dt.to_pyarrow_table()
    by_polars = pl.read_delta(str(path)).to_arrow()
    parts = dt.metadata().partition_columns
    partitioning = ds.partitioning(pa.schema([by_delta.schema.field(c) for c in parts]), flavor="hive") if parts else None
    by_files = ds.dataset(dt.file_uris(), format="parquet", partitioning=partitioning).to_table()

    for reader, data in (("deltalake", by_delta), ("polars", by_polars), ("pyarrow dataset", by_files)):
        assert sorted(data.column_names) == sorted(columns), reader
        _assert_utc(data.schema, reader)
        got = _rows(data.select(columns).to_pylist(), columns)
        assert got == expected, f"{reader} differs from what {engine.name} wrote in {table}"


def test_the_comparison_sees_a_microsecond_and_a_zone() -> None:
    """The normalisation keeps what the test is about: an instant one microsecond off, or the same wall
    time in another zone, is a different row."""
    t = datetime(2026, 3, 1, 12, 0, 0, 5)
    base = _rows([{"t": t, "v": Decimal(1)}], ["t", "v"])
    assert _rows([{"t": t.replace(tzinfo=timezone.utc), "v": Decimal(1)}], ["t", "v"]) == base
    assert _rows([{"t": t.replace(microsecond=6), "v": Decimal(1)}], ["t", "v"]) != base
    from datetime import timedelta

    paris = timezone(timedelta(hours=1))
    assert _rows([{"t": t.replace(tzinfo=paris), "v": Decimal(1)}], ["t", "v"]) != base
