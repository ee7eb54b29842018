"""Run folders: a vacuum takes old runs' intermediates, never a live run's, nor the rows a failed run rejected."""

from __future__ import annotations

import os
import time
from pathlib import Path

from spark_jobs.storage.vacuum import vacuum_runs


def _run(root: Path, run_id: str, *, hours_ago: float, finished: bool) -> Path:
    run = root / "_runs" / run_id
    for rel, size in (("work/impressions/part-0.parquet", 100), ("staged/t/part-0.parquet", 50), ("gx/report.html", 7)):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(b"x" * size)
    if finished:
        (root / "_runs" / f"{run_id}.json").write_text("{}")
    t = time.time() - hours_ago * 3600
    for p in [run, *run.rglob("*")]:
        os.utime(p, (t, t))
    return run


def _left(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def test_old_runs_lose_intermediates_and_keep_rejected_rows_reports_and_manifests(tmp_path: Path) -> None:
    old = _run(tmp_path, "old", hours_ago=200, finished=True)
    recent = _run(tmp_path, "recent", hours_ago=1, finished=True)
    running = _run(tmp_path, "running", hours_ago=2, finished=False)  # no manifest yet: may be running
    killed = _run(tmp_path, "killed", hours_ago=30, finished=False)  # no manifest and idle for a day

    dry = vacuum_runs(tmp_path, retain_hours=1.5, dry_run=True)
    assert _left(old) == ["gx/report.html", "staged/t/part-0.parquet", "work/impressions/part-0.parquet"]
    freed = vacuum_runs(tmp_path, retain_hours=1.5, dry_run=False)
    assert (dry.files, dry.bytes) == (freed.files, freed.bytes) == (3, 250)

    assert _left(old) == ["gx/report.html", "staged/t/part-0.parquet"], "a finished run's staged rows are its rejected rows"
    assert _left(killed) == ["gx/report.html"]
    assert len(_left(recent)) == len(_left(running)) == 3
    assert (tmp_path / "_runs" / "old.json").exists()
    assert vacuum_runs(tmp_path, retain_hours=1.5, dry_run=False).files == 0


def test_bucketed_tables_of_killed_training_runs_go_after_a_day(tmp_path: Path) -> None:
    tables = tmp_path / "_tmp" / "spark-tables"
    for name, hours in (("tw_20260101t000000z_training_set_abc123_impressions", 30), ("tw_now_training_set_def456_labels", 2)):
        (tables / name).mkdir(parents=True)
        (tables / name / "part-0.parquet").write_bytes(b"x" * 10)
        t = time.time() - hours * 3600
        for p in (tables / name, tables / name / "part-0.parquet"):
            os.utime(p, (t, t))
    assert vacuum_runs(tmp_path, retain_hours=1, dry_run=False).files == 1
    assert [p.name for p in tables.iterdir()] == ["tw_now_training_set_def456_labels"]


def test_no_runs_folder_is_nothing_to_do(tmp_path: Path) -> None:
    assert vacuum_runs(tmp_path, retain_hours=0, dry_run=False).files == 0


def test_files_of_killed_classic_spark_writes_go_after_a_day(tmp_path: Path) -> None:
    """A write killed before it moved its files into the table leaves them in `_tmp/delta-writes/`."""
    scratch = tmp_path / "_tmp" / "delta-writes"
    for name, hours in (("a" * 32, 30), ("b" * 32, 2)):
        (scratch / name / "day=2026-01-01").mkdir(parents=True)
        (scratch / name / "day=2026-01-01" / "part-0.parquet").write_bytes(b"x" * 10)
        t = time.time() - hours * 3600
        for p in (scratch / name, *(scratch / name).rglob("*")):
            os.utime(p, (t, t))
    freed = vacuum_runs(tmp_path, retain_hours=1, dry_run=False)
    assert (freed.files, freed.bytes) == (1, 10)
    assert [p.name for p in scratch.iterdir()] == ["b" * 32], "a write of 2 h ago may still be running"
