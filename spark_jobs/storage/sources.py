"""Reading sources: files (parquet, delta, csv, json) and SQL views over other sources.

A nightly run must read only the day it computes (plus lateness), not the whole history. For
Parquet sources on a local filesystem we prune files ourselves from their footers' min/max
statistics of the timestamp column before Spark sees them, and report how many files and bytes
were read; Delta sources get the same from Delta's own file statistics when filtered.

Bad files are refused here, before an engine reads them, with the source and the file named
(InputDataError, exit 2): an unreadable footer, a column the definitions use missing from a file,
a column whose type differs between the files of a source (schema drift: Spark reads such files
into silent nulls, Sail refuses them with an error naming neither). Corruption the footer cannot
show (a damaged data page) surfaces when the engine executes: `reading` maps that failure to the
source and, when it can find it, the file.

Timestamps come in every unit Python writers use. pandas writes nanoseconds by default, which
neither engine reads on its own (Sail refuses the type, classic Spark reads it only as a number),
so files with nanosecond columns are read with an explicit schema derived from their footers and
every such column becomes a microsecond UTC timestamp, truncated toward zero on both engines
(toward the past from 1970 on). Naive timestamps are taken as UTC.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, SparkSession

from spark_jobs.defs.models import ColumnsUsed, Source, SourceRead
from spark_jobs.errors import InputDataError, TilewiseError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.types import StructType


@dataclass
class InputStats:
    """What a run read from one source."""

    source: str
    files_total: int | None = None
    files_read: int | None = None
    bytes_read: int | None = None
    paths: list[str] = field(default_factory=list)  # the local Parquet files handed to the engine
    root: str | None = None  # the source's path
    # Nanosecond columns read (truncated to microseconds), and per column the values whose
    # truncation moved them onto a block boundary from before it (possible only before 1970).
    nanosecond_columns: list[str] = field(default_factory=list)
    truncation_moved_block: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        out: dict = {
            "files_total": self.files_total,
            "files_read": self.files_read,
            "bytes_read": self.bytes_read,
        }
        if self.nanosecond_columns:
            out["nanosecond_columns"] = sorted(self.nanosecond_columns)
            out["truncation_moved_block"] = dict(sorted(self.truncation_moved_block.items()))
        return out


@dataclass(frozen=True)
class TimeRange:
    """[lo, hi) in UTC; None means unbounded."""

    lo: datetime | None = None
    hi: datetime | None = None


def read_events(
    spark: SparkSession, source: SourceRead, rng: TimeRange, stats: dict[str, InputStats], *, block_s: int = 1
) -> DataFrame:
    """The rows of a source with their event time as `_tw_ts` (`transforms.events.with_event_time`),
    restricted to the timestamp in `rng` where files allow pruning.

    The caller still filters rows on the time; pruning only skips whole files. `stats` gathers what
    was read, per source. `block_s` is the block size whose boundaries a truncated nanosecond
    timestamp is checked against.
    """
    from spark_jobs.transforms.events import with_event_time

    src = source.source
    return with_event_time(_read_rows(spark, source, rng, stats, block_s), src.timestamp, src.name)


def _read_rows(spark: SparkSession, source: SourceRead, rng: TimeRange, stats: dict[str, InputStats], block_s: int) -> DataFrame:
    src = source.source
    if src.sql is not None:
        for dep in source.reads:
            # Prune a dependency's files only when the view keeps its time column as is.
            dep_rng = rng if dep.source.timestamp == src.timestamp else TimeRange()
            _read_rows(spark, dep, dep_rng, stats, block_s).createOrReplaceTempView(dep.name)
        return spark.sql(src.sql)
    return _read_files(spark, source, rng, stats, block_s)


def truncation_notes(stats: dict[str, InputStats]) -> list[str]:
    """One line per source column whose truncation to microseconds moved values across a block boundary."""
    return [
        f"source {st.source}: {n:,} timestamps of column {col} moved into the next block when truncated "
        "to microseconds (nanosecond values before 1970)"
        for st in stats.values()
        for col, n in sorted(st.truncation_moved_block.items())
        if n
    ]


def _read_files(spark: SparkSession, source: SourceRead, rng: TimeRange, stats: dict[str, InputStats], block_s: int) -> DataFrame:
    src = source.source
    assert src.path is not None
    path = src.path
    st = stats.setdefault(src.name, InputStats(src.name, root=path))
    local = "://" not in path
    if local and not Path(path).exists():
        raise InputDataError(f"source {src.name} ({src.file}): path {path} does not exist")
    if src.format == "delta":
        return spark.read.format("delta").load(path)
    if src.format == "parquet" and local:
        footers, chosen = _select(source, rng)
        files = list(footers)
        st.files_total = (st.files_total or 0) + len(files)
        st.files_read = (st.files_read or 0) + len(chosen)
        st.bytes_read = (st.bytes_read or 0) + sum(f.stat().st_size for f in chosen)
        st.paths.extend(str(f) for f in chosen if str(f) not in st.paths)
        if not chosen:
            # Keep the schema: read one file and keep no rows.
            return read_parquet(spark, src.name, {files[0]: footers[files[0]]}, st, block_s).limit(0)
        return read_parquet(spark, src.name, {f: footers[f] for f in chosen}, st, block_s)
    reader = spark.read.format(src.format)
    if src.format == "csv":
        reader = reader.option("header", "true").option("inferSchema", "true")
    return reader.load(path)


def latest_time(spark: SparkSession, source: SourceRead, now: datetime) -> tuple[datetime | None, int]:
    """(latest event time not after `now`, events after `now`) in the whole source.

    The latest time says how far the source's data is known to be complete (label maturity), so
    an event stamped in the future (a producer's broken clock, year 9999) must not count: it would
    make every label window look closed. Local Parquet answers from file footers and reads only
    the files that may hold events after `now`; anything else takes one aggregate query.
    """
    from pyspark.sql import functions as F

    from spark_jobs.transforms.events import TS

    src = source.source
    utc_now = _as_utc(now)
    assert utc_now is not None
    latest: datetime | None = None
    rng = TimeRange()
    if src.sql is None and src.format == "parquet" and src.path and Path(src.path).exists() and "://" not in src.path:
        bounds = [_time_bounds(meta, src.timestamp) for meta in _footers(src).values()]
        if all(b is not None for b in bounds):
            past = [b[1] for b in bounds if b and b[1] is not None and b[1] <= utc_now]
            latest = max(past, default=None)
            if not any(b and b[1] is not None and b[1] > utc_now for b in bounds):
                return (latest.replace(tzinfo=None) if latest else None), 0
            rng = TimeRange(lo=now)  # only the files that may hold events after now
    stats: dict[str, InputStats] = {}
    with reading(stats):
        df = read_events(spark, source, rng, stats)
        row = df.agg(
            F.max(F.when(F.col(TS) <= F.lit(now), F.col(TS))).alias("latest"),
            F.sum(F.when(F.col(TS) > F.lit(now), 1).otherwise(0)).alias("future"),
        ).collect()[0]
    seen = _as_utc(row["latest"])
    if seen is not None and (latest is None or seen > latest):
        latest = seen
    return (latest.replace(tzinfo=None) if latest else None), int(row["future"] or 0)


def source_files(source: SourceRead, rng: TimeRange) -> list[tuple[str, int, int]] | None:
    """(path, size, mtime in ns) of every file behind source `name` that may hold events of `rng`
    (through its views' dependencies): what a resumed backfill compares with a previous run.

    Local Parquet is pruned by footer statistics as `read_events` prunes; other local formats list
    every file under the source's path. None when a file system cannot be listed (a URL).
    """
    src = source.source
    if src.sql is not None:
        found: list[tuple[str, int, int]] = []
        for dep in source.reads:
            dep_rng = rng if dep.source.timestamp == src.timestamp else TimeRange()
            files = source_files(dep, dep_rng)
            if files is None:
                return None
            found.extend(files)
        return sorted(set(found))
    assert src.path is not None
    if "://" in src.path or not Path(src.path).exists():
        return None
    if src.format == "parquet":
        paths = select_files(source, rng)[1]
    else:
        root = Path(src.path)
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = []
    for f in paths:
        st = f.stat()
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return sorted(out)


# -- engine failures while reading ------------------------------------------------------------

# Engine messages of a failed file read: Sail ("Parquet argument error: External: snappy: corrupt
# input ..."), classic Spark ("[FAILED_READ_FILE...] Encountered error while reading file ...").
_READ_FAILURE = re.compile(r"parquet|FAILED_READ_FILE|corrupt|decompress|uncompress|decod", re.IGNORECASE)
# An engine that has no type for a column: Sail ("cast Float16 to Spark data type"), classic
# Spark ("[PARQUET_TYPE_ILLEGAL] Illegal Parquet type: INT64 (TIME(NANOS,true))").
_TYPE_FAILURE = re.compile(r"cast (?P<sail>.+?) to Spark data type|Illegal Parquet type: (?P<spark>[^.]+?)(?:\. |\.?$)", re.MULTILINE)


@contextmanager
def reading(stats: dict[str, InputStats]) -> Iterator[None]:
    """Turn an engine failure on the files of `stats` into an InputDataError naming source and file.

    A footer check cannot see a damaged data page; the engine fails on it at execution, often
    without naming the file (Sail). The file is then found in the engine's message, or by reading
    the local Parquet files of the run back with pyarrow (only on this failure path).
    """
    try:
        yield
    except TilewiseError:
        raise
    except Exception as exc:
        problem = _read_failure(exc, stats)
        if problem is None:
            raise
        raise InputDataError(problem) from exc


def _read_failure(exc: Exception, stats: dict[str, InputStats]) -> str | None:
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    text = str(exc)
    # The engine's one-line reason (a raw Py4JJavaError starts with "An error occurred while calling").
    lines = [line.strip().lstrip(": ") for line in text.splitlines() if line.strip() and not line.startswith("\t")]
    lines = [line for line in lines if not line.startswith("An error occurred while calling")]
    said = (lines[0] if lines else type(exc).__name__)[:300]
    if not isinstance(exc, (PySparkException, Py4JJavaError)):
        return None
    typed = _TYPE_FAILURE.search(text)
    if typed is not None:
        return _type_failure(typed.group("sail") or typed.group("spark"), stats, said)
    if not _READ_FAILURE.search(text):
        return None
    for st in stats.values():
        for path in st.paths:
            if path in text:
                return f"source {st.source}: file {path}: the engine cannot read it: {said}"
    for st in stats.values():
        for path in st.paths:
            problem = _unreadable(Path(path))
            if problem:
                return f"source {st.source}: file {path}: {problem} (the engine said: {said})"
    # Other formats (Delta, CSV, JSON) cannot be checked here: trust the engine's message.
    for st in stats.values():
        if not st.paths and st.root and st.root in text:
            return f"source {st.source}: the engine cannot read its data under {st.root}: {said}"
    return None


def _type_failure(engine_type: str, stats: dict[str, InputStats], said: str) -> str | None:
    """The source, file and column of a type the engine has none for, from the files' footers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for st in stats.values():
        for path in st.paths:
            try:
                schema = pq.read_schema(path)
            except (OSError, pa.ArrowException):
                continue
            for fld in schema:
                if _engine_names(fld.type) & {engine_type.strip(), engine_type.strip().upper()}:
                    return f"source {st.source}: file {path}: column {fld.name} ({fld.type}): the engine cannot read this type: {said}"
    if not stats:
        return None
    names = ", ".join(sorted(stats))
    return f"source {names}: a column has a type the engine cannot read ({engine_type}): {said}"


_UNITS = {"s": "Second", "ms": "Millisecond", "us": "Microsecond", "ns": "Nanosecond"}
_PARQUET_UNITS = {"ms": "MILLIS", "us": "MICROS", "ns": "NANOS"}


def _engine_names(dtype: pa.DataType) -> set[str]:
    """How Sail (Arrow's Rust names) and classic Spark (Parquet's names) spell `dtype` in an error."""
    import pyarrow as pa

    names = {str(dtype)}
    if pa.types.is_float16(dtype):
        names.add("Float16")
    elif pa.types.is_timestamp(dtype):
        tz = f'Some("{dtype.tz}")' if dtype.tz else "None"
        names.add(f"Timestamp({_UNITS[dtype.unit]}, {tz})")
        if dtype.unit in _PARQUET_UNITS:
            names.add(f"INT64 (TIMESTAMP({_PARQUET_UNITS[dtype.unit]},{'true' if dtype.tz else 'false'}))")
    elif pa.types.is_duration(dtype):
        names.add(f"Duration({_UNITS[dtype.unit]})")
    elif pa.types.is_time32(dtype) or pa.types.is_time64(dtype):
        names.add(f"Time{dtype.bit_width}({_UNITS[dtype.unit]})")
        if dtype.unit in _PARQUET_UNITS:
            physical = "INT32" if dtype.bit_width == 32 else "INT64"
            names.add(f"{physical} (TIME({_PARQUET_UNITS[dtype.unit]},true))")
            names.add(f"{physical} (TIME({_PARQUET_UNITS[dtype.unit]},false))")
    for child in _children(dtype):
        names |= _engine_names(child)
    return names


def _unreadable(file: Path) -> str | None:
    """Why pyarrow cannot read every page of `file`, or None when it can."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        for _ in pq.ParquetFile(file).iter_batches(batch_size=65536):
            pass
    except (OSError, pa.ArrowException) as exc:  # what a damaged page raises depends on the codec
        return f"damaged data ({exc})"
    return None


# -- files, footers and schemas ---------------------------------------------------------------


def _parquet_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in p.parts))


def select_files(source: SourceRead, rng: TimeRange) -> tuple[list[Path], list[Path]]:
    """(every data file of a local Parquet source, those that may hold events in `rng`).

    Each file read is checked first: a readable footer, every column the definitions use, and
    the same type per column as the source's other files.
    """
    footers, chosen = _select(source, rng)
    return list(footers), chosen


def _select(source: SourceRead, rng: TimeRange) -> tuple[dict[Path, pq.FileMetaData], list[Path]]:
    src = source.source
    footers = _footers(src)
    chosen = [f for f, meta in footers.items() if _may_overlap(meta, src.timestamp, rng)]
    _check_schemas(src, footers, chosen, source.columns)
    return footers, chosen


# -- nanosecond timestamps --------------------------------------------------------------------


def nanosecond_columns(schema: pa.Schema) -> list[str]:
    """Top-level columns holding nanosecond timestamps (pandas' default unit), in schema order."""
    import pyarrow as pa

    return [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]


def assert_readable_types(source: str, file: Path, schema: pa.Schema) -> None:
    """Refuse, naming the column, a type the engines cannot read from Parquet.

    Sail refuses half floats, nanosecond durations and times, and nanoseconds inside a struct,
    list or map ("cast Float16 to Spark data type", naming no file nor column); classic Spark reads
    some of them as plain numbers. Either way the engines would not agree, so stop before them.
    """
    for fld in schema:
        if fld.name in nanosecond_columns(schema):
            continue
        if _has_nested_nanoseconds(fld.type):
            raise InputDataError(
                f"source {source}: file {file}: column {fld.name} ({fld.type}) holds nanosecond timestamps inside "
                "a nested type, which the engines cannot read; write it with microseconds "
                "(pandas: df.to_parquet(..., coerce_timestamps='us', allow_truncated_timestamps=True))"
            )
        bad = _unreadable_type(fld.type)
        if bad is not None:
            raise InputDataError(
                f"source {source}: file {file}: column {fld.name} has type {fld.type}, which the engines cannot "
                f"read ({bad}); convert it before export (e.g. to float32, or to a number of microseconds)"
            )


def _unreadable_type(dtype: pa.DataType) -> str | None:
    import pyarrow as pa

    if pa.types.is_float16(dtype):
        return "half float"
    if (pa.types.is_duration(dtype) or pa.types.is_time64(dtype)) and dtype.unit == "ns":
        return "nanosecond unit"
    for child in _children(dtype):
        bad = _unreadable_type(child)
        if bad is not None:
            return bad
    return None


def _children(dtype: pa.DataType) -> list[pa.DataType]:
    import pyarrow as pa

    if pa.types.is_struct(dtype):
        return [dtype.field(i).type for i in range(dtype.num_fields)]
    if pa.types.is_map(dtype):
        return [dtype.key_type, dtype.item_type]
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        return [dtype.value_type]
    return []


def _has_nested_nanoseconds(dtype: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_timestamp(dtype):
        return dtype.unit == "ns"
    return any(_has_nested_nanoseconds(child) for child in _children(dtype))


def spark_schema(source: str, files: dict[Path, pa.Schema], classic: bool) -> StructType:
    """The Spark schema to read `files` with: every column of any of them, in first-seen order.

    A nanosecond timestamp column is TIMESTAMP on Sail (which truncates it to microseconds) and
    BIGINT on classic Spark (which reads it only as a number; `from_nanoseconds` converts it).
    Other columns get the type the engine would infer; a type it has none for is an error naming
    the column and the file.
    """
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import LongType, StructField, StructType, TimestampType

    fields: dict[str, StructField] = {}
    for f, schema in files.items():
        for fld in schema:
            if fld.name.lower() in fields:
                continue
            if pa.types.is_timestamp(fld.type) and fld.type.unit == "ns":
                dtype = LongType() if classic else TimestampType()
            else:
                try:
                    dtype = from_arrow_type(fld.type)
                except (TypeError, ValueError) as exc:  # pyspark's own PySparkTypeError is a TypeError
                    raise InputDataError(
                        f"source {source}: file {f}: column {fld.name} has type {fld.type}, which the engines "
                        f"cannot read ({exc})"
                    ) from None
            fields[fld.name.lower()] = StructField(fld.name, dtype, nullable=True)
    return StructType(list(fields.values()))


def from_nanoseconds(column: str) -> Column:
    """Classic Spark: BIGINT nanoseconds -> TIMESTAMP, truncated toward zero like Sail's cast."""
    from pyspark.sql import functions as F

    return F.expr(f"timestamp_micros(`{column}` div 1000)")


def read_parquet(
    spark: SparkSession, source: str, footers: dict[Path, pq.FileMetaData], st: InputStats, block_s: int = 1
) -> DataFrame:
    """The rows of these Parquet files; nanosecond timestamp columns as microsecond TIMESTAMPs.

    Files without nanosecond columns, with one type per timestamp column, are read as the engine
    reads them. Otherwise files are read in groups with the same timestamp types, each with an
    explicit schema, and put together by name; a column that is nanoseconds in some file is a
    TIMESTAMP in every group.
    """
    import pyarrow as pa
    from pyspark.sql import functions as F

    schemas = {f: meta.schema.to_arrow_schema() for f, meta in footers.items()}
    # Sail reads a set of files only when each timestamp column has one unit and zone in all of them.
    groups: dict[tuple[tuple[str, str], ...], list[Path]] = {}
    for f, schema in schemas.items():
        assert_readable_types(source, f, schema)
        key = tuple((fld.name, str(fld.type)) for fld in schema if pa.types.is_timestamp(fld.type))
        groups.setdefault(key, []).append(f)
    ns_anywhere = sorted({c for f in schemas for c in nanosecond_columns(schemas[f])})
    if len(groups) == 1 and not ns_anywhere:
        return spark.read.parquet(*[str(f) for f in footers])
    classic = not is_connect(spark)
    if classic:
        # Classic Spark refuses TIMESTAMP(NANOS) columns unless told to read them as numbers. The
        # setting changes nothing else, and stays on: the scan reads it again when it executes.
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    for c in ns_anywhere:
        if c not in st.nanosecond_columns:
            st.nanosecond_columns.append(c)
        st.truncation_moved_block.setdefault(c, 0)
    moved = _moved_by_truncation(footers, block_s)
    for c, n in moved.items():
        st.truncation_moved_block[c] = st.truncation_moved_block.get(c, 0) + n
    frames = []
    for group in groups.values():
        cols = nanosecond_columns(schemas[group[0]])
        schema = spark_schema(source, {f: schemas[f] for f in group}, classic)
        df = spark.read.schema(schema).parquet(*[str(f) for f in group])
        present = {c.lower(): c for c in df.columns}
        fixes = {}
        for c in ns_anywhere:
            name = present.get(c.lower())
            if name is None:
                continue
            if c in cols:
                fixes[name] = from_nanoseconds(name) if classic else F.col(f"`{name}`")
            else:
                fixes[name] = F.col(f"`{name}`").cast("timestamp")  # naive in this file: taken as UTC
        frames.append(df.withColumns(fixes))
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df, allowMissingColumns=True)
    return out


def _moved_by_truncation(footers: dict[Path, pq.FileMetaData], block_s: int) -> dict[str, int]:
    """Per nanosecond column, the values truncation moves onto a boundary of `block_s` from before it.

    Truncation toward zero moves a time toward the past from 1970 on, which keeps every value in
    its block: boundaries are whole microseconds. Before 1970 it moves a time toward the future,
    across a boundary when the value lies less than a microsecond before one. Only files whose
    footer shows a value before 1970 are read (that column only).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out: dict[str, int] = {}
    unit = block_s * 1_000_000_000
    for f, meta in footers.items():
        schema = meta.schema.to_arrow_schema()
        for col in nanosecond_columns(schema):
            bounds = _raw_min(meta, col)
            if bounds is not None and bounds >= 0:
                continue
            ns = pq.read_table(f, columns=[col]).column(col).cast(pa.int64()).drop_null()
            # pyarrow's integer division truncates toward zero, as the engines do
            truncated = pc.multiply(pc.divide(ns, 1000), 1000)
            crossed = pc.and_(pc.less(ns, truncated), pc.equal(pc.subtract(truncated, pc.multiply(pc.divide(truncated, unit), unit)), 0))
            out[col] = out.get(col, 0) + int(pc.sum(pc.cast(crossed, pa.int64())).as_py() or 0)
    return out


def _raw_min(meta: pq.FileMetaData, column: str) -> int | None:
    """The smallest stored value of `column` (epoch nanoseconds) from the footer; None when unknown."""
    stats = _row_group_stats(meta, column)
    if stats is None:
        return None
    try:
        return min((_epoch_ns(mn) for mn, _ in stats), default=0)
    except (ValueError, OverflowError):
        return None


def _epoch_ns(value: object) -> int:
    import pandas as pd

    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value)


def is_connect(spark: SparkSession) -> bool:
    """Whether `spark` is a Spark Connect session (Sail's), not classic Spark's."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _footers(src: Source) -> dict[Path, pq.FileMetaData]:
    """Every data file of the source with its footer; a folder without data files is an error.

    An empty source is a file with zero rows: a folder with none at all is far more often a wrong
    path or an export that has not run, so it stops the run.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert src.path is not None
    files = _parquet_files(Path(src.path))
    if not files:
        raise InputDataError(
            f"source {src.name} ({src.file}): no parquet files under {src.path} "
            "(an empty source needs at least one file, with zero rows)"
        )
    footers = {}
    for f in files:
        try:
            footers[f] = pq.ParquetFile(f).metadata
        except (OSError, pa.ArrowException) as exc:  # truncated, not Parquet at all, unreadable
            raise InputDataError(f"source {src.name}: file {f}: not a readable parquet file ({exc})") from None
    return footers


def footer_columns(src: Source) -> dict[str, frozenset[str] | None] | None:
    """Columns of a local Parquet source from its files' footers: each column -> its struct fields
    (None for other types); None when the source is no local Parquet folder (not known before reading)."""
    import pyarrow as pa

    if src.format != "parquet" or src.path is None or "://" in src.path or not Path(src.path).exists():
        return None
    columns: dict[str, frozenset[str] | None] = {}
    for meta in _footers(src).values():
        for fld in meta.schema.to_arrow_schema():
            fields = frozenset(f.name for f in fld.type) if pa.types.is_struct(fld.type) else None
            old = columns.get(fld.name)
            columns[fld.name] = fields if old is None else old & fields if fields is not None else old
    return columns


def _check_schemas(
    src: Source, footers: dict[Path, pq.FileMetaData], chosen: list[Path], used: ColumnsUsed
) -> None:
    """Every file read has each column the definitions use, and every column one type in all files.

    The expected type of a column is the one most files of the source have (ties: the first file's).
    Files with different types would be read into silent nulls (Spark) or refused without naming
    the file (Sail); a file without a needed column would silently give nulls.
    """
    named, words = used.named, used.words
    schemas = {f: meta.schema.to_arrow_schema() for f, meta in footers.items()}
    types: dict[str, Counter[str]] = {}
    where: dict[str, set[Path]] = {}
    for f, schema in schemas.items():
        for fld in schema:
            types.setdefault(fld.name.lower(), Counter())[_type_name(fld.type)] += 1
            where.setdefault(fld.name.lower(), set()).add(f)
    needed = {c.lower() for c in named} | (words & set(types))
    n = len(schemas)
    for f in chosen:
        schema = schemas[f]
        have = {fld.name.lower(): fld for fld in schema}
        for col in sorted(needed - set(have)):
            others = len(where.get(col, ()))
            only_here = sorted(fld.name for fld in schema if where[fld.name.lower()] == {f} and n > 1)
            hint = f"; only this file has {', '.join(only_here)}" if only_here else ""
            seen = f"{others} of the source's {n} files have it" if others else "no file of the source has it"
            raise InputDataError(
                f"source {src.name}: file {f}: column {col} is missing, and the definitions use it ({seen}{hint})"
            )
        for key, fld in have.items():
            counts = types[key]
            if len(counts) == 1:
                continue
            expected = max(counts, key=counts.__getitem__)  # ties: the first file's (files are sorted)
            found = _type_name(fld.type)
            if found != expected:
                raise InputDataError(
                    f"source {src.name}: file {f}: column {fld.name} is {found}, expected {expected} "
                    f"(its type in {counts[expected]} of the source's {n} files): every file of a source "
                    "needs the same column types"
                )


def _type_name(dtype: pa.DataType) -> str:
    """A column's type as the drift check compares it: a timestamp's unit (s, ms, us, ns) is no drift,
    as every unit is read as microseconds."""
    import pyarrow as pa

    if pa.types.is_timestamp(dtype):
        return str(pa.timestamp("us", dtype.tz))
    return str(dtype)


def _may_overlap(meta: pq.FileMetaData, column: str, rng: TimeRange) -> bool:
    """False only when the footer proves no row of the file has `column` in [lo, hi)."""
    if rng.lo is None and rng.hi is None:
        return True
    bounds = _time_bounds(meta, column)
    if bounds is None:
        return True
    lo_seen, hi_seen = bounds
    if lo_seen is None or hi_seen is None:
        return False  # no rows
    if rng.hi is not None and lo_seen >= _as_utc(rng.hi):
        return False
    if rng.lo is not None and hi_seen < _as_utc(rng.lo):
        return False
    return True


def _time_bounds(meta: pq.FileMetaData, column: str) -> tuple[datetime | None, datetime | None] | None:
    """(min, max) of `column` from the footer; None when the footer cannot tell."""
    stats = _row_group_stats(meta, column)
    if stats is None:
        return None
    lo_seen = hi_seen = None
    for raw_min, raw_max in stats:
        try:
            mn, mx = _as_utc(raw_min), _as_utc(raw_max)
        except (ValueError, OverflowError):  # beyond year 9999: Python cannot hold it
            return None
        if mn is None or mx is None:
            return None
        lo_seen = mn if lo_seen is None else min(lo_seen, mn)
        hi_seen = mx if hi_seen is None else max(hi_seen, mx)
    return lo_seen, hi_seen


def _row_group_stats(meta: pq.FileMetaData, column: str) -> list[tuple[object, object]] | None:
    """The footer's (min, max) of `column` in each row group that has rows; None when the column
    is absent or a row group with rows has no statistics for it."""
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if column not in names:
        return None
    idx = names.index(column)
    out = []
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(idx).statistics
        if stats is None or not stats.has_min_max:
            if meta.row_group(rg).num_rows == 0:
                continue
            return None
        out.append((stats.min, stats.max))
    return out


def _as_utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        if getattr(value, "nanosecond", 0):  # a pandas Timestamp from a nanosecond footer
            # Truncated toward zero to a plain datetime, as the engines read the value.
            value = (value.floor("us") if value.value >= 0 else value.ceil("us")).to_pydatetime()  # type: ignore[attr-defined]
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None
