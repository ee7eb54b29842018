"""Every read and write of an output table, with the guards each engine's writes need.

Two formats behind one interface:

- Delta Lake (Sail natively, classic Spark with delta-spark): a range is replaced with
  `replaceWhere`. Sail neither checks that written rows match the predicate nor keeps rows where
  it is NULL, so we always filter what we write to the predicate ourselves and only put NOT NULL
  columns in predicates. Versions are read engine-independently with the `deltalake` package.
- Parquet (classic Spark without Delta jars): tilewise's own copy-on-write versions. Each version
  is a complete, immutable folder `v00000007-<id>/`; a commit is the exclusive creation of
  `_tilewise_log/00000007.json` naming that folder, so a crashed write leaves only an orphan
  folder and readers never see half a version. Every write rewrites the table: right for local
  runs and CI, not for big tables (use Delta there).

Each table's lineage (`defs.lineage`) lives beside it in `_tilewise_lineage.json`. It cannot be in
the same commit, so a write that changes it records the new one as pending first, in force once a
commit lands after it (see `stored_lineage`).

All writes hold the table's lock (`locks.py`), because Sail detects no write conflicts. On
Delta-on-Spark a writer that bypasses the lock (another tool, a host without the shared lock
folder) can still make a commit conflict: the commit is retried a few times from a fresh snapshot
(a range overwrite is idempotent), then the run fails with `WriteConflict` (exit 3, retryable).
"""

from __future__ import annotations

import json
from datetime import date
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from spark_jobs.defs.lineage import Lineage, changes, fingerprint
from spark_jobs.errors import InputDataError
from spark_jobs.storage.locks import TableBusy, table_lock

log = logging.getLogger(__name__)

PARQUET_LOG = "_tilewise_log"
# Beside the data; Delta ignores (and VACUUM keeps) files whose names start with "_".
LINEAGE_FILE = "_tilewise_lineage.json"
REBUILD_HINT = (
    "Its rows would mix both definitions. Rebuild it: re-run this command over the whole history with "
    "--rebuild (the table then holds only that range; older versions stay readable)."
)

# Delta's commit-conflict exceptions (`delta.exceptions`). Matched by name, so this module needs
# no Delta import: with `delta.exceptions` imported they arrive as these Python classes, without
# it as a generic captured error whose text names the Java class `io.delta.exceptions.<Name>`.
DELTA_CONFLICTS = frozenset(
    {
        "DeltaConcurrentModificationException",
        "ConcurrentWriteException",
        "MetadataChangedException",
        "ProtocolChangedException",
        "ConcurrentAppendException",
        "ConcurrentDeleteReadException",
        "ConcurrentDeleteDeleteException",
        "ConcurrentTransactionException",
    }
)
_JAVA_CONFLICT = re.compile(r"io\.delta\.exceptions\.(\w+)")
COMMIT_ATTEMPTS = 3


class WriteConflict(TableBusy):
    """A commit conflicted with a writer that does not take tilewise's table lock (exit 3, retryable)."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    rows: int | None = None


class Warehouse:
    """Tables under one root, in one format, for one session."""

    def __init__(self, spark: SparkSession, root: Path, table_format: str, *, lock_timeout_s: float = 3600.0):
        self.spark = spark
        self.root = root
        self.format = table_format
        self.lock_timeout_s = lock_timeout_s

    # -- paths and metadata ------------------------------------------------------------------
    def path(self, table: str) -> Path:
        return self.root / table

    def exists(self, table: str) -> bool:
        return self.version(table) is not None

    def version(self, table: str) -> int | None:
        """Latest committed version, or None when the table does not exist."""
        return table_version(self.path(table), self.format)

    # -- reads -------------------------------------------------------------------------------
    def read(self, table: str, version: int | None = None) -> DataFrame:
        path = self.path(table)
        if self.version(table) is None:
            raise InputDataError(f"table {table} does not exist under {self.root} (run the job that builds it first)")
        if self.format == "delta":
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            return reader.load(str(path))
        entry = self._parquet_entry(table, version)
        schema = StructType.fromJson(entry["schema"])
        df = self.spark.read.schema(schema).parquet(str(path / entry["data"]))
        return df.select(*schema.fieldNames())

    def partition_bytes(self, table: str, version: int, column: str, lo: date, hi: date) -> int:
        """Bytes of the data files of `version` whose partition `column` is in [lo, hi]: what a
        read pruned to those dates scans (sizes its partitions without touching the data)."""
        path = self.path(table)
        if self.format == "delta":
            from deltalake import DeltaTable

            actions = pa.table(DeltaTable(str(path), version=version).get_add_actions(flatten=True))
            if f"partition.{column}" not in actions.column_names:
                return sum(actions.column("size_bytes").to_pylist())
            rows = zip(actions.column("size_bytes").to_pylist(), actions.column(f"partition.{column}").to_pylist())
            return sum(size for size, d in rows if d is not None and lo <= _as_date(d) <= hi)
        data = path / self._parquet_entry(table, version)["data"]
        return sum(
            f.stat().st_size
            for folder in data.rglob(f"{column}=*")
            if lo <= date.fromisoformat(folder.name.split("=", 1)[1]) <= hi
            for f in folder.rglob("*.parquet")
        )

    # -- writes ------------------------------------------------------------------------------
    def replace_range(
        self,
        table: str,
        df: DataFrame,
        predicate: str,
        partition_by: list[str],
        *,
        rebuild: bool = False,
        lineage: Lineage | None = None,
    ) -> WriteResult:
        """Make the rows of `table` matching `predicate` exactly the rows of `df` matching it.

        Rows outside the predicate are untouched; `df` rows outside it are not written. The
        predicate must only use NOT NULL columns (see module docstring). With `rebuild` the
        table becomes exactly these rows, in their schema (after a definition change); older
        versions stay readable. `lineage` is what the rows were built from (`defs.lineage`):
        the table records it, and refuses rows of another lineage unless rebuilt.
        """
        data = _one_file_per_partition(df.filter(predicate), partition_by)
        if rebuild:
            with self.lock(table):
                self._lineage_pending(table, lineage, stored_lineage(self.path(table), self.format, settle=True))
                result = self.overwrite(table, data, partition_by)
                self._record_lineage(table, lineage)
            return result
        with self.lock(table):
            self._lineage_pending(table, lineage, self.check_lineage(table, lineage, settle=True))
            if self.format == "delta":

                def commit() -> None:  # re-checks the table on each attempt: it may have appeared
                    self.check_schema(table, data)
                    writer = data.write.format("delta").mode("overwrite").partitionBy(*partition_by)
                    if self.version(table) is not None:
                        writer = writer.option("replaceWhere", predicate)
                    writer.save(str(self.path(table)))

                retry_conflicts(table, commit)
            else:
                kept = None
                if self.version(table) is not None:
                    self.check_schema(table, data)
                    kept = self.read(table).filter(f"NOT coalesce(({predicate}), false)")
                self._parquet_commit(table, data if kept is None else kept.unionByName(data), partition_by)
            self._record_lineage(table, lineage)
            version = self.version(table)
        assert version is not None
        return WriteResult(table, version)

    def overwrite(self, table: str, df: DataFrame, partition_by: list[str]) -> WriteResult:
        """Replace the whole table with `df` (a new version; history is kept)."""
        with self.lock(table):
            if self.format == "delta":
                writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
                retry_conflicts(table, lambda: writer.partitionBy(*partition_by).save(str(self.path(table))))
            else:
                self._parquet_commit(table, df, partition_by)
            version = self.version(table)
        assert version is not None
        return WriteResult(table, version)

    # -- internals ---------------------------------------------------------------------------
    def lock(self, table: str, on_wait: Callable[[str], None] | None = None) -> AbstractContextManager[None]:
        """Exclusive write access to `table` (re-entrant in this process)."""
        return table_lock(self.root / "_locks", table, timeout_s=self.lock_timeout_s, on_wait=on_wait)

    def check_lineage(self, table: str, lineage: Lineage | None, *, settle: bool = False) -> Lineage | None:
        """Refuse to add rows built from another definition than the table's (see `defs.lineage`).

        Returns the table's lineage. With `settle` (only under the table's lock) a pending
        lineage is resolved in the file.
        """
        if lineage is None:
            return None
        stored = stored_lineage(self.path(table), self.format, settle=settle)
        if stored is None:  # a new table, or one written before lineage was recorded (adopted on write)
            return None
        if fingerprint(stored) != fingerprint(lineage):
            diff = changes(stored, lineage)
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise InputDataError(f"table {table} was built from another definition ({shown}). {REBUILD_HINT}")
        return stored

    def _lineage_pending(self, table: str, lineage: Lineage | None, old: Lineage | None) -> None:
        """Before a commit that may change the lineage: the new one, effective once a commit lands.

        Under the lock, the next commit after `after` is this run's; so if the process dies
        between its commit and `_record_lineage`, the table still has the right lineage, and if
        it dies before committing, the old one stays in force. `old` is the settled lineage.
        """
        if lineage is None or (old is not None and fingerprint(old) == fingerprint(lineage)):
            return
        _write_lineage_file(self.path(table), {"lineage": old, "pending": {"lineage": lineage, "after": self.version(table)}})

    def _record_lineage(self, table: str, lineage: Lineage | None) -> None:
        """After the commit: `lineage` is the table's."""
        if lineage is not None:
            _write_settled(self.path(table), lineage)

    def check_schema(self, table: str, data: DataFrame) -> None:
        """`data` has the columns of `table` (if it exists); else the definition changed: say how to rebuild."""
        if self.version(table) is None:
            return
        have = self.read(table).schema
        want = data.schema
        have_cols = {f.name: f.dataType.simpleString() for f in have.fields}
        want_cols = {f.name: f.dataType.simpleString() for f in want.fields}
        if set(have_cols) != set(want_cols):
            added = sorted(set(want_cols) - set(have_cols))
            removed = sorted(set(have_cols) - set(want_cols))
            raise InputDataError(
                f"table {table} was built from another definition (columns added: {added or 'none'}, "
                f"removed: {removed or 'none'}). {REBUILD_HINT}"
            )

    def _parquet_entry(self, table: str, version: int | None) -> dict:
        log = self.path(table) / PARQUET_LOG
        v = self.version(table) if version is None else version
        try:
            return json.loads((log / f"{v:08d}.json").read_text())
        except FileNotFoundError:
            raise InputDataError(f"table {table} has no version {version}") from None

    def _parquet_commit(self, table: str, df: DataFrame, partition_by: list[str]) -> None:
        path = self.path(table)
        current = self.version(table)
        version = 0 if current is None else current + 1
        data_dir = f"v{version:08d}-{uuid.uuid4().hex[:8]}"
        df.write.mode("error").partitionBy(*partition_by).parquet(str(path / data_dir))
        entry = {"version": version, "data": data_dir, "schema": json.loads(df.schema.json())}
        log = path / PARQUET_LOG
        log.mkdir(parents=True, exist_ok=True)
        tmp = log / f".{version:08d}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(entry))
        try:
            # link() fails if the version exists: the commit is atomic and exclusive.
            os.link(tmp, log / f"{version:08d}.json")
        except FileExistsError:
            shutil.rmtree(path / data_dir, ignore_errors=True)
            raise WriteConflict(
                f"table {table}: version {version} was committed by another writer that did not take "
                "tilewise's lock; nothing of this run was published. Re-run when it is done."
            ) from None
        finally:
            tmp.unlink(missing_ok=True)


def table_version(path: Path, table_format: str) -> int | None:
    """Latest committed version of the table at `path`, or None when there is none."""
    if table_format == "delta":
        if not any((path / "_delta_log").glob("*.json")):
            return None
        from deltalake import DeltaTable

        return int(DeltaTable(str(path)).version())
    commits = sorted((path / PARQUET_LOG).glob("*.json"))
    return int(commits[-1].stem) if commits else None


def stored_lineage(path: Path, table_format: str, *, settle: bool = False) -> Lineage | None:
    """The lineage in force for the table at `path` (None: not recorded).

    A pending lineage (written before a commit) is in force once the table has a version after
    the one it was written at. With `settle`, which needs the table's lock, the file is rewritten
    to hold only the lineage in force, so later commits (another write, a vacuum) cannot be
    mistaken for the pending one.
    """
    state = _read_lineage_file(path)
    if state is None:
        return None
    pending = state.get("pending")
    if pending is None:
        return state["lineage"]
    current = table_version(path, table_format)
    landed = current is not None and (pending["after"] is None or current > pending["after"])
    lineage = pending["lineage"] if landed else state.get("lineage")
    if settle:
        if lineage is None:
            (path / LINEAGE_FILE).unlink(missing_ok=True)
        else:
            _write_settled(path, lineage)
    return lineage


def _read_lineage_file(path: Path) -> dict | None:
    try:
        state = json.loads((path / LINEAGE_FILE).read_text())
        if "lineage" not in state:
            raise KeyError("lineage")
        return state
    except FileNotFoundError:
        return None
    except (ValueError, KeyError) as exc:
        raise InputDataError(f"unreadable {path / LINEAGE_FILE} ({exc}); rebuild the table") from None


def _write_settled(path: Path, lineage: Lineage) -> None:
    _write_lineage_file(path, {"fingerprint": fingerprint(lineage), "lineage": lineage})


def _write_lineage_file(path: Path, state: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{LINEAGE_FILE}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path / LINEAGE_FILE)


def delta_conflict(exc: BaseException) -> str | None:
    """The name of the Delta commit conflict `exc` is, or None when it is something else."""
    for cls in type(exc).__mro__:
        if cls.__name__ in DELTA_CONFLICTS:
            return cls.__name__
    head = str(exc).lstrip().split("\n", 1)[0]
    m = _JAVA_CONFLICT.search(head)
    return m.group(1) if m and m.group(1) in DELTA_CONFLICTS else None


def retry_conflicts(
    table: str,
    commit: Callable[[], None],
    *,
    attempts: int = COMMIT_ATTEMPTS,
    backoff_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run `commit`, again (up to `attempts` in all) when it fails with a Delta commit conflict.

    Only for commits that are idempotent from a fresh snapshot (a range or whole-table
    overwrite): a retry re-reads the table's latest version. Other errors pass through at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            commit()
            return
        except Exception as exc:
            name = delta_conflict(exc)
            if name is None:
                raise
            if attempt == attempts:
                raise WriteConflict(
                    f"table {table}: the Delta commit conflicted with another writer ({name}) on all "
                    f"{attempts} attempts; nothing of this run was published. Something writes this table "
                    "without tilewise's lock (another tool or a host that does not share the warehouse's "
                    "_locks folder): stop it or wait for it, then re-run."
                ) from exc
            log.warning("table %s: Delta commit conflict (%s), attempt %d of %d; retrying", table, name, attempt, attempts)
            sleep(backoff_s * attempt)


def _one_file_per_partition(df: DataFrame, partition_by: list[str]) -> DataFrame:
    """A nightly write adds one file per touched partition, not one per task: no small-file pile-up."""
    return df.repartition(*[f"`{c}`" for c in partition_by]) if partition_by else df


def stage(spark: SparkSession, folder: Path, df: DataFrame, partition_by: list[str] = ()) -> DataFrame:  # type: ignore[assignment]
    """Materialise `df` as Parquet in a run's folder and return it read back.

    Staged data is what gets validated and then published, so the published rows are exactly
    the validated ones; when validation fails, it stays in the run folder as the rejected output.
    """
    if folder.exists():
        shutil.rmtree(folder)
    writer = df.write.mode("error")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(str(folder))
    read = spark.read.schema(df.schema).parquet(str(folder))
    return read.select(*[f"`{c}`" for c in df.columns])


def _as_date(value: object) -> date:
    """A partition value as deltalake returns it (a date, or its ISO text)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))
