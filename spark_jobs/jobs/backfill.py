"""`tilewise backfill`: block aggregates for event dates [start - lateness, end).

Per feature set, holding the table's lock for the whole run, the range runs as chunks
(`plan.chunks`: edges on the coarsest block; one chunk for a nightly run), in time order. Per chunk:
1. read only the source files that can hold events of the chunk (footer statistics);
2. drop and count events with a null key or timestamp, and duplicates by `dedupe_key`, also of
   events in the range's earlier chunks (their keys are read), as one run over the range would;
3. build the finest blocks and stage them; roll each coarser level up from the staged finer
   level (never from raw events), extending a coarse level's range to its alignment with finer
   blocks already in the table (only at the range's own edges: inner chunk edges are aligned);
4. validate the staged blocks, then replace exactly the processed range of every level in one
   commit, so a re-run of any range gives the same content and a crash publishes nothing.
After each commit of a multi-chunk run the manifest records the chunk (range, version, a digest of
its source files), so a re-run of the same plan keeps the chunks whose files did not change.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame

from spark_jobs.defs.lineage import block_lineage, fingerprint
from spark_jobs.defs.models import Definitions, FeatureSet
from spark_jobs.engine.profile import Profile, parse_bytes
from spark_jobs.engine.session import Engine
from spark_jobs.jobs import timeline
from spark_jobs.jobs.progress import Progress
from spark_jobs.plan.chunks import DAY, Chunk, auto_step_days, plan_chunks
from spark_jobs.errors import InputDataError
from spark_jobs.names import BLOCK_DATE, BLOCK_PARTITIONS, BLOCK_SIZE, EVENT_COUNT, blocks_table
from spark_jobs.quality import gate
from spark_jobs.quality.suites import block_suite
from spark_jobs.storage import coverage
from spark_jobs.storage.manifest import Run, read_manifests
from spark_jobs.storage.sources import InputStats, TimeRange, read_events, reading, source_files, truncation_notes
from spark_jobs.storage.tables import Warehouse, WholePartitions, WriteResult, stage
from spark_jobs.transforms.blocks import build_blocks, check_expressions, roll_up
from spark_jobs.transforms.events import clean_events, dedupe_keys, event_counts, not_seen_before

PARTITION_BY = list(BLOCK_PARTITIONS)


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

    def whole_days(self) -> WholePartitions | None:
        """The range as whole (block_size, block_date) partitions, when it starts and ends on a
        day's edge (a block's partition is the day it starts on); else None."""
        if self.lo % DAY or self.hi % DAY:
            return None
        return WholePartitions(BLOCK_DATE, _ts(self.lo).date(), _ts(self.hi - DAY).date(), ((BLOCK_SIZE, self.size),))


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
    rebuild: bool = False, step_days: int | None = None, resume: bool = True,
) -> None:
    _check_source_paths(defs, names)
    for name in names:
        backfill_feature_set(engine, wh, defs, run, defs.feature_sets[name], start, end, rebuild, step_days, resume)


def backfill_feature_set(
    engine: Engine, wh: Warehouse, defs: Definitions, run: Run, fs: FeatureSet, start: date, end: date,
    rebuild: bool = False, step_days: int | None = None, resume: bool = True,
) -> None:
    """Blocks of `fs` for [start - lateness, end), chunk by chunk in time order; `rebuild` replaces
    the whole table with them (the first chunk replaces the table, the others add to it)."""
    table = blocks_table(fs.name)
    lo = _epoch(start) - fs.lateness.seconds
    hi = _epoch(end)
    src = defs.sources[fs.source]
    lineage = block_lineage(defs, fs.name)
    if not rebuild:
        wh.check_lineage(table, lineage)  # before any work; checked again when writing
    coarsest = fs.block_sizes[-1].seconds
    if rebuild and wh.exists(table) and (lo % coarsest or hi % coarsest):
        raise InputDataError(
            f"--rebuild of {table}: the range must start and end on {coarsest}s block edges "
            f"(a {coarsest}s block would mix rebuilt and old blocks); widen --start/--end"
        )
    chunks, why = _chunks(engine, defs, fs, lo, hi, step_days)
    plan = {
        "range": [_iso(lo), _iso(hi)],
        "edges": [_iso(c.lo) for c in chunks[1:]],
        "lineage": fingerprint(lineage),
        "source": src.path or src.sql,
        "rebuild": rebuild,
    }
    totals: dict[str, Any] = {
        "events_read": 0, "events_in_range": 0, "events_aggregated": 0, "blocks_written": {},
        "range": plan["range"], "chunking": why, "plan": plan, "chunks": [],
    }
    run.counts[fs.name] = totals
    kept_runs: set[str] = set()
    rows_written = 0
    result: WriteResult | None = None
    all_stats: dict[str, InputStats] = {}
    untimed: dict[str, int] | None = None
    if len(chunks) > 1:
        untimed, all_stats = _untimed_rows(engine, defs, run, fs, lo, hi)
    with wh.lock(table, on_wait=run.say):
        version_before = wh.version(table)
        previous = _committed_chunks(wh, table, fs.name, plan) if resume and len(chunks) > 1 else {}
        progress = Progress(run, fs.name, chunks)
        try:
            for chunk in chunks:
                files = _files_digest(defs, fs, lo if src.dedupe_key else chunk.lo, chunk.hi)
                record: dict[str, Any] = {
                    "index": chunk.index, "range": [_iso(chunk.lo), _iso(chunk.hi)], "files": files,
                    "clock": _iso(int(run.started)),
                }
                prior = previous.get(chunk.index)
                if rebuild and chunk.index == 0 and prior is None:
                    previous = {}  # this chunk replaces the whole table: nothing committed before stays
                if prior is not None and files is not None and prior["files"] == files:
                    kept_runs.add(prior["run_id"])
                    totals["chunks"].append({**record, "status": "skipped", "version": prior["version"],
                                             "kept_from": prior["run_id"], "events_aggregated": prior.get("events_aggregated"),
                                             "reason": "committed by an earlier run; source files unchanged"})
                    progress.kept(chunk, f"committed by {prior['run_id']}, source files unchanged")
                    continue
                t0 = time.time()
                stats: dict[str, InputStats] = {}
                done = _backfill_range(
                    engine, wh, defs, run, fs, chunk.lo, chunk.hi, lo, stats, lineage,
                    rebuild=rebuild and chunk.index == 0, label=_chunk_label(fs, chunk, len(chunks)),
                )
                took = time.time() - t0
                result = done["result"]
                rows_written += sum(done["blocks_written"].values())
                run.outputs[table] = {"version": result.version, "rows": rows_written}  # a run that fails later still names it
                if untimed is None:
                    all_stats = stats
                else:  # the files a chunk reads again were counted once, over the whole range
                    for reason in UNTIMED:
                        done["dropped"].pop(reason)
                    done["events_read"] = 0
                for k in ("events_read", "events_in_range", "events_aggregated"):
                    totals[k] += done[k]
                for size, n in done["blocks_written"].items():
                    totals["blocks_written"][str(size)] = totals["blocks_written"].get(str(size), 0) + n
                for reason, n in done["dropped"].items():
                    run.drop(f"{fs.name}: {reason}", n)
                progress.computed(chunk, done["events_aggregated"], took)
                totals["chunks"].append({
                    **record, "status": "done", "version": result.version, "seconds": round(took, 3),
                    "events_read": done["events_read"], "events_aggregated": done["events_aggregated"],
                    "blocks_written": sum(done["blocks_written"].values()),
                    "events_per_s": round(done["events_aggregated"] / took, 1) if took > 0 else None,
                })
                totals["progress"] = progress.numbers()
                if len(chunks) > 1:
                    run.write_manifest()  # a run killed after this chunk can resume from here
                progress.show_computed(chunk, done["events_aggregated"], took)
        finally:
            progress.close()
        totals["progress"] = progress.numbers()
        timeline.follow(engine, wh, run, fs, table, wh.version(table))  # chunks kept from a run that stopped before it
    if untimed is not None:
        totals["events_read"] = untimed["rows_read"]
        for reason in UNTIMED:
            run.drop(f"{fs.name}: {reason}", untimed[reason.replace(" ", "_")])

    own = all_stats[fs.source].as_dict() if fs.source in all_stats else {}
    run.inputs[fs.source] = {**own, "rows_read": totals["events_read"]}
    run.inputs.setdefault("_sources", {}).update({k: v.as_dict() for k, v in all_stats.items()})
    run.notes.extend(f"{fs.name}: {note}" for note in truncation_notes(all_stats))
    version = result.version if result is not None else wh.version(table)
    run.outputs[table] = {"version": version, "rows": rows_written}
    if version is not None and version == version_before:
        run.outputs[table]["unchanged"] = True  # nothing to write or remove: no commit
    skipped = [c for c in totals["chunks"] if c["status"] == "skipped"]
    if len(chunks) > 1:
        kept_note = (
            f"; {len(skipped)} kept: committed by {', '.join(sorted(kept_runs))} and their source files unchanged"
            if skipped else (" (none kept: --no-resume)" if not resume else "")
        )
        run.notes.append(f"{fs.name}: {len(chunks)} chunks ({why}), {len(chunks) - len(skipped)} computed{kept_note}")
    aggregated = totals["events_aggregated"]
    if not aggregated and not skipped:  # legitimate (a quiet night), and the re-run of a range that lost its events
        run.notes.append(
            f"{fs.name}: 0 events of source {fs.source} in [{_ts(lo):%Y-%m-%d %H:%M}, {_ts(hi):%Y-%m-%d %H:%M}) "
            f"({totals['events_read']:,} rows read, {totals['events_in_range']:,} in range): the range now has no blocks"
        )
    files = all_stats.get(fs.source) or next(iter(all_stats.values()), None)
    read_note = f", files read {files.files_read}/{files.files_total}" if files and files.files_total else ""
    run.say(f"{fs.name}: {aggregated:,} events -> {rows_written:,} blocks, {table} v{version}{read_note}")


def _backfill_range(
    engine: Engine, wh: Warehouse, defs: Definitions, run: Run, fs: FeatureSet, lo: int, hi: int, first: int,
    stats: dict[str, InputStats], lineage: dict[str, Any], *, rebuild: bool, label: str,
) -> dict[str, Any]:
    """Blocks of events [lo, hi) validated and committed as one range replacement; events of
    [first, lo) only remove duplicates (the run's range starts at `first`). The caller holds the lock."""
    table = blocks_table(fs.name)
    levels = plan_levels(fs, lo, hi)
    src = defs.sources[fs.source]
    with reading(stats):
        seen = None
        if src.dedupe_key and first < lo:
            # Staged before the chunk is read: a view's sources are temporary views by name, which
            # the chunk's read re-registers for its own range.
            with run.step(f"{label}: {'+'.join(src.dedupe_key)} of earlier events {_ts(first):%Y-%m-%d %H:%M} .. {_ts(lo):%Y-%m-%d %H:%M}"):
                before = read_events(engine.spark, defs.source_read(fs.source), TimeRange(_ts(first), _ts(lo)), {})
                earlier = clean_events(before, fs.key, (), _ts(first), _ts(lo), run.clock)
                seen = stage(engine.spark, run.dir / "work" / table / "seen", dedupe_keys(earlier, src.dedupe_key))
        with run.step(f"{label}: read {fs.source} {_ts(lo):%Y-%m-%d %H:%M} .. {_ts(hi):%Y-%m-%d %H:%M}"):
            events = read_events(
                engine.spark, defs.source_read(fs.source), TimeRange(_ts(lo), _ts(hi)), stats, block_s=fs.block_sizes[0].seconds
            )
            check_expressions(events, fs, fs.source)
            counts = event_counts(events, src.timestamp, fs.key, _ts(lo), _ts(hi), run.clock)
            clean = clean_events(events, fs.key, src.dedupe_key, _ts(lo), _ts(hi), run.clock)
            if seen is not None:
                clean = not_seen_before(clean, seen, src.dedupe_key)
        staged: list[DataFrame] = []
        with run.step(f"{label}: blocks {' -> '.join(str(d) for d in fs.block_sizes)}"):
            folders = [run.dir / "staged" / table / str(lv.size) for lv in levels]
            finer = stage(engine.spark, folders[0], build_blocks(clean, fs), PARTITION_BY)
            staged.append(finer)
            for prev, level, folder in zip(levels, levels[1:], folders[1:]):
                finer = stage(engine.spark, folder, roll_up(_finer_for(wh, table, finer, prev, level), fs, level.size), PARTITION_BY)
                staged.append(finer)
        aggregated = int(staged[0].agg({EVENT_COUNT: "sum"}).collect()[0][0] or 0)
        blocks_written = {lv.size: df.count() for lv, df in zip(levels, staged)}
        new_blocks = staged[0]
        for df in staged[1:]:
            new_blocks = new_blocks.unionByName(df)
        days = [lv.whole_days() for lv in levels]

        def publish() -> WriteResult:
            if rebuild or None in days:  # a partition would keep some of its rows
                predicate = " OR ".join(lv.predicate() for lv in levels)
                return wh.replace_range(table, new_blocks, predicate, PARTITION_BY, rebuild=rebuild, lineage=lineage)
            return wh.replace_partitions(table, new_blocks, folders, days, PARTITION_BY, lineage=lineage,  # type: ignore[arg-type]
                                         rows=sum(blocks_written.values()))

        result = gate.validate_and_publish(
            run, table, new_blocks, block_suite(list(fs.key), [EVENT_COUNT]), publish, engine=engine.name, label=label,
        )
        coverage.record(wh.path(table), levels[0].lo, levels[0].hi, reset=rebuild)
        gate.discard_staged(run)
        timeline.follow(engine, wh, run, fs, table, result.version, lo=levels[0].lo, hi=levels[0].hi, rebuild=rebuild, label=label)
    dups = counts["in_range"] - counts["timestamp_in_future"] - counts["null_key"] - aggregated
    return {
        "result": result,
        "events_read": counts["rows_read"],
        "events_in_range": counts["in_range"],
        "events_aggregated": aggregated,
        "blocks_written": blocks_written,
        "dropped": {
            "null timestamp": counts["null_timestamp"],
            "unparseable timestamp": counts["unparseable_timestamp"],
            "timestamp in future": counts["timestamp_in_future"],
            "null key": counts["null_key"],
            f"duplicate ({', '.join(src.dedupe_key)})": dups,
        },
    }


UNTIMED = ("null timestamp", "unparseable timestamp")


def _check_source_paths(defs: Definitions, names: list[str]) -> None:
    """Every local source folder the feature sets read exists, before any work; else exit 2 naming
    the source, the feature sets that read it and how to run the others only."""
    readers: dict[str, list[str]] = {}

    def leaves(name: str) -> list[str]:
        src = defs.sources[name]
        return [name] if src.path is not None else [leaf for dep in src.depends_on for leaf in leaves(dep)]

    for fs in names:
        for leaf in leaves(defs.feature_sets[fs].source):
            path = defs.sources[leaf].path
            if path is not None and "://" not in path and not Path(path).exists():
                readers.setdefault(leaf, []).append(fs)
    if not readers:
        return
    others = [fs for fs in names if all(fs not in r for r in readers.values())]
    lines = [f"source {s} ({defs.sources[s].file}): path {defs.sources[s].path} does not exist; "
             f"feature set{'s' * (len(r) > 1)} {', '.join(r)} read{'s' * (len(r) == 1)} it" for s, r in readers.items()]
    hint = (f"Write that data first, or run the others only: {' '.join(f'--feature-set {fs}' for fs in others)}"
            if others else "Write that data first")
    raise InputDataError("\n".join([*lines, hint]))


def _untimed_rows(
    engine: Engine, defs: Definitions, run: Run, fs: FeatureSet, lo: int, hi: int
) -> tuple[dict[str, int], dict[str, InputStats]]:
    """Rows read and rows without a usable time over the files of the whole range, counted once
    (chunks read a file that spans their edge twice), and what was read."""
    src = defs.sources[fs.source]
    stats: dict[str, InputStats] = {}
    with reading(stats), run.step(f"{fs.name}: count {fs.source} rows {_ts(lo):%Y-%m-%d %H:%M} .. {_ts(hi):%Y-%m-%d %H:%M}"):
        events = read_events(
            engine.spark, defs.source_read(fs.source), TimeRange(_ts(lo), _ts(hi)), stats, block_s=fs.block_sizes[0].seconds
        )
        return event_counts(events, src.timestamp, fs.key, _ts(lo), _ts(hi), run.clock), stats


def _chunk_label(fs: FeatureSet, chunk: Chunk, n: int) -> str:
    return fs.name if n == 1 else f"{fs.name} chunk {chunk.index + 1}/{n}"


def _chunks(
    engine: Engine, defs: Definitions, fs: FeatureSet, lo: int, hi: int, step_days: int | None
) -> tuple[list[Chunk], str]:
    """The chunks of [lo, hi) and how their size was chosen."""
    coarsest = fs.block_sizes[-1].seconds
    if step_days is not None:
        return plan_chunks(lo, hi, coarsest, step_days * DAY), f"--step-days {step_days}"
    files = source_files(defs.source_read(fs.source), TimeRange(_ts(lo), _ts(hi)))
    if files is None:
        return plan_chunks(lo, hi, coarsest, hi - lo), "one chunk: the source's size is unknown"
    size = sum(f[1] for f in files)
    budget = memory_budget(engine.profile)
    days = auto_step_days(size, (hi - lo) / DAY, budget)
    chunks = plan_chunks(lo, hi, coarsest, days * DAY)
    return chunks, f"{days} day{'s' * (days != 1)} per chunk from {size / 2**20:,.1f} MiB of source files and {budget / 2**30:.1f} GiB of engine memory"


def memory_budget(profile: Profile) -> int:
    """The engine memory a backfill plans its chunks for: Sail's pool, or classic Spark's driver."""
    if profile.engine == "sail":
        return profile.sail_memory_limit
    return parse_bytes(profile.spark.get("spark.driver.memory", "1g"), "spark.driver.memory")


def _files_digest(defs: Definitions, fs: FeatureSet, lo: int, hi: int) -> str | None:
    """A digest of the source files (path, size, mtime) behind events [lo, hi), or None if unknown."""
    files = source_files(defs.source_read(fs.source), TimeRange(_ts(lo), _ts(hi)))
    if files is None:
        return None
    return f"{len(files)} files, sha256 " + hashlib.sha256(json.dumps(files).encode()).hexdigest()[:32]


def _committed_chunks(wh: Warehouse, table: str, fs_name: str, plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Chunks of this plan that earlier runs committed (or kept), newest run first, while the
    table still holds what they wrote: the table's lineage is the plan's (checked by the caller)
    and its version has not gone back (a table deleted and built again)."""
    current = wh.version(table)
    found: dict[int, dict[str, Any]] = {}
    if current is None:
        return found
    for m in read_manifests(wh.root):
        if m.get("command") != "backfill":
            continue
        counts = (m.get("counts") or {}).get(fs_name)
        if not isinstance(counts, dict) or counts.get("plan") != plan:
            continue
        for ch in counts.get("chunks") or []:
            if ch.get("status") not in ("done", "skipped") or ch.get("index") in found:
                continue
            version = ch.get("version")
            # Events after a run's clock were left out as "in the future": only a chunk that ended
            # before it holds everything its files hold.
            if version is None or version > current or ch["range"][1] > ch.get("clock", ""):
                continue
            found[ch["index"]] = {**ch, "run_id": ch.get("kept_from") or m["run_id"]}
    return found


def _iso(epoch: int) -> str:
    return f"{_ts(epoch):%Y-%m-%dT%H:%M:%SZ}"


def _finer_for(wh: Warehouse, table: str, fresh: DataFrame, prev: LevelRange, level: LevelRange) -> DataFrame:
    """Finer blocks covering `level`'s range: the fresh ones, plus stored ones at its widened edges.

    A --rebuild never gets here with widened edges: its range is checked to lie on the coarsest
    block's edges before any work (stored blocks of the old definition cannot fill them).
    """
    if (level.lo, level.hi) == (prev.lo, prev.hi) or not wh.exists(table):
        return fresh
    wh.check_schema(table, fresh)
    edges = (
        f"block_size = {prev.size} AND block_start >= TIMESTAMP'{_ts(level.lo):%Y-%m-%d %H:%M:%S}' "
        f"AND block_start < TIMESTAMP'{_ts(level.hi):%Y-%m-%d %H:%M:%S}' "
        f"AND NOT (block_start >= TIMESTAMP'{_ts(prev.lo):%Y-%m-%d %H:%M:%S}' "
        f"AND block_start < TIMESTAMP'{_ts(prev.hi):%Y-%m-%d %H:%M:%S}')"
    )
    stored = wh.read(table).filter(edges).select(*fresh.columns)
    return fresh.unionByName(stored)
