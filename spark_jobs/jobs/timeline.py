"""Keeping `timelines/{feature_set}` equal to the finest blocks of `blocks/{feature_set}`.

The timeline (`transforms.timeline`) is derived data: after every commit of a block table the
backfill rebuilds the timeline rows of the days whose finest blocks it replaced (all days when
the table was rebuilt, or when the timeline was not in step with the block table's previous
version), staged, validated and published like any table. A marker beside the timeline,
`_tilewise_timeline.json`, records which block table version it was derived from and which of
its own versions holds that; it is written only after the timeline's commit. A training set uses
the timeline only when the marker names the block table version it pinned; otherwise (a
warehouse from before timelines, a crash between the two commits, a restored block table) it
reads the blocks, which gives the same values more slowly, and says so in the run's notes.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.defs.models import FeatureSet
from spark_jobs.engine.session import Engine
from spark_jobs.kernels.partition import STARTS
from spark_jobs.names import BLOCK_DATE, BLOCK_SIZE, timeline_table
from spark_jobs.quality import gate
from spark_jobs.quality.suites import timeline_suite
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.tables import Warehouse, WholePartitions, stage, staged_rows
from spark_jobs.transforms.timeline import DAY, PARTITION_BY, build_timeline

MARKER = "_tilewise_timeline.json"  # "_": Delta and VACUUM leave it alone


def marker(wh: Warehouse, fs_name: str) -> dict[str, Any] | None:
    """{"blocks_table", "blocks_version", "timeline_version"} of the last timeline commit, or None."""
    path = wh.path(timeline_table(fs_name)) / MARKER
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and {"blocks_version", "timeline_version"} <= set(data) else None


def in_step(wh: Warehouse, fs_name: str, blocks_version: int) -> int | None:
    """The timeline version derived from `blocks_version` of the block table, if there is one."""
    m = marker(wh, fs_name)
    current = wh.version(timeline_table(fs_name))
    if m is None or current is None or m["blocks_version"] != blocks_version or m["timeline_version"] > current:
        return None
    return int(m["timeline_version"])


def follow(
    engine: Engine, wh: Warehouse, run: Run, fs: FeatureSet, blocks_table: str, blocks_version: int | None, *,
    lo: int | None = None, hi: int | None = None, rebuild: bool = False, label: str | None = None,
) -> None:
    """Bring the timeline to `blocks_version` of `blocks_table`, which replaced the finest blocks
    starting in [lo, hi) (epoch seconds) of the version before it. Without a range (or with
    `rebuild`, or when the timeline was not at the version before) every day is derived again;
    when the timeline is already at `blocks_version`, nothing is done."""
    if blocks_version is None:
        return
    table = timeline_table(fs.name)
    label = label or fs.name
    with wh.lock(table):
        if in_step(wh, fs.name, blocks_version) is not None:
            return
        finest = wh.read(blocks_table, version=blocks_version).filter(F.col(BLOCK_SIZE) == fs.finest.seconds)
        whole = rebuild or lo is None or hi is None or in_step(wh, fs.name, blocks_version - 1) is None
        rows = build_timeline(finest, fs)
        if not whole and wh.exists(table) and _columns(wh.read(table)) != _columns(rows):
            whole = True  # the timeline's columns are another definition's: derive it all again
        days, what = None, "every day"
        if not whole:
            assert lo is not None and hi is not None
            days = WholePartitions(DAY, _day(lo), _day(hi - 1))
            what = f"days {days.first} .. {days.last}"
            rows = build_timeline(finest.filter(F.col(BLOCK_DATE).between(F.lit(days.first), F.lit(days.last))), fs)
        folder = run.dir / "staged" / table
        with run.step(f"{label}: timeline of {blocks_table} v{blocks_version} ({what})"):
            staged = stage(engine.spark, folder, rows, PARTITION_BY)
            blocks_in = finest if days is None else finest.filter(F.col(BLOCK_DATE).between(F.lit(days.first), F.lit(days.last)))
            expected = blocks_in.count()
            held = int(staged.agg(F.sum(F.size(STARTS))).collect()[0][0] or 0)
            rows_staged = staged_rows(folder)
        report = gate.audit(run, table, staged, timeline_suite(list(fs.key), DAY), engine=engine.name)
        extra = [] if held == expected else [f"timeline holds {held:,} blocks, {blocks_table} v{blocks_version} {expected:,}"]
        gate.require(run, report, extra)
        with run.step(f"{label}: publish {table}"):
            if days is None:
                result = wh.overwrite(table, staged, PARTITION_BY)
            else:
                result = wh.replace_partitions(table, staged, [folder], [days], PARTITION_BY)
        write_marker(wh, fs.name, blocks_table, blocks_version, result.version)
        gate.discard_staged(run)
    before = run.outputs.get(table, {})  # a chunked backfill derives the timeline once per chunk
    run.outputs[table] = {"version": result.version, "rows": rows_staged + (before.get("rows") or 0),
                          "blocks_version": blocks_version, "blocks": expected + (before.get("blocks") or 0)}


def for_lookup(engine: Engine, wh: Warehouse, run: Run, fs_name: str, blocks_table: str, blocks_version: int) -> DataFrame | None:
    """The timeline a training set's sweep reads for `blocks_version`, or None (with a note) when
    there is none in step with it: the sweep then reads the blocks themselves."""
    if engine.profile.point_in_time == "sql":
        return None
    table = timeline_table(fs_name)
    version = in_step(wh, fs_name, blocks_version)
    if version is not None:
        run.inputs[table] = {"version": version, "blocks_version": blocks_version}
        return wh.read(table, version=version)
    m = marker(wh, fs_name)
    why = "does not exist" if m is None else f"was derived from v{m['blocks_version']}"
    run.notes.append(
        f"{fs_name}: features read from the blocks of {blocks_table} v{blocks_version}, not from {table} ({why}): "
        f"same values, slower; the next `tilewise backfill` of {fs_name} derives the timeline again"
    )
    return None


def write_marker(wh: Warehouse, fs_name: str, blocks_table: str, blocks_version: int, timeline_version: int) -> None:
    """Record (atomically) that the timeline's `timeline_version` derives from `blocks_version`."""
    path = wh.path(timeline_table(fs_name)) / MARKER
    tmp = path.with_suffix(".tmp")
    state = {"blocks_table": blocks_table, "blocks_version": blocks_version, "timeline_version": timeline_version}
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def _columns(df: DataFrame) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in df.schema.fields}


def _day(epoch: int) -> date:
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=epoch)).date()
