"""What every engine's Delta commits hold: the run id, UTC instants, statistics, untouched files.

Sail and classic Spark (here without the delta-spark jars: Spark writes the files, delta-rs
commits them) must leave tables that `deltalake` reads the same way, whose `_delta_log` names the
run behind each version, and whose range overwrites leave the files of other ranges alone.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from spark_jobs.storage.tables import Warehouse

TABLE = "training/t"
SCHEMA = "id long, day date, ts timestamp, v double"


def _rows(wh: Warehouse, days: list[int], v: float):  # type: ignore[no-untyped-def]
    return wh.spark.sql(
        f"SELECT id, date_add(DATE'2026-01-01', CAST(id % 3 AS INT)) AS day, "
        f"timestamp_seconds(1767225600 + id * 3600 + 1) AS ts, CAST({v} AS DOUBLE) AS v FROM range(30)"
    ).filter(f"day IN ({', '.join(repr(f'2026-01-0{d}') for d in days)})")


def _files(path: Path) -> set[str]:
    return {str(Path(u).resolve()) for u in DeltaTable(str(path)).file_uris()}


def test_every_commit_names_its_run_and_a_range_overwrite_keeps_other_files(warehouse: Warehouse) -> None:
    pred = "day >= DATE'2026-01-02' AND day < DATE'2026-01-03'"
    warehouse.run_id = "run-create"
    warehouse.replace_range(TABLE, _rows(warehouse, [1, 2, 3], 1.0), "day IS NOT NULL", ["day"])
    path = warehouse.path(TABLE)
    before = _files(path)
    warehouse.run_id = "run-range"
    warehouse.replace_range(TABLE, _rows(warehouse, [1, 2, 3], 2.0), pred, ["day"])  # only day 2 is in range
    after = _files(path)
    warehouse.run_id = "run-rebuild"
    warehouse.overwrite(TABLE, _rows(warehouse, [3], 3.0), ["day"])

    history = sorted(DeltaTable(str(path)).history(), key=lambda h: h["version"])
    assert [(h["version"], h.get("userMetadata")) for h in history] == [
        (0, "run-create"), (1, "run-range"), (2, "run-rebuild")
    ]
    old_days = {f for f in before if "day=2026-01-02" not in f}
    assert old_days and old_days <= after, "the files of days 1 and 3 are not rewritten"
    assert not (before - old_days) & after, "day 2's files are replaced"

    v1 = DeltaTable(str(path), version=1).to_pyarrow_table().to_pylist()
    assert sorted((r["id"], r["v"]) for r in v1) == [(i, 2.0 if i % 3 == 1 else 1.0) for i in range(30)]
    v2 = DeltaTable(str(path)).to_pyarrow_table()
    assert sorted(v2.column("id").to_pylist()) == list(range(2, 30, 3)) and set(v2.column("v").to_pylist()) == {3.0}


def test_deltalake_reads_utc_instants_and_finds_file_statistics(warehouse: Warehouse) -> None:
    warehouse.replace_range(TABLE, _rows(warehouse, [1, 2], 1.0), "day IS NOT NULL", ["day"])
    table = DeltaTable(str(warehouse.path(TABLE)))
    data = table.to_pyarrow_table()
    assert data.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    got = sorted(data.select(["id", "ts"]).to_pylist(), key=lambda r: r["id"])
    assert [r["ts"] for r in got] == [datetime.fromtimestamp(1767225600 + r["id"] * 3600 + 1, timezone.utc) for r in got]
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    assert sum(a["num_records"] for a in actions) == data.num_rows
    for a in actions:  # min/max of each file, as the readers skip files by
        rows = [r for r in data.to_pylist() if r["day"].isoformat() == str(a["partition.day"])]
        assert a["min.id"] == min(r["id"] for r in rows) and a["max.id"] == max(r["id"] for r in rows)
        assert a["max.ts"] == max(r["ts"] for r in rows)
    for entry in sorted((warehouse.path(TABLE) / "_delta_log").glob("*.json")):
        for line in entry.read_text().splitlines():
            add = json.loads(line).get("add")
            if add:
                assert json.loads(add["stats"])["numRecords"] > 0
