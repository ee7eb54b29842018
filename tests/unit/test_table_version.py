"""`storage.tables.table_version` reads the newest commit file's name: the version delta-rs gives
after every kind of commit, through checkpoints and log clean-up, and None where there is no table."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from spark_jobs.storage.tables import table_version


def _write(path: Path, n: int, mode: str = "append") -> None:
    write_deltalake(str(path), pa.table({"k": list(range(n)), "d": [n % 3] * n}), mode=mode, partition_by=["d"])


def test_the_version_is_delta_rs_version_after_every_kind_of_commit(tmp_path: Path) -> None:
    path = tmp_path / "t"
    assert table_version(path) is None  # no folder
    (path / "_delta_log").mkdir(parents=True)
    assert table_version(path) is None  # a log with no commit yet
    for i in range(1, 13):
        _write(path, i, mode="overwrite" if i % 4 == 0 else "append")
        table = DeltaTable(str(path))
        if i % 5 == 0:
            table.delete(f"k = {i - 1}")
        if i == 7:
            table.create_checkpoint()
        assert table_version(path) == DeltaTable(str(path)).version()
    assert table_version(path) == 13  # 12 writes and 2 deletes, from version 0


def test_files_that_are_not_commits_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "t"
    _write(path, 2)
    _write(path, 3)
    log = path / "_delta_log"
    DeltaTable(str(path)).create_checkpoint()
    assert DeltaTable(str(path)).version() == 1
    # A writer's temporary file, a name one digit short, a stray file: none is a commit.
    for name in ("_commit_5f1c.json.tmp", "0000000000000000009.json", "notes.json", "00000000000000000009.json.tmp"):
        (log / name).write_text("{}")
    assert table_version(path) == 1


def test_log_clean_up_keeps_the_newest_commit(tmp_path: Path) -> None:
    path = tmp_path / "t"
    write_deltalake(str(path), pa.table({"k": [0], "d": [0]}), partition_by=["d"],
                    configuration={"delta.logRetentionDuration": "interval 1 hour"})
    for i in range(1, 5):
        _write(path, i)
    log = path / "_delta_log"
    for f in log.glob("*.json"):  # every commit two hours old: past the retention
        os.utime(f, (time.time() - 7200, time.time() - 7200))
    table = DeltaTable(str(path))
    table.create_checkpoint()
    table.cleanup_metadata()
    assert not (log / "00000000000000000000.json").exists()  # the clean-up did remove old commits
    assert table_version(path) == 4 == DeltaTable(str(path)).version()
