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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from spark_jobs.defs.lineage import Lineage, training_lineage
from spark_jobs.defs.models import Definitions, FeatureRef, TrainingSet
from spark_jobs.engine.session import Engine
from spark_jobs.errors import DefinitionError, InputDataError
from spark_jobs.jobs import consistency, timeline
from spark_jobs.names import IMPRESSION_DATE as DATE
from spark_jobs.names import IMPRESSION_ID as ID
from spark_jobs.names import BLOCK_DATE, WATERMARK, blocks_table, consistency_table, cutoff_column, training_table
from spark_jobs.quality import consistency_report, gate
from spark_jobs.quality.suites import training_expectations
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.sources import InputStats, TimeRange, latest_time, read_events, reading, truncation_notes
from spark_jobs.storage import coverage
from spark_jobs.storage.bucketed import bucket_frames, drop_bucketed
from spark_jobs.storage.tables import Warehouse, WholePartitions, WriteResult, stage
from spark_jobs.transforms import joins
from spark_jobs.transforms.blocks import quote, resolve_problem
from spark_jobs.transforms.events import TS, dedupe, in_range, unparseable_time
from spark_jobs.transforms.pit import fill_empty
from spark_jobs.transforms.sweep import point_in_time, warm_up_in_background


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
        _build(_Build(engine, wh, defs, run, defs.training_sets[name], start, end, stats), label_cutoff, explain, rebuild)


@dataclass(frozen=True)
class _Build:
    """One training-set run: what each of its steps reads."""

    engine: Engine
    wh: Warehouse
    defs: Definitions
    run: Run
    ts_def: TrainingSet
    start: date
    end: date
    stats: dict[str, InputStats]  # what was read, per source

    @property
    def name(self) -> str:
        return self.ts_def.name

    @property
    def spark(self) -> SparkSession:
        return self.engine.spark

    @property
    def lo(self) -> datetime:
        return midnight(self.start)

    @property
    def hi(self) -> datetime:
        return midnight(self.end)


@dataclass(frozen=True)
class _Impressions:
    """The distinct impressions of [start, end), staged, with what the later steps need of them."""

    rows: DataFrame  # impression_id, _tw_ts, the key columns, the watermark, the logged values
    count: int
    key_columns: list[str]
    watermark: str | None  # the watermark column, when the impressions have one
    timestamp: str  # the impressions' own time column, the output's name for _tw_ts
    # The earliest impression time and the latest end of their lookups (UTC): the windows read
    # blocks from floor_g(first) - W to floor_g(last).
    cuts: tuple[datetime | None, datetime | None]


def _build(b: _Build, label_cutoff: datetime | None, explain: bool, rebuild: bool) -> None:
    ts_def, run = b.ts_def, b.run
    lineage = training_lineage(b.defs, b.name)
    if ts_def.logged is not None:
        consistency_report.preload()
    logged_lineage = consistency.lineage(lineage, ts_def) if ts_def.logged else None
    if not rebuild:
        b.wh.check_lineage(training_table(b.name), lineage)  # before any work; checked again when writing
        if logged_lineage is not None:
            b.wh.check_lineage(consistency_table(b.name), logged_lineage)

    _check_blocks_exist(b)
    imps = _impressions(b)
    if imps.count == 0:
        run.notes.append(
            f"0 impressions of source {ts_def.impressions} dated [{b.start}, {b.end}) "
            f"({run.counts[b.name]['impressions_read']:,} rows read): check the dates and the source's files"
        )
    labels, base = _mature(b, imps, label_cutoff)
    run.inputs["_sources"] = {k: v.as_dict() for k, v in b.stats.items()}
    run.notes.extend(truncation_notes(b.stats))
    immature = run.counts[b.name]["immature_not_emitted"]
    if immature:
        run.notes.append(f"{immature:,} immature impressions (label window still open) not emitted")
    refs_by_fs = _refs_by_feature_set(ts_def)
    _note_history_gaps(b, imps, refs_by_fs)
    features, blocks_read = _features(b, base, imps.watermark, refs_by_fs)
    try:
        staged = _assemble(b, base, {"labels": labels, **features}, imps, refs_by_fs, explain)
        result = _publish(b, staged, blocks_read, lineage, logged_lineage, rebuild)
    finally:
        drop_bucketed(b.engine, run.run_id)
    gate.discard_staged(run)
    counts = run.counts[b.name]
    counts["rows_written"] = rows = counts["rows_staged"]
    run.outputs[training_table(b.name)] = {"version": result.version, "rows": rows}


def history_start(defs: Definitions, feature_sets: Iterable[str], start: date) -> date:
    """The first day a backfill must cover for impressions from `start` on: as far back as the
    longest window of `feature_sets` reaches, in whole days."""
    reach = max(w.seconds for fs in feature_sets for f in defs.feature_sets[fs].features for w in f.windows)
    return start - timedelta(days=-(-reach // 86400))


def _check_blocks_exist(b: _Build) -> None:
    """Every block table the training set reads exists, before any work; else exit 2 with the
    backfill that builds them over the time the windows reach back to."""
    missing = [fs for fs in b.ts_def.feature_sets if b.wh.version(blocks_table(fs)) is None]
    if not missing:
        return
    first = history_start(b.defs, missing, b.start)
    tables = ", ".join(blocks_table(fs) for fs in missing)
    raise InputDataError(
        f"training set {b.name} needs {tables}, which {'do' if len(missing) > 1 else 'does'} not exist yet: run "
        f"tilewise backfill --start {first} --end {b.end} {' '.join(f'--feature-set {fs}' for fs in missing)}"
    )


def _impressions(b: _Build) -> _Impressions:
    """Impressions dated [start, end): null ids and times dropped and counted, one row per
    impression_id (the earliest wins), staged with the columns the later steps use."""
    ts_def, run, lo, hi = b.ts_def, b.run, b.lo, b.hi
    src = b.defs.sources[ts_def.impressions]
    with run.step(f"{b.name}: impressions {b.start} .. {b.end}"):
        # An impression's time is placed in the finest blocks of every feature set it looks up.
        block_s = math.gcd(*(b.defs.feature_sets[fs].block_sizes[0].seconds for fs in ts_def.feature_sets)) or 1
        raw = read_events(b.spark, b.defs.source_read(ts_def.impressions), TimeRange(lo, hi), b.stats, block_s=block_s)
        if ID not in raw.columns:
            raise InputDataError(f"impressions source {src.name}: column {ID!r} not found")
        watermark = WATERMARK if WATERMARK in raw.columns else None
        if watermark:
            raw = raw.withColumn(WATERMARK, F.col(WATERMARK).cast("timestamp"))
        valid = F.col(ID).isNotNull() & (F.col(TS) >= F.lit(lo)) & (F.col(TS) < F.lit(hi))
        cut = F.least(F.col(WATERMARK), F.col(TS)) if watermark else F.col(TS)  # the lookups' end, before flooring
        c = raw.agg(
            F.count(F.lit(1)).alias("read"),
            F.min(F.when(valid, F.col(TS))).alias("first_ts"),  # windows start at floor_g(ts) - W
            F.max(F.when(valid, cut)).alias("last_cut"),
            F.sum(F.when(F.col(quote(src.timestamp)).isNull(), 1).otherwise(0)).alias("null_ts"),
            F.sum(F.when(unparseable_time(src.timestamp), 1).otherwise(0)).alias("bad_ts"),
            F.sum(F.when(F.col(TS).isNotNull() & F.col(ID).isNull(), 1).otherwise(0)).alias("null_id"),
            F.sum(F.when(valid, 1).otherwise(0)).alias("valid"),
        ).collect()[0]
        imps = dedupe(in_range(raw.filter(F.col(TS).isNotNull() & F.col(ID).isNotNull()), lo, hi), (ID,))
        key_cols = _impression_key_columns(b.defs, ts_def)
        missing = [k for k in key_cols if k not in raw.columns]
        if missing:
            raise InputDataError(f"impressions source {src.name}: key column(s) {missing} not found (training set {b.name})")
        keep = [F.col(quote(k)) for k in [ID, TS, *key_cols, *([WATERMARK] if watermark else [])]]
        imps = stage(b.spark, run.dir / "work" / "impressions", imps.select(*keep, *_logged_columns(ts_def, raw)))
        n_imps = imps.count()
    # Counted as soon as known, so a run that fails later still reports them in its manifest.
    duplicates = int(c["valid"] or 0) - n_imps
    run.drop("impressions: null timestamp", int(c["null_ts"] or 0))
    run.drop("impressions: unparseable timestamp", int(c["bad_ts"] or 0))
    run.drop("impressions: null impression_id", int(c["null_id"] or 0))
    run.drop("impressions: duplicate impression_id", duplicates)
    run.counts[b.name] = {
        "impressions_read": int(c["read"]),
        "impressions_distinct": n_imps,
        "duplicates": duplicates,
    }
    return _Impressions(imps, n_imps, key_cols, watermark, src.timestamp, (c["first_ts"], c["last_cut"]))


def _mature(b: _Build, imps: _Impressions, label_cutoff: datetime | None) -> tuple[DataFrame, DataFrame]:
    """(the staged labels, the impressions whose every label window closed by its label's cutoff);
    the others are immature: counted (`immature_not_emitted`), not emitted."""
    run = b.run
    with run.step(f"{b.name}: labels"):
        labels, cutoffs = _labels(b, imps.rows, label_cutoff)
        labels = stage(b.spark, run.dir / "work" / "labels", labels)  # the step's time is the labels' work
        mature = F.lit(True)
        for label in b.ts_def.labels:
            mature = mature & (F.col(TS) + F.expr(f"INTERVAL {label.within.seconds} SECONDS") <= F.lit(cutoffs[label.name]))
        base = imps.rows.filter(mature)
        immature = imps.count - base.count()
    run.counts["label_cutoffs"] = {k: str(v) for k, v in cutoffs.items()}
    run.counts[b.name]["immature_not_emitted"] = immature
    return labels, base


def _note_history_gaps(b: _Build, imps: _Impressions, refs_by_fs: dict[str, list[FeatureRef]]) -> None:
    """A note for each block table that was not backfilled over all the time the impressions'
    windows reach back to: those windows count as empty, which a model should not mistake for
    no activity."""
    first, last = imps.cuts
    if first is None or last is None:
        return
    for fs_name, refs in refs_by_fs.items():
        table = blocks_table(fs_name)
        g = b.defs.feature_sets[fs_name].finest.seconds
        lo, hi = (int(t.replace(tzinfo=timezone.utc).timestamp()) for t in (first, last))
        need_lo = lo - lo % g - max(r.window.seconds for r in refs)
        note = coverage.note(b.wh.path(table), table, fs_name, need_lo, hi - hi % g, f"the windows of {b.name}'s impressions")
        if note:
            b.run.notes.append(note)


def _refs_by_feature_set(ts_def: TrainingSet) -> dict[str, list[FeatureRef]]:
    refs_by_fs: dict[str, list[FeatureRef]] = {}
    for ref in ts_def.features:
        refs_by_fs.setdefault(ref.feature_set, []).append(ref)
    return refs_by_fs


def _features(
    b: _Build, base: DataFrame, watermark: str | None, refs_by_fs: dict[str, list[FeatureRef]]
) -> tuple[dict[str, DataFrame], dict[str, DataFrame]]:
    """(feature set -> its staged point-in-time values per impression, feature set -> its block
    table as read), each block table pinned to the version read here (recorded as an input)."""
    run = b.run
    frames: dict[str, DataFrame] = {}
    blocks_read: dict[str, DataFrame] = {}
    for fs_name, refs in refs_by_fs.items():
        fs = b.defs.feature_sets[fs_name]
        table = blocks_table(fs_name)
        version = b.wh.version(table)
        if version is None:
            raise InputDataError(
                f"training set {b.name} needs {table}, which does not exist: run `tilewise backfill` first"
            )
        run.inputs[table] = {"version": version}
        with run.step(f"{b.name}: features from {table} v{version} ({len(refs)} columns)"):
            req = base.select(
                ID, TS, *([WATERMARK] if watermark else []),
                *[F.col(quote(b.ts_def.impression_column(k))).alias(k) for k in fs.key],
            )
            blocks = blocks_read[fs_name] = b.wh.read(table, version=version)
            # Staged inside the step, so the step's time is the lookup's, and the final join
            # reads small files instead of re-running it.
            frames[fs_name] = stage(b.spark, run.dir / "work" / "features" / fs_name, point_in_time(
                b.engine, req, blocks, fs, refs, id_column=ID, ts=TS, watermark=watermark,
                block_bytes=lambda lo, hi, t=table, v=version: b.wh.partition_bytes(t, v, BLOCK_DATE, lo, hi),
                timeline=timeline.for_lookup(b.engine, b.wh, run, fs_name, table, version)))
    return frames, blocks_read


def _assemble(
    b: _Build, base: DataFrame, frames: dict[str, DataFrame], imps: _Impressions,
    refs_by_fs: dict[str, list[FeatureRef]], explain: bool,
) -> DataFrame:
    """The training rows, staged: the impressions joined with the labels and every feature frame,
    empty windows filled, in the table's column order (the caller drops the bucketed tables)."""
    ts_def = b.ts_def
    with b.run.step(f"{b.name}: join {len(frames)} frames on {ID}"):
        out = _final_joins(b.engine, b.run.run_id, base, frames, explain)
        for fs_name, refs in refs_by_fs.items():
            out = fill_empty(out, b.defs.feature_sets[fs_name], refs)
        for label in ts_def.labels:
            out = out.withColumn(label.name, F.coalesce(F.col(label.name), F.lit(0)).cast("int"))
        out = out.withColumn(DATE, F.to_date(TS))
        columns = _output_columns(ts_def, imps.key_columns, imps.timestamp, imps.watermark, refs_by_fs)
        out = out.withColumnRenamed(TS, imps.timestamp)
        out = out.select(*[quote(col) for col in columns])
        table = training_table(b.name)
        staged = stage(b.spark, b.run.dir / "staged" / table, out, [DATE])
        b.run.counts[b.name]["rows_staged"] = staged.count()
    return staged


def _publish(
    b: _Build, staged: DataFrame, blocks_read: dict[str, DataFrame], lineage: Lineage,
    logged_lineage: Lineage | None, rebuild: bool,
) -> WriteResult:
    """Validate the staged rows (and, with logged values, their consistency table) and publish
    both over exactly the dates [start, end), the training table first, only when both passed."""
    ts_def, run, wh = b.ts_def, b.run, b.wh
    table = training_table(b.name)
    predicate = f"{DATE} >= DATE'{b.start}' AND {DATE} < DATE'{b.end}'"
    checked: list[consistency.Checked] = []

    def publish() -> WriteResult:
        if rebuild:
            return wh.replace_range(table, staged, predicate, [DATE], rebuild=True, lineage=lineage)
        days = WholePartitions(DATE, b.start, b.end - timedelta(days=1))
        return wh.replace_partitions(table, staged, [run.dir / "staged" / table], [days], [DATE], lineage=lineage,
                                     rows=run.counts[b.name]["rows_staged"])

    def measure() -> Callable[[], None]:
        ts_column = b.defs.sources[ts_def.impressions].timestamp
        checked.append(consistency.measure(b.engine, b.defs, run, ts_def, staged, id_column=ID, ts_column=ts_column,
                                           blocks=blocks_read))
        return lambda: consistency.require(run, checked[0])

    result = gate.validate_and_publish(
        run, table, staged, training_expectations(b.defs, b.name, staged.columns),
        publish,
        engine=b.engine.name, label=b.name, alongside=measure if ts_def.logged is not None else None,
    )
    for c in checked:
        with run.step(f"{b.name}: publish {c.table}"):
            written = wh.replace_range(c.table, c.staged, predicate, [DATE], rebuild=rebuild, lineage=logged_lineage)
        run.outputs[c.table] = {"version": written.version, "rows": len(c.rows)}
    return result


def _final_joins(engine: Engine, run_id: str, base: DataFrame, frames: dict[str, DataFrame], explain: bool) -> DataFrame:
    """The impressions left-joined with every frame on the impression id; within buckets where the
    engine can bucket (the caller drops the bucketed tables)."""
    use_buckets = engine.supports_bucketing
    if use_buckets:
        base, frames = bucket_frames(engine, run_id, base, frames, ID)
    out = joins.join_on_id(base, frames, ID)
    if explain:
        print(f"== physical plan of the final joins ({'bucketed' if use_buckets else 'hash'}) ==")
        out.explain(mode="formatted")
    return out


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


def _output_columns(
    ts_def: TrainingSet, key_cols: list[str], ts_name: str, watermark: str | None,
    refs_by_fs: dict[str, list[FeatureRef]],
) -> list[str]:
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


def _labels(b: _Build, imps: DataFrame, label_cutoff: datetime | None) -> tuple[DataFrame, dict[str, datetime]]:
    """Label columns per impression_id, and each label's maturity cutoff."""
    spark, run, ts_def, lo, hi = b.spark, b.run, b.ts_def, b.lo, b.hi
    longest = max((lb.within.seconds for lb in ts_def.labels), default=0)
    rng = TimeRange(lo, hi + timedelta(seconds=longest))
    events: DataFrame | None = None
    cutoffs: dict[str, datetime] = {}
    seen: dict[str, datetime | None] = {}
    for source in sorted({lb.source for lb in ts_def.labels}):
        read = b.defs.source_read(source)
        src = read.source
        ev = read_events(spark, read, rng, b.stats)
        if ID not in ev.columns:
            raise InputDataError(f"label source {source}: column {ID!r} not found")
        problems = [
            f"{ts_def.where(f'labels.{i}.filter')}: {lb.filter!r} does not resolve on source {source} "
            f"(columns: {', '.join(c for c in ev.columns if not c.startswith('_tw_'))}): {why}"
            for i, lb in enumerate(ts_def.labels) if lb.source == source and lb.filter
            for why in [resolve_problem(ev, lb.filter)] if why is not None
        ]
        if problems:
            raise DefinitionError.collected(problems)
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
            seen[source], future = latest_time(spark, read, run.clock)
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
