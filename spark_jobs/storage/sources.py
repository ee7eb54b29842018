"""Reading sources: files (parquet, delta, csv, json) and SQL views over other sources.

A nightly run must read only the day it computes (plus lateness), not the whole history. For
Parquet sources on a local filesystem we prune files ourselves from their footers' min/max
statistics of the timestamp column before Spark sees them, and report how many files and bytes
were read; Delta sources get the same from Delta's own file statistics when filtered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from spark_jobs.defs.models import Definitions, Source
from spark_jobs.errors import InputDataError


@dataclass
class InputStats:
    """What a run read from one source."""

    source: str
    files_total: int | None = None
    files_read: int | None = None
    bytes_read: int | None = None
    paths: list[str] = field(default_factory=list)

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
    return _read_files(spark, src, rng, stats)


def _read_files(spark: SparkSession, src: Source, rng: TimeRange, stats: dict[str, InputStats]) -> DataFrame:
    assert src.path is not None
    path = src.path
    st = stats.setdefault(src.name, InputStats(src.name))
    local = "://" not in path
    if local and not Path(path).exists():
        raise InputDataError(f"source {src.name} ({src.file}): path {path} does not exist")
    if src.format == "delta":
        return spark.read.format("delta").load(path)
    if src.format == "parquet" and local:
        files = _parquet_files(Path(path))
        if not files:
            raise InputDataError(f"source {src.name} ({src.file}): no parquet files under {path}")
        chosen = [f for f in files if _may_overlap(f, src.timestamp, rng)]
        st.files_total = (st.files_total or 0) + len(files)
        st.files_read = (st.files_read or 0) + len(chosen)
        st.bytes_read = (st.bytes_read or 0) + sum(f.stat().st_size for f in chosen)
        st.paths = [str(f) for f in chosen]
        if not chosen:
            # Keep the schema: read one file and keep no rows.
            return spark.read.parquet(str(files[0])).limit(0)
        return spark.read.parquet(*[str(f) for f in chosen])
    reader = spark.read.format(src.format)
    if src.format == "csv":
        reader = reader.option("header", "true").option("inferSchema", "true")
    return reader.load(path)


def latest_time(spark: SparkSession, defs: Definitions, name: str) -> datetime | None:
    """The latest event time in the whole source: how far its data is known to be complete.

    Local Parquet answers from file footers (no scan); anything else with one aggregate query.
    """
    src = defs.sources[name]
    if src.sql is None and src.format == "parquet" and src.path and "://" not in src.path:
        latest = None
        for f in _parquet_files(Path(src.path)):
            bounds = _time_bounds(f, src.timestamp)
            if bounds is None:
                break
            if bounds[1] is not None:
                latest = bounds[1] if latest is None else max(latest, bounds[1])
        else:
            return latest.replace(tzinfo=None) if latest else None
    from pyspark.sql import functions as F

    from spark_jobs.transforms.events import TS, with_event_time

    df = with_event_time(read_source(spark, defs, name, TimeRange(), {}), src.timestamp, name)
    return df.agg(F.max(TS)).collect()[0][0]


def _parquet_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in p.parts))


def _may_overlap(file: Path, column: str, rng: TimeRange) -> bool:
    """False only when the footer proves no row of `file` has `column` in [lo, hi)."""
    if rng.lo is None and rng.hi is None:
        return True
    bounds = _time_bounds(file, column)
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


def _time_bounds(file: Path, column: str) -> tuple[datetime | None, datetime | None] | None:
    """(min, max) of `column` from the footer; None when the footer cannot tell."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(file).metadata
    except Exception as exc:  # a corrupt file: name it
        raise InputDataError(f"cannot read parquet footer of {file}: {exc}") from None
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
        mn, mx = _as_utc(stats.min), _as_utc(stats.max)
        if mn is None or mx is None:
            return None
        lo_seen = mn if lo_seen is None else min(lo_seen, mn)
        hi_seen = mx if hi_seen is None else max(hi_seen, mx)
    return lo_seen, hi_seen


def _as_utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None
