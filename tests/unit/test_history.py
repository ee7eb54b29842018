"""`storage.history` on Delta tables written here with `deltalake` and manifests written by hand:
the join of log and manifests, and what a restore does to the table's lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake

from spark_jobs.errors import InputDataError
from spark_jobs.storage.history import restore, table_history
from spark_jobs.storage.tables import LINEAGE_FILE

TABLE = "blocks/t"


def _commit(root: Path, run_id: str | None, v: int, *, rebuild: bool = False, command: str = "backfill") -> None:
    """One version written by run `run_id` (v rows of value v), and that run's manifest."""
    path = root / TABLE
    props = CommitProperties(custom_metadata={"userMetadata": run_id} if run_id else None)
    write_deltalake(str(path), pa.table({"k": list(range(v)), "v": [v] * v}), mode="overwrite", commit_properties=props)
    if run_id:
        version = DeltaTable(str(path)).version()
        manifest = {"run_id": run_id, "command": command, "status": "ok", "args": {"rebuild": rebuild},
                    "started": f"2026-01-0{v}T00:00:00Z", "outputs": {TABLE: {"version": version, "rows": v}},
                    "validation": {TABLE: {"success": v != 3}}}
        (root / "_runs").mkdir(exist_ok=True)
        (root / "_runs" / f"{run_id}.json").write_text(json.dumps(manifest))


def _lineage(root: Path) -> None:
    (root / TABLE / LINEAGE_FILE).write_text(json.dumps({"fingerprint": "f", "lineage": {"x": 1}}))


def test_history_joins_each_commit_with_its_runs_manifest(tmp_path: Path) -> None:
    _commit(tmp_path, "r1", 1)
    _commit(tmp_path, "r2", 2)
    _commit(tmp_path, None, 3)  # another tool: no run id
    h = table_history(tmp_path, TABLE)
    assert [(e["version"], e["run_id"], e["command"], e["rows_written"], e["validation"]) for e in h] == [
        (2, None, None, 3, None), (1, "r2", "backfill", 2, "passed"), (0, "r1", "backfill", 1, "passed")
    ]
    assert h[1]["manifest"].endswith("r2.json") and h[0]["time"].endswith("Z")
    assert [e["version"] for e in table_history(tmp_path, TABLE, 1)] == [2]
    with pytest.raises(InputDataError, match="does not exist"):
        table_history(tmp_path, "blocks/none")


def test_restore_makes_a_new_version_equal_to_the_old_one_and_keeps_the_lineage(tmp_path: Path) -> None:
    _commit(tmp_path, "r1", 1)
    _commit(tmp_path, "r2", 2)
    _lineage(tmp_path)
    done = restore(tmp_path, TABLE, 0, run_id="rr", lock_timeout_s=5)
    assert (done.version, done.source, done.rows, done.lineage_kept) == (2, 0, 1, True)
    t = DeltaTable(str(tmp_path / TABLE))
    assert t.to_pyarrow_table().to_pylist() == [{"k": 0, "v": 1}]
    assert t.history(1)[0]["userMetadata"] == "rr"
    assert (tmp_path / TABLE / LINEAGE_FILE).exists()


def test_restore_across_a_rebuild_or_an_unknown_writer_drops_the_lineage(tmp_path: Path) -> None:
    _commit(tmp_path, "r1", 1)
    _commit(tmp_path, "r2", 2, rebuild=True)
    _lineage(tmp_path)
    assert not restore(tmp_path, TABLE, 0, run_id="rr", lock_timeout_s=5).lineage_kept
    assert not (tmp_path / TABLE / LINEAGE_FILE).exists(), "the next write records its own"
    _commit(tmp_path, None, 4)
    _lineage(tmp_path)
    assert not restore(tmp_path, TABLE, 2, run_id="rr2", lock_timeout_s=5).lineage_kept
    with pytest.raises(InputDataError, match="at version 4 already"):
        restore(tmp_path, TABLE, 4, run_id="rr3", lock_timeout_s=5)


def test_restore_refuses_a_version_it_cannot_make_and_changes_nothing(tmp_path: Path) -> None:
    _commit(tmp_path, "r1", 1)
    _commit(tmp_path, "r2", 2)
    with pytest.raises(InputDataError, match="no version 7"):
        restore(tmp_path, TABLE, 7, run_id="rr", lock_timeout_s=5)
    for uri in DeltaTable(str(tmp_path / TABLE), version=0).file_uris():
        Path(uri).unlink()  # what a vacuum does to a replaced version's files
    with pytest.raises(InputDataError, match="vacuum deleted 1 of its 1 data files") as err:
        restore(tmp_path, TABLE, 0, run_id="rr", lock_timeout_s=5)
    assert err.value.exit_code == 2
    assert DeltaTable(str(tmp_path / TABLE)).version() == 1
    with pytest.raises(InputDataError, match="does not exist"):
        restore(tmp_path, "blocks/none", 0, run_id="rr", lock_timeout_s=5)
