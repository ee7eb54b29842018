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

from pyspark.sql import DataFrame, SparkSession

from spark_jobs.defs.models import Definitions, Source
from spark_jobs.errors import InputDataError, TilewiseError

if TYPE_CHECKING:
    import pyarrow.parquet as pq


@dataclass
class InputStats:
    """What a run read from one source."""

    source: str
    files_total: int | None = None
    files_read: int | None = None
    bytes_read: int | None = None
    paths: list[str] = field(default_factory=list)  # the local Parquet files handed to the engine
    root: str | None = None  # the source's path

    def as_dict(self) -> dict:
        return {
            "files_total": self.files_total,
            "files_read": self.files_read,
            "bytes_read": self.bytes_read,
        }


@dataclass(frozen=True)
class TimeRange:
    """[lo, hi) in UTC; None means unbounded."""

    lo: datetime | None = None
    hi: datetime | None = None


def read_source(
    spark: SparkSession, defs: Definitions, name: str, rng: TimeRange, stats: dict[str, InputStats]
) -> DataFrame:
    """The rows of source `name`, restricted to its timestamp in `rng` where files allow pruning.

    The caller still filters rows on the timestamp; pruning only skips whole files.
    """
    src = defs.sources[name]
    if src.sql is not None:
        for dep in src.depends_on:
            dep_src = defs.sources[dep]
            # Prune a dependency's files only when the view keeps its time column as is.
            dep_rng = rng if dep_src.timestamp == src.timestamp else TimeRange()
            read_source(spark, defs, dep, dep_rng, stats).createOrReplaceTempView(dep)
        return spark.sql(src.sql)
    return _read_files(spark, defs, src, rng, stats)


def _read_files(
    spark: SparkSession, defs: Definitions, src: Source, rng: TimeRange, stats: dict[str, InputStats]
) -> DataFrame:
    assert src.path is not None
    path = src.path
    st = stats.setdefault(src.name, InputStats(src.name, root=path))
    local = "://" not in path
    if local and not Path(path).exists():
        raise InputDataError(f"source {src.name} ({src.file}): path {path} does not exist")
    if src.format == "delta":
        return spark.read.format("delta").load(path)
    if src.format == "parquet" and local:
        files, chosen = select_files(defs, src.name, rng)
        st.files_total = (st.files_total or 0) + len(files)
        st.files_read = (st.files_read or 0) + len(chosen)
        st.bytes_read = (st.bytes_read or 0) + sum(f.stat().st_size for f in chosen)
        st.paths.extend(str(f) for f in chosen if str(f) not in st.paths)
        if not chosen:
            # Keep the schema: read one file and keep no rows.
            return spark.read.parquet(str(files[0])).limit(0)
        return spark.read.parquet(*[str(f) for f in chosen])
    reader = spark.read.format(src.format)
    if src.format == "csv":
        reader = reader.option("header", "true").option("inferSchema", "true")
    return reader.load(path)


def latest_time(spark: SparkSession, defs: Definitions, name: str, now: datetime) -> tuple[datetime | None, int]:
    """(latest event time not after `now`, events after `now`) in the whole source.

    The latest time says how far the source's data is known to be complete (label maturity), so
    an event stamped in the future (a producer's broken clock, year 9999) must not count: it would
    make every label window look closed. Local Parquet answers from file footers and reads only
    the files that may hold events after `now`; anything else takes one aggregate query.
    """
    from pyspark.sql import functions as F

    from spark_jobs.transforms.events import TS, with_event_time

    src = defs.sources[name]
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
        df = with_event_time(read_source(spark, defs, name, rng, stats), src.timestamp, name)
        row = df.agg(
            F.max(F.when(F.col(TS) <= F.lit(now), F.col(TS))).alias("latest"),
            F.sum(F.when(F.col(TS) > F.lit(now), 1).otherwise(0)).alias("future"),
        ).collect()[0]
    seen = _as_utc(row["latest"])
    if seen is not None and (latest is None or seen > latest):
        latest = seen
    return (latest.replace(tzinfo=None) if latest else None), int(row["future"] or 0)


def source_files(defs: Definitions, name: str, rng: TimeRange) -> list[tuple[str, int, int]] | None:
    """(path, size, mtime in ns) of every file behind source `name` that may hold events of `rng`
    (through its views' dependencies): what a resumed backfill compares with a previous run.

    Local Parquet is pruned by footer statistics as `read_source` prunes; other local formats list
    every file under the source's path. None when a file system cannot be listed (a URL).
    """
    src = defs.sources[name]
    if src.sql is not None:
        found: list[tuple[str, int, int]] = []
        for dep in src.depends_on:
            dep_rng = rng if defs.sources[dep].timestamp == src.timestamp else TimeRange()
            files = source_files(defs, dep, dep_rng)
            if files is None:
                return None
            found.extend(files)
        return sorted(set(found))
    assert src.path is not None
    if "://" in src.path or not Path(src.path).exists():
        return None
    if src.format == "parquet":
        paths = select_files(defs, name, rng)[1]
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
    if not isinstance(exc, (PySparkException, Py4JJavaError)) or not _READ_FAILURE.search(text):
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


def select_files(defs: Definitions, name: str, rng: TimeRange) -> tuple[list[Path], list[Path]]:
    """(every data file of local Parquet source `name`, those that may hold events in `rng`).

    Each file read is checked first: a readable footer, every column the definitions use, and
    the same type per column as the source's other files.
    """
    src = defs.sources[name]
    footers = _footers(src)
    chosen = [f for f, meta in footers.items() if _may_overlap(meta, src.timestamp, rng)]
    _check_schemas(src, footers, chosen, columns_used(defs, name))
    return list(footers), chosen


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


def columns_used(defs: Definitions, name: str) -> tuple[frozenset[str], frozenset[str]]:
    """Columns of source `name` the definitions need: (named as columns, words of its SQL text).

    Named columns are the timestamp, dedupe key, keys and aggregated columns of its feature sets,
    impression and label columns. Filters and views are not parsed: any word of them may be a
    column, so a column is needed when its name is one of those words (lower case).
    """
    named: set[str] = set()
    texts: list[str] = []
    src = defs.sources[name]
    named.update([src.timestamp, *src.dedupe_key])
    for fs in defs.feature_sets.values():
        if fs.source == name:
            named.update(fs.key)
            named.update(f.column for f in fs.features if f.column)
            texts.extend(f.filter for f in fs.features if f.filter)
    for ts in defs.training_sets.values():
        if ts.impressions == name:
            named.add("impression_id")
            named.update(ts.impression_column(k) for fs in ts.feature_sets for k in defs.feature_sets[fs].key)
            texts.append("feature_watermark")
        for label in ts.labels:
            if label.source == name:
                named.add("impression_id")
                texts.append(label.filter or "")
    words: set[str] = set()
    for view in defs.sources.values():
        if name in view.depends_on:
            texts.append(view.sql or "")
            # A view passes columns through (SELECT *): what its readers need, it may need here.
            view_named, view_words = columns_used(defs, view.name)
            words.update(c.lower() for c in view_named)
            words.update(view_words)
    for text in texts:
        words.update(w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    return frozenset(named), frozenset(words)


def _check_schemas(
    src: Source, footers: dict[Path, pq.FileMetaData], chosen: list[Path], used: tuple[frozenset[str], frozenset[str]]
) -> None:
    """Every file read has each column the definitions use, and every column one type in all files.

    The expected type of a column is the one most files of the source have (ties: the first file's).
    Files with different types would be read into silent nulls (Spark) or refused without naming
    the file (Sail); a file without a needed column would silently give nulls.
    """
    named, words = used
    schemas = {f: meta.schema.to_arrow_schema() for f, meta in footers.items()}
    types: dict[str, Counter[str]] = {}
    where: dict[str, set[Path]] = {}
    for f, schema in schemas.items():
        for fld in schema:
            types.setdefault(fld.name.lower(), Counter())[str(fld.type)] += 1
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
            found = str(fld.type)
            if found != expected:
                raise InputDataError(
                    f"source {src.name}: file {f}: column {fld.name} is {found}, expected {expected} "
                    f"(its type in {counts[expected]} of the source's {n} files): every file of a source "
                    "needs the same column types"
                )


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
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if column not in names:
        return None
    idx = names.index(column)
    lo_seen = hi_seen = None
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(idx).statistics
        if stats is None or not stats.has_min_max:
            if meta.row_group(rg).num_rows == 0:
                continue
            return None
        try:
            mn, mx = _as_utc(stats.min), _as_utc(stats.max)
        except (ValueError, OverflowError):  # beyond year 9999: Python cannot hold it
            return None
        if mn is None or mx is None:
            return None
        lo_seen = mn if lo_seen is None else min(lo_seen, mn)
        hi_seen = mx if hi_seen is None else max(hi_seen, mx)
    return lo_seen, hi_seen


def _as_utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None
