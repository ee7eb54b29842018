"""Every read and write of an output table. Every table is Delta Lake, written one of three ways:

- by the engine (Sail natively, classic Spark with the delta-spark jars): a range is replaced with
  `replaceWhere`. Sail neither checks that written rows match the predicate nor keeps rows where
  it is NULL, so we always filter what we write to the predicate ourselves and only put NOT NULL
  columns in predicates.
- by classic Spark without the delta-spark jars (`deltars.py`): Spark writes the Parquet files,
  the driver commits them as a Delta version with the `deltalake` package (delta-rs).
- by the driver, from staged files (`replace_partitions`): a range of whole partitions (a nightly
  run's days) is published as the very files that were staged and validated, in one delta-rs
  commit, on Sail and with delta-rs (delta-spark keeps its own commits).

Every way, each commit carries the run id in its commitInfo (`userMetadata`), so a table's
`_delta_log` leads back to the run manifests in `_runs/`. Versions and history are read
engine-independently with the `deltalake` package.

Each table's lineage (`defs.lineage`) lives beside it in `_tilewise_lineage.json`. It cannot be in
the same commit, so a write that changes it records the new one as pending first, in force once a
commit lands after it (see `stored_lineage`).

All writes hold the table's lock (`locks.py`), because Sail detects no write conflicts. On
delta-spark and delta-rs a writer that bypasses the lock (another tool, a host without the shared
lock folder) can still make a commit conflict: the commit is retried a few times from a fresh
snapshot (a range overwrite is idempotent), then the run fails with `WriteConflict` (exit 3,
retryable).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from datetime import date
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from spark_jobs.defs.lineage import Lineage, changes, fingerprint
from spark_jobs.errors import InputDataError
from spark_jobs.storage import deltars
from spark_jobs.storage.locks import TableBusy, table_lock
from spark_jobs.storage.sources import is_connect

log = logging.getLogger(__name__)

ENGINE_WRITER = "engine"  # Sail, or classic Spark with delta-spark
DELTA_RS_WRITER = "delta-rs"  # classic Spark writes files, the deltalake package commits them
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
# delta-rs (`deltars.py` commits with no automatic retry): any commit after its snapshot.
DELTA_RS_CONFLICTS = frozenset({"CommitFailedError"})
_JAVA_CONFLICT = re.compile(r"io\.delta\.exceptions\.(\w+)")
COMMIT_ATTEMPTS = 3


class WriteConflict(TableBusy):
    """A commit conflicted with a writer that does not take tilewise's table lock (exit 3, retryable)."""


@dataclass(frozen=True)
class WholePartitions:
    """The partitions of a table whose `fixed` partition columns have these values and whose
    date partition column `column` is in [first, last]: replaced whole, every row of them."""

    column: str
    first: date
    last: date
    fixed: tuple[tuple[str, int], ...] = ()

    def predicate(self) -> str:
        fixed = "".join(f"{c} = {v} AND " for c, v in self.fixed)
        return f"({fixed}{self.column} >= DATE'{self.first}' AND {self.column} <= DATE'{self.last}')"

    def holds(self, values: Mapping[str, str | None]) -> bool:
        """Whether a partition, given by its values as Delta logs them (text), is one of these."""
        if any(values.get(c) != str(v) for c, v in self.fixed):
            return False
        try:
            return self.first <= date.fromisoformat(values.get(self.column) or "") <= self.last
        except ValueError:
            return False


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    rows: int | None = None


class Warehouse:
    """Delta tables under one root, for one session.

    `writer` is how commits are made (`ENGINE_WRITER` or `DELTA_RS_WRITER`); `run_id`, when set,
    is recorded in every commit's commitInfo as `userMetadata`.
    """

    def __init__(
        self, spark: SparkSession, root: Path, writer: str = ENGINE_WRITER, *, lock_timeout_s: float = 3600.0,
        run_id: str | None = None,
    ):
        if writer not in (ENGINE_WRITER, DELTA_RS_WRITER):
            raise ValueError(f"unknown Delta writer {writer!r}")
        self.spark = spark
        self.root = root
        self.writer = writer
        self.lock_timeout_s = lock_timeout_s
        self.run_id = run_id

    # -- paths and metadata ------------------------------------------------------------------
    def path(self, table: str) -> Path:
        return self.root / table

    def exists(self, table: str) -> bool:
        return self.version(table) is not None

    def version(self, table: str) -> int | None:
        """Latest committed version, or None when the table does not exist."""
        return table_version(self.path(table))

    # -- reads -------------------------------------------------------------------------------
    def read(self, table: str, version: int | None = None) -> DataFrame:
        path = self.path(table)
        if self.version(table) is None:
            raise InputDataError(f"table {table} does not exist under {self.root} (run the job that builds it first)")
        if self.writer == DELTA_RS_WRITER:
            return deltars.read(self.spark, path, version)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(str(path))

    def partition_bytes(self, table: str, version: int, column: str, lo: date, hi: date) -> int:
        """Bytes of the data files of `version` whose partition `column` is in [lo, hi]: what a
        read pruned to those dates scans (sizes its partitions without touching the data)."""
        from deltalake import DeltaTable

        actions = pa.table(DeltaTable(str(self.path(table)), version=version).get_add_actions(flatten=True))
        if f"partition.{column}" not in actions.column_names:
            return sum(actions.column("size_bytes").to_pylist())
        rows = zip(actions.column("size_bytes").to_pylist(), actions.column(f"partition.{column}").to_pylist())
        return sum(size for size, d in rows if d is not None and lo <= _as_date(d) <= hi)

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
                self._lineage_pending(table, lineage, stored_lineage(self.path(table), settle=True))
                result = self.overwrite(table, data, partition_by)
                self._record_lineage(table, lineage)
            return result
        with self.lock(table):
            self._lineage_pending(table, lineage, self.check_lineage(table, lineage, settle=True))

            retry_conflicts(table, lambda: self._commit_range(table, data, predicate, partition_by))
            self._record_lineage(table, lineage)
            version = self.version(table)
        assert version is not None
        return WriteResult(table, version)

    def replace_partitions(
        self,
        table: str,
        staged: DataFrame,
        folders: Sequence[Path],
        parts: Sequence[WholePartitions],
        partition_by: list[str],
        *,
        lineage: Lineage | None = None,
        rows: int | None = None,
    ) -> WriteResult:
        """`replace_range` for a range of whole partitions, publishing the files staged for it.

        `staged` is read from `folders`, where `stage(..., partition_by)` wrote it in the table's
        layout; `parts` are the partitions replaced (also those with no staged rows: they end up
        empty). On Sail and with delta-rs, the staged files become the table's as they are, in one
        commit that also removes the replaced partitions' files (`deltars.publish_files`): no row is
        read or written again. Where that cannot be done (delta-spark, a new table, files that do
        not fit the table), the rows are written through `replace_range`'s path. `rows`, when the
        caller counted the staged rows, is checked against the files' row counts before the commit.
        """
        predicate = " OR ".join(p.predicate() for p in parts)
        if not self.commits_files:
            return self.replace_range(table, staged, predicate, partition_by, lineage=lineage)
        with self.lock(table):
            self._lineage_pending(table, lineage, self.check_lineage(table, lineage, settle=True))

            def commit() -> None:
                try:
                    deltars.publish_files(self.path(table), folders, staged.schema, partition_by,
                                          lambda values: any(p.holds(values) for p in parts), run_id=self.run_id,
                                          rows=rows)
                except deltars.CannotPublishFiles as why:
                    log.info("table %s: staged files written again by the engine: %s", table, why)
                    self._commit_range(table, _one_file_per_partition(staged.filter(predicate), partition_by),
                                       predicate, partition_by)

            retry_conflicts(table, commit)
            self._record_lineage(table, lineage)
            version = self.version(table)
        assert version is not None
        return WriteResult(table, version)

    def overwrite(self, table: str, df: DataFrame, partition_by: list[str]) -> WriteResult:
        """Replace the whole table with `df` (a new version; history is kept)."""
        with self.lock(table):
            if self.writer == DELTA_RS_WRITER:
                retry_conflicts(table, lambda: deltars.replace(
                    self.spark, self.root, self.path(table), df, partition_by, predicate=None, run_id=self.run_id))
            else:
                writer = self._engine_writer(df).mode("overwrite").option("overwriteSchema", "true")
                retry_conflicts(table, lambda: writer.partitionBy(*partition_by).save(str(self.path(table))))
            version = self.version(table)
        assert version is not None
        return WriteResult(table, version)

    # -- internals ---------------------------------------------------------------------------
    @property
    def commits_files(self) -> bool:
        """Whether this warehouse commits staged files itself: with delta-rs, and on Sail (the
        one Spark Connect engine), whose Delta writes take no option tilewise needs here."""
        return self.writer == DELTA_RS_WRITER or is_connect(self.spark)

    def _commit_range(self, table: str, data: DataFrame, predicate: str, partition_by: list[str]) -> None:
        """Commit `data` (already filtered to `predicate`) as the rows of `table` matching it.
        Re-checks the table on each attempt: it may have appeared."""
        self.check_schema(table, data)
        exists = self.version(table) is not None
        if self.writer == DELTA_RS_WRITER:
            deltars.replace(self.spark, self.root, self.path(table), data, partition_by,
                            predicate=predicate if exists else None, run_id=self.run_id)
            return
        writer = self._engine_writer(data).mode("overwrite").partitionBy(*partition_by)
        if exists:
            writer = writer.option("replaceWhere", predicate)
        writer.save(str(self.path(table)))

    def _engine_writer(self, df: DataFrame):  # type: ignore[no-untyped-def]
        writer = df.write.format("delta")
        return writer.option("userMetadata", self.run_id) if self.run_id else writer

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
        stored = stored_lineage(self.path(table), settle=settle)
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


_COMMIT_FILE = re.compile(r"(\d{20})\.json")


def table_version(path: Path) -> int | None:
    """Latest committed version of the Delta table at `path`, or None when there is none.

    Version v is committed once its commit file `_delta_log/<v, 20 digits>.json` exists (every
    Delta writer creates it atomically, and only if absent), and log clean-up removes only files
    older than a checkpoint, never the newest commit. So the latest version is the highest such
    file: one directory listing, where opening the table with delta-rs replays its log (15-25 ms
    for a 90-day block table, and a run asks a dozen times).
    """
    try:
        names = os.listdir(path / "_delta_log")
    except (FileNotFoundError, NotADirectoryError):
        return None
    versions = [int(m.group(1)) for name in names if (m := _COMMIT_FILE.fullmatch(name))]
    return max(versions) if versions else None


def stored_lineage(path: Path, *, settle: bool = False) -> Lineage | None:
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
    current = table_version(path)
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
        # delta-rs raises CommitFailedError for a conflict and for a commit the table refuses
        # (an append-only table): only the first is worth a retry.
        if cls.__name__ in DELTA_RS_CONFLICTS and _from_delta_rs(cls) and "append-only" not in str(exc):
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
    With `partition_by` the files are in a table's layout, one per partition, ready for
    `Warehouse.replace_partitions` to publish as they are.
    """
    if folder.exists():
        shutil.rmtree(folder)
    writer = _one_file_per_partition(df, list(partition_by)).write.mode("error")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(str(folder))
    read = spark.read.schema(df.schema).parquet(str(folder))
    return read.select(*[f"`{c}`" for c in df.columns])


def staged_rows(folder: Path) -> int:
    """The rows `stage` wrote under `folder`, from the files' footers (no engine query)."""
    import pyarrow.parquet as pq

    return sum(
        pq.read_metadata(f).num_rows for f in folder.rglob("*.parquet")
        if not any(part.startswith((".", "_")) for part in f.relative_to(folder).parts)
    )


def stage_rows(spark: SparkSession, folder: Path, rows: list[dict], schema: StructType) -> DataFrame:
    """Stage a few rows computed on the driver, like `stage`: written with pyarrow, read back by the
    engine. (`createDataFrame` from Python rows runs Python workers on classic Spark: seconds.)"""
    import pyarrow.parquet as pq

    arrow = {"date": pa.date32(), "string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "double": pa.float64()}
    fields = [pa.field(f.name, arrow[f.dataType.simpleString()], nullable=f.nullable) for f in schema.fields]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), folder / "part-00000.parquet")
    return spark.read.schema(schema).parquet(str(folder))


def _as_date(value: object) -> date:
    """A partition value as deltalake returns it (a date, or its ISO text)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _from_delta_rs(cls: type) -> bool:
    from deltalake.exceptions import DeltaError

    return issubclass(cls, DeltaError)
