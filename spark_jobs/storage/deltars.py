"""Delta commits made by the driver with delta-rs (the `deltalake` package), from files the engine wrote.

Two uses. Classic Spark without the delta-spark jars commits every write this way (`replace`).
And on every engine but delta-spark, a nightly run publishes the files it staged and validated,
as they are (`publish_files`): one commit removes the replaced partitions' files and adds the
staged ones, hard-linked into the table, where an engine write would read and write them again.

Classic Spark writes plain Parquet files (microsecond UTC timestamps) into a scratch folder of the
warehouse; the driver moves them into the table's partition folders and commits them as one Delta
version with the `deltalake` package (delta-rs), with file statistics taken from the Parquet
footers so readers can skip files. Nothing is visible before that commit: a killed write leaves
only files no version names, which `tilewise vacuum` removes. A range overwrite rewrites only the
files holding rows in the range (as Delta's `replaceWhere` does): their rows outside the range
are written again beside the new rows, and the commit removes the old files.

Every commit is made from the snapshot the write read, with no automatic retry: if another writer
committed in between (one that bypasses tilewise's table lock), delta-rs raises
`CommitFailedError` and nothing is published (`tables.retry_conflicts` redoes the write from a
fresh snapshot, then reports it). Reads go through the files of one version:
`spark.read.schema(s).option("basePath", root).parquet(*files)`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from datetime import date, datetime, timezone
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

# Spark's folder name for a NULL partition value.
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
SCRATCH = Path("_tmp") / "delta-writes"  # under the warehouse: same filesystem, so files move by rename
_FILE = "_tw_file"
log = logging.getLogger(__name__)


def read(spark: SparkSession, path: Path, version: int | None = None, files: list[str] | None = None) -> DataFrame:
    """The rows of one version of the Delta table at `path` (or only of its `files`, as `file_uris` names them)."""
    from deltalake import DeltaTable

    table = DeltaTable(str(path), version=version)
    schema = spark_schema(table)
    uris = table.file_uris() if files is None else files
    if not uris:
        return spark.createDataFrame([], schema)
    df = spark.read.schema(schema).option("basePath", str(path)).parquet(*uris)
    return df.select(*[f"`{c}`" for c in schema.fieldNames()])


def spark_schema(table: Any) -> StructType:
    """A Delta table's schema as Spark's (Delta's schema string is Spark's JSON)."""
    return StructType.fromJson(json.loads(table.schema().to_json()))


def replace(
    spark: SparkSession,
    root: Path,
    path: Path,
    data: DataFrame,
    partition_by: list[str],
    *,
    predicate: str | None,
    run_id: str | None,
) -> None:
    """Commit `data` to the table at `path` as one new version.

    With `predicate`, the rows of the table matching it are replaced (`data` must hold only rows
    matching it); without, the whole table is replaced, schema included, or created.
    """
    from deltalake import DeltaTable, Schema
    from deltalake.transaction import RemoveAction, create_table_with_add_actions

    table = DeltaTable(str(path)) if DeltaTable.is_deltatable(str(path)) else None
    removes: list[RemoveAction] = []
    frame = data
    if table is not None and predicate is not None:
        current = read(spark, path, table.version())
        hit = current.filter(predicate).select(F.input_file_name().alias(_FILE)).distinct().collect()
        by_file = _add_actions(table, path)
        files = sorted({_local(row[_FILE]) for row in hit})
        unknown = [f for f in files if f not in by_file]
        if unknown:
            raise RuntimeError(f"{path}: Spark read {unknown[0]}, which version {table.version()} does not name")
        touched = [(f, by_file[f]) for f in files]
        if touched:
            kept = read(spark, path, table.version(), [f for f, _ in touched])
            frame = data.unionByName(kept.filter(f"NOT coalesce(({predicate}), false)"))
        now = _now_ms()
        removes = [
            RemoveAction(unquote(a["path"]), True, now, a["size_bytes"], a["partition_values"]) for _, a in touched
        ]
    adds = write_files(spark, root, path, frame, partition_by)
    props, token = _commit_properties(run_id)
    read_version = table.version() if table is not None else -1
    try:
        if table is None:
            schema = Schema.from_json(frame.schema.json())
            create_table_with_add_actions(str(path), schema, adds, mode="error", partition_by=partition_by or None,
                                          commit_properties=props)
        elif predicate is None:
            schema = Schema.from_json(frame.schema.json())
            table.create_write_transaction(adds, mode="overwrite", schema=schema, partition_by=partition_by or None,
                                           commit_properties=props)
        else:
            table.create_write_transaction([*adds, *removes], mode="append", schema=table.schema(),
                                           partition_by=partition_by or None, commit_properties=props)
    except BaseException as exc:
        _after_failed_commit(path, read_version, token, adds, exc)


class CannotPublishFiles(Exception):
    """Staged files that `publish_files` cannot commit as they are (the reason is the message);
    nothing was changed, and the caller writes the rows through the engine instead."""


def publish_files(
    path: Path,
    staged: Sequence[Path],
    schema: StructType,
    partition_by: list[str],
    replaced: Callable[[dict[str, str | None]], bool],
    *,
    run_id: str | None,
    rows: int | None = None,
) -> None:
    """Commit the Parquet files staged in the table's partition layout under the folders `staged`
    as one new version of the table at `path` that replaces whole partitions: it removes every
    file of the partitions whose values `replaced` accepts and adds the staged files, hard-linked
    (copied where links fail) into the table's folders under new names. No row is read or
    written again.

    `schema` is the staged rows' schema. Raises `CannotPublishFiles`, before touching anything,
    when the files cannot be published as they are: no such table, other partition columns or
    column types, a table protocol with writer features, a staged file in a partition not
    replaced, or NULLs in a column the table declares NOT NULL. The staged files stay where they
    are (a failed commit unlinks only the table's new names), so a retry can publish them again.
    With `rows` (the rows validated), staged files holding another number of rows are an error:
    nothing is published.
    """
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction, RemoveAction

    if not DeltaTable.is_deltatable(str(path)):
        raise CannotPublishFiles("the table does not exist yet")
    table = DeltaTable(str(path))
    protocol = table.protocol()
    if protocol.min_reader_version > 1 or protocol.min_writer_version > 2:
        raise CannotPublishFiles(f"table protocol {protocol.min_reader_version}/{protocol.min_writer_version}")
    settings = table.metadata().configuration or {}
    if str(settings.get("delta.appendOnly", "false")).lower() == "true":
        raise CannotPublishFiles("the table is append-only (delta.appendOnly)")
    if "delta.invariants" in table.schema().to_json():
        raise CannotPublishFiles("the table declares column invariants")
    if list(table.metadata().partition_columns) != list(partition_by):
        raise CannotPublishFiles(f"partitioned by {table.metadata().partition_columns}, not {partition_by}")
    have = spark_schema(table)
    if _types(have) != _types(schema):
        raise CannotPublishFiles("the staged columns' types differ from the table's")
    not_null = [f.name for f in have.fields if not f.nullable and f.name not in partition_by]
    files = []
    for folder in staged:
        for file in sorted(folder.rglob("*.parquet")):
            rel = file.relative_to(folder)
            if any(part.startswith((".", "_")) for part in rel.parts):
                continue
            values = _partition_values(rel, partition_by)
            if not replaced(values):
                raise CannotPublishFiles(f"staged file {rel} is in a partition the write does not replace")
            meta = pq.read_metadata(file)
            stats = file_stats(file, meta)
            nulls = json.loads(stats)["nullCount"]
            arrow = meta.schema.to_arrow_schema()
            required = {f.name for f in arrow if not f.nullable}
            if any(c not in required and nulls.get(c) != 0 for c in not_null):
                raise CannotPublishFiles(f"staged file {rel} may hold NULLs in a NOT NULL column")
            for field in have.fields:
                inner = _nested_nulls(field.dataType, arrow.field(field.name).type, field.name) \
                    if field.name in arrow.names else None
                if inner:
                    raise CannotPublishFiles(f"staged file {rel} may hold NULLs in {inner}, which the table declares NOT NULL")
            files.append((file, rel, values, stats))
    if rows is not None and sum(json.loads(f[3])["numRecords"] for f in files) != rows:
        found = sum(json.loads(f[3])["numRecords"] for f in files)
        raise RuntimeError(
            f"{path}: the staged files under {', '.join(map(str, staged))} hold {found:,} rows, not the "
            f"{rows:,} validated; nothing was published"
        )
    now = _now_ms()
    removes = [
        # The log's paths are URL-encoded; an action takes the plain path and encodes it itself.
        RemoveAction(unquote(a["path"]), True, now, a["size_bytes"], a["partition_values"])
        for a in _add_actions(table, path).values() if replaced(a["partition_values"])
    ]
    if not files and not removes:
        return  # nothing to add or remove: no version (as Sail's own writes)
    read_version = table.version()
    props, token = _commit_properties(run_id)
    adds = []
    try:
        for file, rel, values, stats in files:
            dest = path / rel.parent / f"part-{uuid.uuid4().hex}{''.join(rel.suffixes)}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(file, dest)
            st = dest.stat()
            adds.append(AddAction((rel.parent / dest.name).as_posix(), st.st_size, values, int(st.st_mtime * 1000), True, stats))
        table.create_write_transaction([*adds, *removes], mode="append", schema=table.schema(),
                                       partition_by=partition_by or None, commit_properties=props)
    except BaseException as exc:
        _after_failed_commit(path, read_version, token, adds, exc)


def _link_or_copy(file: Path, dest: Path) -> None:
    """`dest` as a hard link to `file`, or a copy where links fail; no partial `dest` is left."""
    try:
        os.link(file, dest)
    except OSError:  # another filesystem, or one without hard links
        try:
            shutil.copyfile(file, dest)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise


def _commit_properties(run_id: str | None) -> tuple[Any, str]:
    """A commit's properties (the run id as `userMetadata`, no automatic rebase) and a token that
    only this commit's commitInfo holds, by which `_after_failed_commit` recognises it."""
    from deltalake.transaction import CommitProperties

    token = uuid.uuid4().hex
    metadata = {"tilewiseCommit": token, **({"userMetadata": run_id} if run_id else {})}
    return CommitProperties(custom_metadata=metadata, max_commit_retries=0), token


def _after_failed_commit(path: Path, read_version: int, token: str, adds: Sequence[Any], exc: BaseException) -> None:
    """A commit call raised: if its commit never landed, unlink the files it would have added
    (nobody reads them) and re-raise. If it did land, the error came after it (a Ctrl-C, or delta-rs
    failing to write a checkpoint or clean up old log files): the files are the table's now and
    stay. The commit is then the outcome: a Ctrl-C is raised again, any other error is logged."""
    log_file = path / "_delta_log" / f"{read_version + 1:020d}.json"
    try:
        landed = token in log_file.read_text(encoding="utf-8")
    except OSError:
        landed = False
    if not landed:
        for add in adds:  # never named by a version: nobody reads them
            (path / add.path).unlink(missing_ok=True)
        raise exc
    if not isinstance(exc, Exception):
        raise exc
    log.warning("%s: version %d was committed and stands; a step after the commit failed: %s: %s",
                path, read_version + 1, type(exc).__name__, exc)


def _nested_nulls(want: Any, got: Any, where: str) -> str | None:
    """Where, inside a column of Spark type `want` (the table's), the Arrow type `got` (a staged
    file's) allows NULLs that `want` does not: an array element, struct field or map value.
    Parquet enforces a required field, so a file that declares one holds no NULLs there."""
    import pyarrow as pa
    from pyspark.sql.types import ArrayType, MapType

    if isinstance(want, ArrayType) and (pa.types.is_list(got) or pa.types.is_large_list(got)):
        if not want.containsNull and got.value_field.nullable:
            return f"the elements of {where}"
        return _nested_nulls(want.elementType, got.value_type, f"the elements of {where}")
    if isinstance(want, StructType) and pa.types.is_struct(got):
        for f in want.fields:
            i = got.get_field_index(f.name)
            if i < 0:
                continue
            if not f.nullable and got.field(i).nullable:
                return f"{where}.{f.name}"
            inner = _nested_nulls(f.dataType, got.field(i).type, f"{where}.{f.name}")
            if inner:
                return inner
        return None
    if isinstance(want, MapType) and pa.types.is_map(got):
        if not want.valueContainsNull and got.item_field.nullable:
            return f"the values of {where}"
        return _nested_nulls(want.valueType, got.item_type, f"the values of {where}")
    return None


def _types(schema: StructType) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in schema.fields}


def write_files(spark: SparkSession, root: Path, path: Path, df: DataFrame, partition_by: list[str]) -> list[Any]:
    """Write `df` as Parquet files into the table folder at `path`; their Delta add actions."""
    from deltalake.transaction import AddAction

    scratch = root / SCRATCH / uuid.uuid4().hex
    writer = df.write.mode("error")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(str(scratch))
    adds = []
    try:
        for file in sorted(scratch.rglob("*.parquet")):
            rel = file.relative_to(scratch)
            if any(part.startswith((".", "_")) for part in rel.parts):
                continue
            dest = path / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, dest)
            st = dest.stat()
            values = _partition_values(rel, partition_by)
            adds.append(AddAction(rel.as_posix(), st.st_size, values, int(st.st_mtime * 1000), True, file_stats(dest)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return adds


def file_stats(file: Path, meta: pq.FileMetaData | None = None) -> str:
    """Delta's `stats` of a Parquet file, from its footer (`meta`, when already read): row count
    and, per top-level column whose every row group has them, null count and min and max (these only
    when every row group holding values states them)."""
    meta = meta or pq.read_metadata(file)
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    top = {meta.schema.column(i).path: i for i in range(meta.num_columns) if "." not in meta.schema.column(i).path}
    for name, i in top.items():
        lo = hi = None
        count = 0
        complete = meta.num_row_groups > 0
        bounded = True  # every row group with values states their min and max
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            st = group.column(i).statistics
            if st is None or not st.has_null_count:
                complete = False
                break
            count += st.null_count
            if not st.has_min_max and st.null_count < group.num_rows:
                bounded = False  # e.g. writers leave out min/max of values over 4 KB
            if st.has_min_max:
                a, b = _stat_value(st.min), _stat_value(st.max)
                if a is None or b is None:
                    complete = False
                    break
                lo = a if lo is None or a < lo else lo
                hi = b if hi is None or b > hi else hi
        if not complete:
            continue
        nulls[name] = count
        if lo is not None and bounded:
            mins[name], maxs[name] = _json_value(lo), _json_value(hi)
    return json.dumps({"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls})


def _stat_value(v: Any) -> Any:
    """A footer statistic Delta can state exactly, else None (bytes, NaN, decimals, ...)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, datetime):
        if v.tzinfo is None:  # a timestamp without UTC adjustment: leave it to the reader
            return None
        return v.astimezone(timezone.utc)
    if isinstance(v, (int, float, str, date)):
        return v
    return None


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, date):
        return v.isoformat()
    return v


def _partition_values(rel: Path, partition_by: list[str]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for part in rel.parts[:-1]:
        key, _, value = part.partition("=")
        key = unquote(key)
        if key in partition_by:
            values[key] = None if value == _NULL_PARTITION else unquote(value)
    missing = set(partition_by) - set(values)
    if missing:
        raise RuntimeError(f"{rel}: Spark wrote no folder for partition column(s) {sorted(missing)}")
    return values


def _add_actions(table: Any, path: Path) -> dict[str, dict[str, Any]]:
    """The current add actions by local file path: path as logged, size and partition values as text."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=False))
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    parts = actions.column("partition").to_pylist() if "partition" in actions.column_names else [None] * len(paths)
    out = {}
    for p, s, v in zip(paths, sizes, parts):
        local = _local(p) if "://" in p or p.startswith("/") else _local(str(path / unquote(p)))
        out[local] = {"path": p, "size_bytes": s, "partition_values": {k: _partition_text(x) for k, x in (v or {}).items()}}
    return out


def _partition_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _local(uri: str) -> str:
    """A file URI or path as a normalised local path, to match Spark's `input_file_name` with delta-rs' URIs."""
    parsed = urlparse(uri)
    raw = parsed.path if parsed.scheme in ("file", "") else uri
    return os.path.realpath(unquote(raw))


def _now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)
