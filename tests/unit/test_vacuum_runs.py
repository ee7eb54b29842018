"""Run folders: a vacuum takes the intermediates and staged rows of old runs, never a live run's."""

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


def test_old_runs_lose_work_and_staged_and_keep_reports_and_manifests(tmp_path: Path) -> None:
    old = _run(tmp_path, "old", hours_ago=200, finished=True)
    recent = _run(tmp_path, "recent", hours_ago=1, finished=True)
    running = _run(tmp_path, "running", hours_ago=2, finished=False)  # no manifest yet: may be running
    killed = _run(tmp_path, "killed", hours_ago=30, finished=False)  # no manifest and idle for a day

    dry = vacuum_runs(tmp_path, retain_hours=1.5, dry_run=True)
    assert _left(old) == ["gx/report.html", "staged/t/part-0.parquet", "work/impressions/part-0.parquet"]
    freed = vacuum_runs(tmp_path, retain_hours=1.5, dry_run=False)
    assert (dry.files, dry.bytes) == (freed.files, freed.bytes) == (4, 300)

    assert _left(old) == _left(killed) == ["gx/report.html"]
    assert len(_left(recent)) == len(_left(running)) == 3
    assert (tmp_path / "_runs" / "old.json").exists()
    assert vacuum_runs(tmp_path, retain_hours=1.5, dry_run=False).files == 0


def test_no_runs_folder_is_nothing_to_do(tmp_path: Path) -> None:
    assert vacuum_runs(tmp_path, retain_hours=0, dry_run=False).files == 0
