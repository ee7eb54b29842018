"""`tilewise vacuum`: delete the files that no version within the retention still needs.

Every write replaces the files of the partitions it touches and keeps the old ones for time
travel, so without this the warehouse only grows. Sail has no VACUUM command, so
this runs without an engine, on the files:

- Tables (Delta, whichever engine wrote them): the `deltalake` package's vacuum, in full mode
  (also files no commit names, e.g. from a killed write), keeping what versions replaced less
  than `retain_hours` ago still read. It commits `VACUUM START` and `VACUUM END`, so the version
  goes up by 2 with the same rows.
- Run folders: the intermediates (`work/`) of runs untouched for longer than the retention, and
  the staged rows (`staged/`) of runs killed before they wrote a manifest. A run without a
  manifest may still be running, so it is cleaned only once untouched for a day as well. The
  rejected rows of a run that failed validation stay (kept under `_runs/` for inspection),
  and so do manifests and HTML reports. Classic Spark's bucketed tables left by a killed
  training-set run (`_tmp/spark-tables/tw_*`) and the files of a killed classic-Spark write not
  yet moved into its table (`_tmp/delta-writes/*`) go on the same terms as a run without a manifest.

Each table is vacuumed under its lock, so no tilewise writer is mid-commit. Afterwards versions
replaced longer than the retention ago can no longer be read, so a job that is reading such an
old version would fail: keep the retention above the longest job (the default is Delta's, 7 days).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spark_jobs.errors import InputDataError
from spark_jobs.storage.locks import table_lock
from spark_jobs.storage.deltars import SCRATCH
from spark_jobs.storage.tables import stored_lineage

_UNFINISHED_RUN_S = 24 * 3600.0


@dataclass
class Freed:
    """What a vacuum deleted (or, in a dry run, would delete)."""

    files: int = 0
    bytes: int = 0

    def add(self, path: Path) -> None:
        files, size = _tree_size(path)
        self.files += files
        self.bytes += size

    def add_counts(self, other: "Freed") -> None:
        self.files += other.files
        self.bytes += other.bytes


def vacuum_table(
    root: Path,
    table: str,
    *,
    retain_hours: float,
    dry_run: bool,
    lock_timeout_s: float,
    on_wait: Callable[[str], None] | None = None,
    run_id: str | None = None,
) -> Freed | None:
    """Vacuum one table; None when it does not exist. Its commits name `run_id` (commitInfo.userMetadata)."""
    path = root / table
    with table_lock(root / "_locks", table, timeout_s=lock_timeout_s, on_wait=on_wait):
        # A vacuum commits on Delta: first settle a pending lineage, so its commit is not taken for a write.
        stored_lineage(path, settle=True)
        # Existence by the log's files: opening a damaged Delta log is `_vacuum_delta`'s to report.
        if not any((path / "_delta_log").glob("*.json")):
            return None
        return _vacuum_delta(path, retain_hours, dry_run, run_id)


def vacuum_runs(root: Path, *, retain_hours: float, dry_run: bool, now: float | None = None) -> Freed:
    """Remove `work/` of the runs untouched for longer than the retention, and `staged/` of killed ones."""
    now = time.time() if now is None else now
    freed = Freed()
    runs = root / "_runs"
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []:
        idle = now - _newest_mtime(run_dir)
        finished = (runs / f"{run_dir.name}.json").exists()
        if idle < retain_hours * 3600.0 or (not finished and idle < _UNFINISHED_RUN_S):
            continue
        for sub in ("work",) if finished else ("work", "staged"):  # a finished run's staged/ is its rejected rows
            if (run_dir / sub).exists():
                freed.add(run_dir / sub)
                if not dry_run:
                    shutil.rmtree(run_dir / sub)
    # Classic Spark's bucketed tables of a training-set run (`storage.bucketed`): a run drops its
    # own when it ends, so these are a killed run's, or a running one's while it is young.
    # The same for a classic-Spark write's files not yet in its table (`storage.deltars`).
    scratch = [*(root / "_tmp" / "spark-tables").glob("tw_*"), *(root / SCRATCH).glob("*")]
    for folder in sorted(scratch):
        if now - _newest_mtime(folder) >= max(retain_hours * 3600.0, _UNFINISHED_RUN_S):
            freed.add(folder)
            if not dry_run:
                shutil.rmtree(folder)
    return freed


def _vacuum_delta(path: Path, retain_hours: float, dry_run: bool, run_id: str | None) -> Freed:
    from deltalake import CommitProperties, DeltaTable
    from deltalake.exceptions import DeltaError

    kw = {"retention_hours": math.ceil(retain_hours), "enforce_retention_duration": False, "full": True,
          "commit_properties": CommitProperties(custom_metadata={"userMetadata": run_id} if run_id else None)}
    freed = Freed()
    try:
        table = DeltaTable(str(path))
        for rel in table.vacuum(dry_run=True, **kw):  # type: ignore[arg-type]
            freed.add(path / rel)  # listed files that are already gone count as nothing
        if not dry_run and freed.files:
            table.vacuum(dry_run=False, **kw)  # type: ignore[arg-type]
    except DeltaError as exc:  # e.g. a writer feature of another Delta writer that delta-rs lacks
        reason = str(exc).strip().splitlines()[0]  # delta-rs appends a Rust backtrace
        if dry_run or not freed.files:
            raise InputDataError(f"{path}: the deltalake package cannot vacuum this table ({reason}); nothing was deleted") from None
        raise InputDataError(f"{path}: the deltalake package failed while vacuuming ({reason}); "
                             "the table's versions are intact, re-run the vacuum") from None
    return freed


def _tree_size(path: Path) -> tuple[int, int]:
    if path.is_file():
        return 1, path.stat().st_size
    if not path.exists():
        return 0, 0
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _newest_mtime(path: Path) -> float:
    return max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.rglob("*"))])
