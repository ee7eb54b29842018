"""`tilewise backfill`: block aggregates for event dates [start - lateness, end).

Per feature set, holding the table's lock for the whole run:
1. read only the source files that can hold events of the range (footer statistics);
2. drop and count events with a null key or timestamp, and duplicates by `dedupe_key`;
3. build the finest blocks and stage them; roll each coarser level up from the staged finer
   level (never from raw events), extending a coarse level's range to its alignment with finer
   blocks already in the table;
4. validate the staged blocks, then replace exactly the processed range of every level in one
   commit, so a re-run of any range gives the same content and a crash publishes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from pyspark.sql import DataFrame

from spark_jobs.defs.lineage import block_lineage
from spark_jobs.defs.models import Definitions, FeatureSet
from spark_jobs.engine.session import Engine
from spark_jobs.errors import InputDataError
from spark_jobs.quality import gate
from spark_jobs.quality.suites import block_suite
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.sources import InputStats, TimeRange, read_source, reading, truncation_notes
from spark_jobs.storage.tables import Warehouse, stage
from spark_jobs.transforms.blocks import EVENT_COUNT, build_blocks, roll_up
from spark_jobs.transforms.events import clean_events, event_counts, with_event_time

PARTITION_BY = ["block_size", "block_date"]


def table_name(fs_name: str) -> str:
    return f"blocks/{fs_name}"


@dataclass(frozen=True)
class LevelRange:
    """The block starts [lo, hi) of one block size that a run recomputes."""

    size: int
    lo: int  # epoch seconds
    hi: int

    def predicate(self) -> str:
        lo, hi = _ts(self.lo), _ts(self.hi)
        last_day = (hi - timedelta(seconds=1)).date()
        # block_date repeats block_start's range on the partition column, for file pruning.
        return (
            f"(block_size = {self.size} AND block_date >= DATE'{lo.date()}' AND block_date <= DATE'{last_day}'"
            f" AND block_start >= TIMESTAMP'{lo:%Y-%m-%d %H:%M:%S}' AND block_start < TIMESTAMP'{hi:%Y-%m-%d %H:%M:%S}')"
        )


def plan_levels(fs: FeatureSet, lo: int, hi: int) -> list[LevelRange]:
    """Each level's range: the finest is [lo, hi); coarser ones widen to their own alignment."""
    out = []
    for d in fs.block_sizes:
        s = d.seconds
        out.append(LevelRange(s, lo - lo % s, hi + (-hi) % s))
    return out


def _ts(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


def _epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp())


def run(
    engine: Engine, wh: Warehouse, defs: Definitions, run: Run, start: date, end: date, names: list[str],
    rebuild: bool = False,
) -> None:
    for name in names:
        backfill_feature_set(engine, wh, defs, run, defs.feature_sets[name], start, end, rebuild)


def backfill_feature_set(
    engine: Engine, wh: Warehouse, defs: Definitions, run: Run, fs: FeatureSet, start: date, end: date,
    rebuild: bool = False,
) -> None:
    """Blocks of `fs` for [start - lateness, end); `rebuild` replaces the whole table with them."""
    table = table_name(fs.name)
    lo = _epoch(start) - fs.lateness.seconds
    hi = _epoch(end)
    levels = plan_levels(fs, lo, hi)
    src = defs.sources[fs.source]
    stats: dict[str, InputStats] = {}
    lineage = block_lineage(defs, fs.name)
    if not rebuild:
        wh.check_lineage(table, lineage)  # before any work; checked again when writing
    with wh.lock(table, on_wait=run.say), reading(stats):
        with run.step(f"{fs.name}: read {fs.source} {_ts(lo):%Y-%m-%d %H:%M} .. {_ts(hi):%Y-%m-%d %H:%M}"):
            raw = read_source(
                engine.spark, defs, fs.source, TimeRange(_ts(lo), _ts(hi)), stats, block_s=fs.block_sizes[0].seconds
            )
            events = with_event_time(raw, src.timestamp, fs.source)
            counts = event_counts(events, src.timestamp, fs.key, _ts(lo), _ts(hi), run.clock)
            clean = clean_events(events, fs.key, src.dedupe_key, _ts(lo), _ts(hi), run.clock)
        staged: list[DataFrame] = []
        with run.step(f"{fs.name}: blocks {' -> '.join(str(d) for d in fs.block_sizes)}"):
            finer = stage(engine.spark, run.dir / "staged" / table / str(levels[0].size), build_blocks(clean, fs))
            staged.append(finer)
            for prev, level in zip(levels, levels[1:]):
                finer = stage(
                    engine.spark,
                    run.dir / "staged" / table / str(level.size),
                    roll_up(_finer_for(wh, table, finer, prev, level, rebuild), fs, level.size),
                )
                staged.append(finer)
        aggregated = int(staged[0].agg({EVENT_COUNT: "sum"}).collect()[0][0] or 0)
        blocks_written = {lv.size: df.count() for lv, df in zip(levels, staged)}
        new_blocks = staged[0]
        for df in staged[1:]:
            new_blocks = new_blocks.unionByName(df)
        predicate = " OR ".join(lv.predicate() for lv in levels)
        report = gate.audit(
            run, table, new_blocks, block_suite(list(fs.key), [EVENT_COUNT]), engine=engine.name
        )
        with run.step(f"{fs.name}: publish {table}"):
            result = gate.publish(run, report, lambda: wh.replace_range(table, new_blocks, predicate, PARTITION_BY, rebuild=rebuild, lineage=lineage))
        gate.discard_staged(run)

    dups = counts["in_range"] - counts["timestamp_in_future"] - counts["null_key"] - aggregated
    own = stats[fs.source].as_dict() if fs.source in stats else {}
    run.inputs[fs.source] = {**own, "rows_read": counts["rows_read"]}
    run.inputs.setdefault("_sources", {}).update({k: v.as_dict() for k, v in stats.items()})
    run.drop(f"{fs.name}: null timestamp", counts["null_timestamp"])
    run.drop(f"{fs.name}: unparseable timestamp", counts["unparseable_timestamp"])
    run.drop(f"{fs.name}: timestamp in future", counts["timestamp_in_future"])
    run.drop(f"{fs.name}: null key", counts["null_key"])
    run.drop(f"{fs.name}: duplicate ({', '.join(src.dedupe_key)})", dups)
    run.counts[fs.name] = {
        "events_read": counts["rows_read"],
        "events_in_range": counts["in_range"],
        "events_aggregated": aggregated,
        "blocks_written": {str(k): v for k, v in blocks_written.items()},
        "range": [f"{_ts(lo):%Y-%m-%dT%H:%M:%SZ}", f"{_ts(hi):%Y-%m-%dT%H:%M:%SZ}"],
    }
    run.outputs[table] = {"version": result.version, "rows": sum(blocks_written.values())}
    if not aggregated:  # legitimate (a quiet night), and the re-run of a range that lost its events
        run.notes.append(
            f"{fs.name}: 0 events of source {fs.source} in [{_ts(lo):%Y-%m-%d %H:%M}, {_ts(hi):%Y-%m-%d %H:%M}) "
            f"({counts['rows_read']:,} rows read, {counts['in_range']:,} in range): the range now has no blocks"
        )
    run.notes.extend(f"{fs.name}: {note}" for note in truncation_notes(stats))
    files = stats.get(fs.source) or next(iter(stats.values()), None)
    read_note = f", files read {files.files_read}/{files.files_total}" if files and files.files_total else ""
    run.say(
        f"{fs.name}: {aggregated:,} events -> {sum(blocks_written.values()):,} blocks, "
        f"{table} v{result.version}{read_note}"
    )


def _finer_for(
    wh: Warehouse, table: str, fresh: DataFrame, prev: LevelRange, level: LevelRange, rebuild: bool = False
) -> DataFrame:
    """Finer blocks covering `level`'s range: the fresh ones, plus stored ones at its widened edges."""
    if (level.lo, level.hi) == (prev.lo, prev.hi) or not wh.exists(table):
        return fresh
    if rebuild:  # the stored blocks come from the old definition: they cannot fill the edges
        raise InputDataError(
            f"--rebuild of {table}: the range must start and end on {level.size}s block edges "
            f"(a {level.size}s block would mix rebuilt and old blocks); widen --start/--end"
        )
    wh.check_schema(table, fresh)
    edges = (
        f"block_size = {prev.size} AND block_start >= TIMESTAMP'{_ts(level.lo):%Y-%m-%d %H:%M:%S}' "
        f"AND block_start < TIMESTAMP'{_ts(level.hi):%Y-%m-%d %H:%M:%S}' "
        f"AND NOT (block_start >= TIMESTAMP'{_ts(prev.lo):%Y-%m-%d %H:%M:%S}' "
        f"AND block_start < TIMESTAMP'{_ts(prev.hi):%Y-%m-%d %H:%M:%S}')"
    )
    stored = wh.read(table).filter(edges).select(*fresh.columns)
    return fresh.unionByName(stored)
