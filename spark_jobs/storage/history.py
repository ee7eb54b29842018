"""A table's versions, from its Delta log joined with the run manifests, and restoring one.

Every commit tilewise makes names its run in commitInfo (`userMetadata`, see `tables.py`), so
each version leads to the manifest under `_runs/` that made it: the command, the rows it wrote and
its validation result. Both work on the files with the `deltalake` package, without an engine
(Sail has no DESCRIBE HISTORY or RESTORE). A restore makes a new version whose files are those of
the old one, under the table's lock; a version whose files a vacuum deleted cannot be restored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spark_jobs.errors import InputDataError
from spark_jobs.storage.locks import table_lock
from spark_jobs.storage.manifest import read_manifests
from spark_jobs.storage import coverage
from spark_jobs.storage.tables import LINEAGE_FILE, stored_lineage, table_version

# delta-rs, Sail and delta-spark name the rows a commit added differently.
_ROW_METRICS = ("num_added_rows", "numOutputRows", "numAddedRows")


@dataclass(frozen=True)
class Restored:
    version: int  # the new version
    source: int  # the version it equals
    rows: int
    lineage_kept: bool  # False: the definition behind the rows is no longer known (see `restore`)


def table_history(root: Path, table: str, limit: int | None = None) -> list[dict[str, Any]]:
    """One entry per version, newest first: version, time, operation, run id and, from that
    run's manifest, command, status, rows written and validation result."""
    path = root / table
    if table_version(path) is None:
        raise InputDataError(f"table {table} does not exist under {root} (run the job that builds it first)")
    from deltalake import DeltaTable

    manifests = {m["run_id"]: m for m in read_manifests(root)}
    out = []
    for commit in DeltaTable(str(path)).history(limit):
        run_id = commit.get("userMetadata") or None
        m = manifests.get(run_id) if run_id else None
        output = ((m or {}).get("outputs") or {}).get(table) or {}
        validation = ((m or {}).get("validation") or {}).get(table)
        metrics = commit.get("operationMetrics") or {}
        rows = output.get("rows") if output.get("version") == commit.get("version") else None
        if rows is None:
            rows = next((metrics[k] for k in _ROW_METRICS if isinstance(metrics.get(k), int)), None)
        out.append({
            "version": commit.get("version"),
            "time": _iso(commit.get("timestamp")),
            "operation": commit.get("operation"),
            "run_id": run_id,
            "command": (m or {}).get("command"),
            "status": (m or {}).get("status"),
            "rows_written": rows,
            "validation": None if validation is None else ("passed" if validation.get("success") else "failed"),
            "manifest": (m or {}).get("manifest"),
            "engine": commit.get("engineInfo"),
        })
    return out


def restore(root: Path, table: str, version: int, *, run_id: str, lock_timeout_s: float,
            on_wait: Any = None) -> Restored:
    """Make a new version of `table` equal to `version`, under the table's lock.

    Refused (exit 2) for a version the table never had or whose files a vacuum deleted. The
    table's lineage (which definition its rows come from) stays when no commit after `version`
    replaced the whole table (a `--rebuild` or another tool's write); otherwise it is no longer
    known, and is dropped: the next write records its own.
    """
    from deltalake import CommitProperties, DeltaTable
    from deltalake.exceptions import DeltaError

    path = root / table
    with table_lock(root / "_locks", table, timeout_s=lock_timeout_s, on_wait=on_wait):
        current = table_version(path)
        if current is None:
            raise InputDataError(f"table {table} does not exist under {root}; nothing to restore")
        if not 0 <= version <= current:
            raise InputDataError(f"table {table} has versions 0 to {current}; there is no version {version} to restore")
        if version == current:
            raise InputDataError(f"table {table} is at version {version} already; nothing to restore")
        try:
            old = DeltaTable(str(path), version=version)
        except DeltaError as exc:  # its log entry was cleaned up
            raise InputDataError(f"table {table}: version {version} can no longer be read "
                                 f"({str(exc).strip().splitlines()[0]}); nothing was restored") from None
        missing = [uri for uri in old.file_uris() if "://" not in uri and not Path(uri).exists()]
        if missing:
            raise InputDataError(
                f"table {table}: version {version} can no longer be restored: a vacuum deleted {len(missing)} of its "
                f"{len(old.file_uris())} data files (e.g. {missing[0]}); nothing was restored"
            )
        rows = int(old.count())
        lineage_kept = _lineage_holds(root, table, version)
        stored_lineage(path, settle=True)
        DeltaTable(str(path)).restore(version, commit_properties=CommitProperties(custom_metadata={"userMetadata": run_id}))
        if not lineage_kept:
            (path / LINEAGE_FILE).unlink(missing_ok=True)
        coverage.forget(path)  # which event time the restored version covers is not known
        new = table_version(path)
    assert new is not None
    return Restored(new, version, rows, lineage_kept)


def _lineage_holds(root: Path, table: str, version: int) -> bool:
    """Did every commit after `version` keep the table's definition (no rebuild, restore or unknown writer)?"""
    manifests = {m["run_id"]: m for m in read_manifests(root)}
    for h in table_history(root, table):
        if h["version"] is None or h["version"] <= version or h["operation"] in ("VACUUM START", "VACUUM END"):
            continue
        m = manifests.get(h["run_id"]) if h["run_id"] else None
        if m is None or h["operation"] == "RESTORE" or (m.get("args") or {}).get("rebuild"):
            return False
    return True


def _iso(ms: Any) -> str | None:
    if not isinstance(ms, (int, float)):
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
