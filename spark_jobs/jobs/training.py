"""`tilewise training-set NAME`: impressions + point-in-time features + delayed labels.

1. impressions with dates in [start, end): null ids/timestamps dropped and counted, one row per
   `impression_id` (the earliest wins);
2. labels: 1 if an event of the label's source passing its filter has this impression_id and
   `ts <= e.ts < ts + within`; impressions whose label window has not closed by the cutoff
   (`--label-cutoff`, else the latest label event seen) are immature: counted, not emitted;
3. each feature set: windows assembled from its block table, pinned to the version read at the
   start (recorded in the manifest, so the set can be rebuilt exactly), plus `{fs}_cutoff`;
4. validated (built-in checks + the definition's `validation`), then published over exactly the
   dates [start, end) of `training/{name}`;
5. with a `logged:` block, the logged values are carried as `logged_{name}` and compared with the
   backfilled ones (`jobs.consistency`): `consistency/{name}` is validated with the training table
   and published after it, over the same dates, only when both passed.

On classic Spark the impressions are bucketed by `impression_id` once and every joined frame is
bucketed the same way, so the final joins happen within buckets (no Exchange); Sail has no
bucketBy and uses ordinary hash joins (same rows).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from spark_jobs.defs.lineage import training_lineage
from spark_jobs.defs.models import Definitions, FeatureRef, TrainingSet
from spark_jobs.engine.session import Engine
from spark_jobs.errors import DefinitionError, InputDataError
from spark_jobs.jobs import consistency, timeline
from spark_jobs.jobs.backfill import table_name as blocks_table
from spark_jobs.quality import consistency_report, gate
from spark_jobs.jobs.validate import WATERMARK, training_expectations
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.sources import InputStats, TimeRange, latest_time, read_source, reading, truncation_notes
from spark_jobs.storage.tables import Warehouse, stage
from spark_jobs.transforms import joins
from spark_jobs.transforms.blocks import quote
from spark_jobs.transforms.events import TS, dedupe, in_range, unparseable_time, with_event_time
from spark_jobs.transforms.pit import cutoff_column, fill_empty
from spark_jobs.transforms.sweep import point_in_time, warm_up_in_background

ID = "impression_id"
DATE = "impression_date"


def table_name(name: str) -> str:
    return f"training/{name}"


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)


def run(
    engine: Engine,
    wh: Warehouse,
    defs: Definitions,
    run: Run,
    name: str,
    start: date,
    end: date,
    label_cutoff: datetime | None = None,
    explain: bool = False,
    rebuild: bool = False,
) -> None:
    if label_cutoff is not None and label_cutoff > run.clock:
        raise InputDataError(
            f"--label-cutoff {label_cutoff:%Y-%m-%dT%H:%M:%S} is in the future (now {run.clock:%Y-%m-%dT%H:%M:%S} UTC): "
            "labels cannot be complete up to then"
        )
    warm_up_in_background(engine)
    stats: dict[str, InputStats] = {}
    with reading(stats):  # an engine failure on a source's file names the source and file
        _build(engine, wh, defs, run, name, start, end, label_cutoff, explain, rebuild, stats)


def _build(
    engine: Engine,
    wh: Warehouse,
    defs: Definitions,
    run: Run,
    name: str,
    start: date,
    end: date,
    label_cutoff: datetime | None,
    explain: bool,
    rebuild: bool,
    stats: dict[str, InputStats],
) -> None:
    ts_def = defs.training_sets[name]
    spark = engine.spark
    lo, hi = midnight(start), midnight(end)
    src = defs.sources[ts_def.impressions]
    lineage = training_lineage(defs, name)
    if ts_def.logged is not None:
        consistency_report.preload()
    logged_lineage = consistency.lineage(lineage, ts_def) if ts_def.logged else None
    if not rebuild:
        wh.check_lineage(table_name(name), lineage)  # before any work; checked again when writing
        if logged_lineage is not None:
            wh.check_lineage(consistency.table_name(name), logged_lineage)

    with run.step(f"{name}: impressions {start} .. {end}"):
        # An impression's time is placed in the finest blocks of every feature set it looks up.
        block_s = math.gcd(*(defs.feature_sets[fs].block_sizes[0].seconds for fs in ts_def.feature_sets)) or 1
        raw = read_source(spark, defs, ts_def.impressions, TimeRange(lo, hi), stats, block_s=block_s)
        raw = with_event_time(raw, src.timestamp, src.name)
        if ID not in raw.columns:
            raise InputDataError(f"impressions source {src.name}: column {ID!r} not found")
        watermark = WATERMARK if WATERMARK in raw.columns else None
        if watermark:
            raw = raw.withColumn(WATERMARK, F.col(WATERMARK).cast("timestamp"))
        c = raw.agg(
            F.count(F.lit(1)).alias("read"),
            F.sum(F.when(F.col(quote(src.timestamp)).isNull(), 1).otherwise(0)).alias("null_ts"),
            F.sum(F.when(unparseable_time(src.timestamp), 1).otherwise(0)).alias("bad_ts"),
            F.sum(F.when(F.col(TS).isNotNull() & F.col(ID).isNull(), 1).otherwise(0)).alias("null_id"),
            F.sum(
                F.when(F.col(ID).isNotNull() & (F.col(TS) >= F.lit(lo)) & (F.col(TS) < F.lit(hi)), 1).otherwise(0)
            ).alias("valid"),
        ).collect()[0]
        imps = dedupe(in_range(raw.filter(F.col(TS).isNotNull() & F.col(ID).isNotNull()), lo, hi), (ID,))
        key_cols = _impression_key_columns(defs, ts_def)
        missing = [k for k in key_cols if k not in raw.columns]
        if missing:
            raise InputDataError(f"impressions source {src.name}: key column(s) {missing} not found (training set {name})")
        keep = [F.col(quote(k)) for k in [ID, TS, *key_cols, *([WATERMARK] if watermark else [])]]
        imps = stage(spark, run.dir / "work" / "impressions", imps.select(*keep, *_logged_columns(ts_def, raw)))
        n_imps = imps.count()
    # Counted as soon as known, so a run that fails later still reports them in its manifest.
    duplicates = int(c["valid"] or 0) - n_imps
    run.drop("impressions: null timestamp", int(c["null_ts"] or 0))
    run.drop("impressions: unparseable timestamp", int(c["bad_ts"] or 0))
    run.drop("impressions: null impression_id", int(c["null_id"] or 0))
    run.drop("impressions: duplicate impression_id", duplicates)
    counts = run.counts[name] = {
        "impressions_read": int(c["read"]),
        "impressions_distinct": n_imps,
        "duplicates": duplicates,
    }

    with run.step(f"{name}: labels"):
        labels, cutoffs = _labels(spark, defs, run, ts_def, imps, lo, hi, label_cutoff, stats)
        labels = stage(spark, run.dir / "work" / "labels", labels)  # the step's time is the labels' work
        mature = F.lit(True)
        for label in ts_def.labels:
            mature = mature & (F.col(TS) + F.expr(f"INTERVAL {label.within.seconds} SECONDS") <= F.lit(cutoffs[label.name]))
        base = imps.filter(mature)
        immature = n_imps - base.count()
    run.counts["label_cutoffs"] = {k: str(v) for k, v in cutoffs.items()}
    counts["immature_not_emitted"] = immature
    run.inputs["_sources"] = {k: v.as_dict() for k, v in stats.items()}
    run.notes.extend(truncation_notes(stats))
    if immature:
        run.notes.append(f"{immature:,} immature impressions (label window still open) not emitted")

    frames = {"labels": labels}
    blocks_read: dict[str, DataFrame] = {}
    refs_by_fs: dict[str, list[FeatureRef]] = {}
    for ref in ts_def.features:
        refs_by_fs.setdefault(ref.feature_set, []).append(ref)
    for fs_name, refs in refs_by_fs.items():
        fs = defs.feature_sets[fs_name]
        table = blocks_table(fs_name)
        version = wh.version(table)
        if version is None:
            raise InputDataError(
                f"training set {name} needs {table}, which does not exist: run `tilewise backfill` first"
            )
        run.inputs[table] = {"version": version}
        with run.step(f"{name}: features from {table} v{version} ({len(refs)} columns)"):
            req = base.select(
                ID, TS, *([WATERMARK] if watermark else []),
                *[F.col(quote(ts_def.impression_column(k))).alias(k) for k in fs.key],
            )
            blocks = blocks_read[fs_name] = wh.read(table, version=version)
            # Staged inside the step, so the step's time is the lookup's, and the final join
            # reads small files instead of re-running it.
            frames[fs_name] = stage(spark, run.dir / "work" / "features" / fs_name, point_in_time(
                engine, req, blocks, fs, refs, id_column=ID, ts=TS, watermark=watermark,
                block_bytes=lambda lo, hi, t=table, v=version: wh.partition_bytes(t, v, "block_date", lo, hi),
                timeline=timeline.for_lookup(engine, wh, run, fs_name, table, version)))

    try:
        with run.step(f"{name}: join {len(frames)} frames on {ID}"):
            out = joins.join_on_id(engine, run, base, frames, ID, explain=explain)
            for fs_name, refs in refs_by_fs.items():
                out = fill_empty(out, defs.feature_sets[fs_name], refs)
            for label in ts_def.labels:
                out = out.withColumn(label.name, F.coalesce(F.col(label.name), F.lit(0)).cast("int"))
            out = out.withColumn(DATE, F.to_date(TS))
            columns = _output_columns(ts_def, key_cols, src.timestamp, watermark, refs_by_fs)
            out = out.withColumnRenamed(TS, src.timestamp)
            out = out.select(*[quote(col) for col in columns])
            table = table_name(name)
            staged = stage(spark, run.dir / "staged" / table, out)
            rows = counts["rows_staged"] = staged.count()

        expectations = training_expectations(defs, name, staged.columns)
        report = gate.audit(run, table, staged, expectations, engine=engine.name)
        checked = None
        if ts_def.logged is not None:
            checked = consistency.measure(engine, defs, run, ts_def, staged, id_column=ID, ts_column=src.timestamp,
                                          blocks=blocks_read)
        gate.require(run, report)
        if checked is not None:
            consistency.require(run, checked)
        predicate = f"{DATE} >= DATE'{start}' AND {DATE} < DATE'{end}'"
        with run.step(f"{name}: publish {table}"):
            result = gate.publish(run, report, lambda: wh.replace_range(table, staged, predicate, [DATE], rebuild=rebuild, lineage=lineage))
        if checked is not None:
            with run.step(f"{name}: publish {checked.table}"):
                written = wh.replace_range(checked.table, checked.staged, predicate, [DATE], rebuild=rebuild,
                                           lineage=logged_lineage)
            run.outputs[checked.table] = {"version": written.version, "rows": len(checked.rows)}
    finally:
        joins.drop_bucketed(engine, run)
    gate.discard_staged(run)
    counts["rows_written"] = rows
    run.outputs[table] = {"version": result.version, "rows": rows}


def _impression_key_columns(defs: Definitions, ts_def: TrainingSet) -> list[str]:
    cols: list[str] = []
    for fs_name in ts_def.feature_sets:
        for k in defs.feature_sets[fs_name].key:
            col = ts_def.impression_column(k)
            if col not in cols:
                cols.append(col)
    return cols


def _logged_columns(ts_def: TrainingSet, raw: DataFrame) -> list[Column]:
    """`logged_{name}` for each logged value, as logged: a field of the struct or map column, or a
    column of its own. A value the impressions lack is a definitions error (`file:line field`)."""
    if ts_def.logged is None:
        return []
    fields = {f.name: f.dataType for f in raw.schema.fields}
    columns = {k: frozenset(t.names) if isinstance(t, StructType) else None for k, t in fields.items()}
    problems = ts_def.logged_problems(columns)
    if problems:
        raise DefinitionError.collected(problems)
    top = ts_def.logged.column
    return [
        (F.col(quote(top))[name] if top else F.col(quote(name))).alias(ts_def.logged_column(name))
        for name in ts_def.logged.values
    ]


def _output_columns(ts_def, key_cols, ts_name, watermark, refs_by_fs) -> list[str]:  # type: ignore[no-untyped-def]
    cols = [ID, *key_cols, TS]
    if watermark:
        cols.append(WATERMARK)
    for fs_name, refs in refs_by_fs.items():
        cols.extend(r.column for r in refs)
        cols.append(cutoff_column(fs_name))
    cols.extend(lb.name for lb in ts_def.labels)
    cols.extend(ts_def.logged_column(n) for n in (ts_def.logged.values if ts_def.logged else ()))
    cols.append(DATE)
    return [ts_name if c == TS else c for c in cols]


def _labels(spark, defs, run, ts_def, imps, lo, hi, label_cutoff, stats):  # type: ignore[no-untyped-def]
    """Label columns per impression_id, and each label's maturity cutoff."""
    longest = max((lb.within.seconds for lb in ts_def.labels), default=0)
    rng = TimeRange(lo, hi + timedelta(seconds=longest))
    events = None
    cutoffs: dict[str, datetime] = {}
    seen: dict[str, datetime | None] = {}
    for source in sorted({lb.source for lb in ts_def.labels}):
        src = defs.sources[source]
        ev = with_event_time(read_source(spark, defs, source, rng, stats), src.timestamp, source)
        if ID not in ev.columns:
            raise InputDataError(f"label source {source}: column {ID!r} not found")
        bad = ev.agg(
            F.sum(F.when(F.col(quote(src.timestamp)).isNull(), 1).otherwise(0)).alias("null_ts"),
            F.sum(F.when(unparseable_time(src.timestamp), 1).otherwise(0)).alias("bad_ts"),
            F.sum(F.when(F.col(TS).isNotNull() & F.col(ID).isNull(), 1).otherwise(0)).alias("null_id"),
        ).collect()[0]
        run.drop(f"labels {source}: null timestamp", int(bad["null_ts"] or 0))
        run.drop(f"labels {source}: unparseable timestamp", int(bad["bad_ts"] or 0))
        run.drop(f"labels {source}: null impression_id", int(bad["null_id"] or 0))
        ev = in_range(ev.filter(F.col(ID).isNotNull()), rng.lo, rng.hi)
        if label_cutoff is None:
            # Events after the run's clock are counted, and never make label windows look closed.
            seen[source], future = latest_time(spark, defs, source, run.clock)
            run.drop(f"labels {source}: timestamp in future", future)
        for lb in [x for x in ts_def.labels if x.source == source]:
            tagged = ev.filter(lb.filter) if lb.filter else ev
            tagged = tagged.select(ID, F.col(TS).alias("_tw_lts"), F.lit(lb.name).alias("_tw_label"))
            events = tagged if events is None else events.unionByName(tagged)
    for lb in ts_def.labels:
        cut = label_cutoff or seen.get(lb.source)
        cutoffs[lb.name] = cut if cut is not None else lo  # no label events at all: nothing is mature
    if events is None:
        return imps.select(ID).limit(0), cutoffs
    hits = imps.select(ID, TS).join(events, on=ID, how="inner")
    aggs = [
        F.max(
            F.when(
                (F.col("_tw_label") == lb.name)
                & (F.col("_tw_lts") >= F.col(TS))
                & (F.col("_tw_lts") < F.col(TS) + F.expr(f"INTERVAL {lb.within.seconds} SECONDS")),
                1,
            ).otherwise(0)
        ).alias(lb.name)
        for lb in ts_def.labels
    ]
    return hits.groupBy(ID).agg(*aggs), cutoffs
