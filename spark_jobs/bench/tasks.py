"""The bench's worker side: one engine, the tasks of one or more sections, timings to a JSON file.

Each task calls the real jobs (backfill, snapshot, training lookups, final joins) through the job
runner and times them side by side with the baselines of `spark_jobs.bench.baselines`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from spark_jobs.bench.baselines import events_between, naive_lookup, naive_windows
from spark_jobs.bench.config import ID, LENGTHS, PIT_DAYS, START, WATERMARK, Sizes
from spark_jobs.jobs.training import midnight


# -- the worker: one engine, one task -------------------------------------------------------------
def worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    from spark_jobs.defs.loader import load_definitions
    from spark_jobs.engine.profile import load_profile
    from spark_jobs.engine.session import open_engine, use_utc

    use_utc()
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["sizes"].items()}
    sizes = Sizes(**fields)
    profile = load_profile(spec["conf"], spec["sets"])
    defs = load_definitions(spec["defs"], data_root=profile.data_root)
    t = time.perf_counter()
    with open_engine(profile) as engine:
        startup = time.perf_counter() - t
        # The quality gate's first use imports Great Expectations (seconds): a per-process constant
        # that would otherwise land in whichever timing comes first.
        t = time.perf_counter()
        importlib.import_module("great_expectations")
        engine.spark.range(10).count()
        warmup = time.perf_counter() - t
        params = spec.get("params") or {}
        res: dict[str, Any] = {task: TASKS[task](engine, defs, sizes, **params.get(task, {})) for task in spec["tasks"]}
    res.update({"engine": engine.name, "table_format": engine.table_format, "startup_s": startup, "warmup_s": warmup})
    Path(spec["result"]).write_text(json.dumps(res))
    return 0


@contextlib.contextmanager
def _timer(into: dict[str, list[float]], key: str) -> Iterator[None]:
    t = time.perf_counter()
    yield
    into.setdefault(key, []).append(time.perf_counter() - t)


def _job(engine: Any, defs: Any, command: str, body: Callable[..., None], **kw: Any) -> Any:
    from spark_jobs.jobs.runner import execute, warehouse_for
    from spark_jobs.storage.manifest import Run

    run = Run(command, warehouse_for(engine).root, args={"bench": True}, quiet=True)
    execute(engine, defs, run, body, **kw)
    return run


def _write(df: Any, path: Path) -> None:
    """Materialise every column (a Parquet write), replacing what a previous repeat wrote."""
    shutil.rmtree(path, ignore_errors=True)
    df.write.mode("overwrite").parquet(str(path))


def task_nightly(engine: Any, defs: Any, sizes: Sizes) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from spark_jobs.jobs import backfill, snapshot
    from spark_jobs.jobs.runner import warehouse_for

    wh = warehouse_for(engine)
    new_day = START + timedelta(days=sizes.history_days)
    as_of = midnight(new_day + timedelta(days=1))
    setup_s = _history(engine, defs, new_day)
    if sizes.mode == "full":
        # One untimed nightly first: the first backfill and snapshot of a process pay one-off costs
        # (quick and tiny modes rely on the history backfill and the worker's warm-up instead).
        _job(engine, defs, "backfill", backfill.run, start=new_day, end=new_day + timedelta(days=1), names=["user_1d"])
        _job(engine, defs, "snapshot", snapshot.run, as_of=as_of, names=["user_1d"])
    times: dict[str, dict[str, list[float]]] = {k: {} for k in LENGTHS}
    for r in range(sizes.repeats):
        for k in (LENGTHS if r % 2 == 0 else LENGTHS[::-1]):
            name = f"user_{k}"
            with _timer(times[k], "backfill_s"):
                b = _job(engine, defs, "backfill", backfill.run, start=new_day, end=new_day + timedelta(days=1), names=[name])
            with _timer(times[k], "snapshot_s"):
                sn = _job(engine, defs, "snapshot", snapshot.run, as_of=as_of, names=[name])
            times[k].setdefault("gate_s", []).append(_gate_seconds(b) + _gate_seconds(sn))
            with _timer(times[k], "naive_s"):
                _write(naive_windows(engine.spark, defs, defs.feature_sets[name], as_of), _scratch(wh, f"naive-{k}"))
    runs = {}
    for k in LENGTHS:
        t = times[k]
        nightly = [b + s for b, s in zip(t["backfill_s"], t["snapshot_s"])]
        compute = [n - g for n, g in zip(nightly, t["gate_s"])]
        runs[k] = {**{key: statistics.median(v) for key, v in t.items()}, "nightly_s": statistics.median(nightly),
                   "nightly_without_gate_s": statistics.median(compute), "all": t}
    # Events each job reads: the naive job re-reads every window's range, the nightly one day plus
    # lateness. At equal cost per event their ratio would be the naive / nightly ratio.
    events_read = {"nightly": next(iter(b.counts.values()))["events_aggregated"]}  # clean events, as the naive counts
    check: dict[str, Any] = {}
    for k in LENGTHS[-2:]:
        fs = defs.feature_sets[f"user_{k}"]
        windows = sorted({w.seconds for f in fs.features for w in f.windows})
        events_read[f"naive_{k}"] = sum(
            events_between(engine.spark, defs, fs, as_of - timedelta(seconds=w), as_of).count() for w in windows)
        counts = [f"{f.name}_{w}" for f in fs.features if f.aggregation == "count" for w in f.windows]
        snap = wh.read(f"snapshots/user_{k}").agg(*[F.sum(c).alias(c) for c in counts]).collect()[0].asDict()
        naive = engine.spark.read.parquet(str(_scratch(wh, f"naive-{k}"))).agg(*[F.sum(c).alias(c) for c in counts])
        naive_sums = naive.collect()[0].asDict()
        check[k] = {"snapshot_sums": snap, "naive_sums": naive_sums,
                    "agree": all(int(snap[c] or 0) == int(naive_sums[c] or 0) for c in counts)}
    return {
        "history_days": sizes.history_days,
        "events_per_day": sizes.events_per_day,
        "keys": wh.read(f"snapshots/user_{LENGTHS[-1]}").count(),
        "features": len(defs.feature_sets[f"user_{LENGTHS[-1]}"].features),
        "repeats": sizes.repeats,
        "setup_history_s": setup_s,
        "events_read": events_read,
        "runs": runs,
        "check": {"agree": all(c["agree"] for c in check.values()), **check},
    }


def _gate_seconds(run: Any) -> float:
    """Seconds a run spent in Great Expectations validation (its `validate ...` steps)."""
    return sum(v for k, v in run.steps.items() if k.startswith("validate "))


def _scratch(wh: Any, name: str) -> Path:
    return wh.root / "_bench" / name


def _history(engine: Any, defs: Any, new_day: date) -> float:
    """Backfill the history once (the longest windows' feature set), then copy its blocks to the others.

    The feature sets have the same features and block sizes (only their windows differ), so their
    block tables are identical; copying saves backfills of the whole history.
    """
    from spark_jobs.jobs import backfill, timeline
    from spark_jobs.jobs.runner import warehouse_for
    from spark_jobs.names import timeline_table

    wh = warehouse_for(engine)
    t = time.perf_counter()
    longest = f"user_{LENGTHS[-1]}"
    if not wh.exists(f"blocks/{longest}"):
        _job(engine, defs, "backfill", backfill.run, start=START, end=new_day, names=[longest])
    for k in LENGTHS[:-1]:
        target = wh.path(f"blocks/user_{k}")
        if not wh.exists(f"blocks/user_{k}"):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(wh.path(f"blocks/{longest}"), target)
            # The timeline too, with its marker naming the copy: otherwise the first timed nightly
            # run of each copy would derive the timeline of the whole history.
            tl = wh.path(timeline_table(f"user_{k}"))
            shutil.rmtree(tl, ignore_errors=True)
            shutil.copytree(wh.path(timeline_table(longest)), tl)
            m = timeline.marker(wh, longest)
            assert m is not None, f"the backfill of {longest} left no timeline marker"
            timeline.write_marker(wh, f"user_{k}", f"blocks/user_{k}", m["blocks_version"], m["timeline_version"])
    return time.perf_counter() - t


def _impressions(engine: Any, defs: Any, lo: datetime, hi: datetime, keys: list[str], folder: Path) -> Any:
    """Distinct impressions in [lo, hi) with their keys and watermark, materialised once."""
    from pyspark.sql import functions as F

    from spark_jobs.storage.sources import TimeRange, read_events
    from spark_jobs.storage.tables import stage
    from spark_jobs.transforms.events import TS, dedupe, in_range

    raw = read_events(engine.spark, defs.source_read("impressions"), TimeRange(lo, hi), {})
    raw = raw.withColumn(WATERMARK, F.col(WATERMARK).cast("timestamp"))
    imps = dedupe(in_range(raw.filter(F.col(ID).isNotNull()), lo, hi), (ID,))
    return stage(engine.spark, folder, imps.select(ID, TS, WATERMARK, *keys))


def task_pit(engine: Any, defs: Any, sizes: Sizes) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from spark_jobs.jobs import snapshot, timeline
    from spark_jobs.kernels.partition import warm_up
    from spark_jobs.names import timeline_table
    from spark_jobs.jobs.runner import warehouse_for
    from spark_jobs.storage.tables import stage
    from spark_jobs.transforms.events import TS
    from spark_jobs.transforms.pit import fill_empty, lookup
    from spark_jobs.transforms.sweep import point_in_time, sweep_lookup, sweep_partitions

    wh = warehouse_for(engine)
    new_day = START + timedelta(days=sizes.history_days)
    end = midnight(new_day + timedelta(days=1))
    _history(engine, defs, new_day)
    fs = defs.feature_sets["user_7d"]
    refs = snapshot.all_refs(fs)
    columns = [r.column for r in refs]
    if not wh.exists("snapshots/user_7d"):
        _job(engine, defs, "snapshot", snapshot.run, as_of=end, names=["user_7d"])
    # Impressions of the last PIT_DAYS days of history, up to the new day (excluded: it may not be
    # backfilled), so every 7d window has blocks behind it.
    base = _impressions(engine, defs, midnight(new_day - timedelta(days=PIT_DAYS)), midnight(new_day), ["user_id"],
                        _scratch(wh, "pit-impressions"))
    n = base.count()
    floor_values = stage(engine.spark, _scratch(wh, "pit-floor-values"), wh.read("snapshots/user_7d").select("user_id", *columns))
    blocks = wh.read("blocks/user_7d")
    # The timeline the backfill derives beside the blocks (here for the copied block table).
    _job(engine, defs, "backfill", lambda e, w, d, r: timeline.follow(e, w, r, fs, "blocks/user_7d", w.version("blocks/user_7d")))
    tl = wh.read(timeline_table("user_7d"), version=timeline.in_step(wh, fs.name, wh.version("blocks/user_7d")))
    every = max(1, -(-n // sizes.naive_pit_impressions))
    subset = f"pmod(xxhash64({ID}), {every}) = 0"
    naive_base = stage(engine.spark, _scratch(wh, "pit-naive-impressions"), base.filter(subset))
    n_naive = naive_base.count()
    events = events_between(engine.spark, defs, fs, midnight(START), end)

    def pit() -> Any:
        return fill_empty(point_in_time(engine, base, blocks, fs, refs, id_column=ID, ts=TS, watermark=WATERMARK, timeline=tl), fs, refs)

    def pit_transfer() -> Any:  # the sweep's reads, shuffle and hand-over to Python, no computing
        return sweep_lookup(base, blocks, fs, refs, id_column=ID, ts=TS, watermark=WATERMARK,
                            partitions=sweep_partitions(engine), timeline=tl, transfer_only=True)

    def pit_blocks() -> Any:  # the same sweep over the block rows of every size (no timeline)
        return fill_empty(point_in_time(engine, base, blocks, fs, refs, id_column=ID, ts=TS, watermark=WATERMARK), fs, refs)

    def pit_sql() -> Any:  # the SQL assembly: the reference the sweep is tested against
        return fill_empty(lookup(base, blocks, fs, refs, id_column=ID, ts=TS, watermark=WATERMARK), fs, refs)

    def floor() -> Any:
        return base.select(ID, "user_id").join(floor_values, on="user_id", how="left").select(ID, *columns)

    def naive() -> Any:
        return naive_lookup(naive_base, events, fs, refs)

    # The same pair restricted to the scalar aggregations: how much of the lookup is the sketches.
    scalar = [r for r in refs if fs.feature(r.feature).aggregation in SCALAR]
    scalar_cols = [r.column for r in scalar]

    def pit_scalar() -> Any:
        return fill_empty(point_in_time(engine, base, blocks, fs, scalar, id_column=ID, ts=TS, watermark=WATERMARK, timeline=tl), fs, scalar)

    def floor_scalar() -> Any:
        return base.select(ID, "user_id").join(floor_values, on="user_id", how="left").select(ID, *scalar_cols)

    # The kernels load from numba's disk cache (or compile, the first time on a machine) once per
    # process; a training set does that in a thread behind its impressions and labels. Done here
    # before the clock starts, so no variant's first repeat pays it.
    warm_up()
    times: dict[str, list[float]] = {}
    variants = [("floor", floor), ("pit", pit), ("pit_transfer", pit_transfer), ("pit_blocks", pit_blocks), ("pit_sql", pit_sql), ("naive", naive), ("floor_scalar", floor_scalar),
                ("pit_scalar", pit_scalar)]
    # The cheap variants run at least 3 times (a median of 3 against a floor of a tenth of a
    # second); the SQL assembly and the naive join, minutes each, `sizes.repeats` times.
    slow = {"pit_sql", "naive"}
    for r in range(max(3, sizes.repeats)):
        for name, build in (variants if r % 2 == 0 else variants[::-1]):
            if name in slow and r >= sizes.repeats:
                continue
            with _timer(times, name):
                _write(build(), _scratch(wh, f"pit-out-{name}"))
    read = engine.spark.read.parquet
    check_col = "events_7d"
    pit_sum = read(str(_scratch(wh, "pit-out-pit"))).filter(subset).agg(F.sum(check_col)).collect()[0][0]
    naive_sum = read(str(_scratch(wh, "pit-out-naive"))).agg(F.sum(check_col)).collect()[0][0]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "feature_set": fs.name,
        "impressions": n,
        "features": len(columns),
        "naive_impressions": n_naive,
        "repeats": sizes.repeats,
        "fast_repeats": max(3, sizes.repeats),
        "floor_s": med["floor"],
        "pit_s": med["pit"],
        "pit_sql_s": med["pit_sql"],
        "pit_blocks_s": med["pit_blocks"],
        "pit_transfer_s": med["pit_transfer"],
        "naive_s": med["naive"],
        "scalar_features": len(scalar_cols),
        "floor_scalar_s": med["floor_scalar"],
        "pit_scalar_s": med["pit_scalar"],
        "pit_s_per_impression": med["pit"] / n,
        "naive_s_per_impression": med["naive"] / max(1, n_naive),
        "all": times,
        "check": {"column": check_col, "lookup_sum": pit_sum, "naive_sum": naive_sum, "agree": pit_sum == naive_sum},
    }


SCALAR = ("count", "sum", "avg", "min", "max")


def task_engines(engine: Any, defs: Any, sizes: Sizes) -> dict[str, Any]:
    """The demo pipeline: backfill of its two feature sets, then the `engagement` training set."""
    from spark_jobs.jobs import backfill, training

    end = START + timedelta(days=sizes.engine_days)
    times: dict[str, list[float]] = {}
    with _timer(times, "backfill_s"):
        _job(engine, defs, "backfill", backfill.run, start=START, end=end, names=["user_activity", "item_popularity"])
    with _timer(times, "training_s"):
        run = _job(engine, defs, "training-set", training.run, name="engagement", start=START, end=end)
    b, t = times["backfill_s"][0], times["training_s"][0]
    return {"backfill_s": b, "training_s": t, "pipeline_s": b + t, "steps": run.steps,
            "rows": run.outputs.get("training/engagement", {}).get("rows")}


def task_bucketed(engine: Any, defs: Any, sizes: Sizes) -> dict[str, Any]:
    """Final joins of impressions with three feature frames: bucketed vs shuffle (classic Spark)."""
    from spark_jobs.jobs import backfill, snapshot
    from spark_jobs.jobs.runner import warehouse_for
    from spark_jobs.storage.bucketed import bucket_frames, drop_bucketed
    from spark_jobs.storage.manifest import Run
    from spark_jobs.storage.tables import stage
    from spark_jobs.transforms import joins
    from spark_jobs.transforms.events import TS
    from spark_jobs.transforms.pit import lookup

    wh = warehouse_for(engine)
    end = START + timedelta(days=sizes.engine_days)
    names = ["user_activity", "item_popularity", "user_shares"]
    missing = [n for n in names if not wh.exists(f"blocks/{n}")]
    if missing:
        _job(engine, defs, "backfill", backfill.run, start=START, end=end, names=missing)
    base = _impressions(engine, defs, midnight(START), midnight(end), ["user_id", "item_id"], _scratch(wh, "bk-impressions"))
    frames = {}
    for name in names:
        fs = defs.feature_sets[name]
        frame = lookup(base.select(ID, TS, WATERMARK, *fs.key), wh.read(f"blocks/{name}"), fs, snapshot.all_refs(fs),
                       id_column=ID, ts=TS, watermark=WATERMARK)
        frames[name] = stage(engine.spark, _scratch(wh, f"bk-frame-{name}"), frame)
    times: dict[str, list[float]] = {}
    plans: dict[str, str] = {}
    for r in range(sizes.repeats):
        for mode in (("shuffle", "bucketed") if r % 2 == 0 else ("bucketed", "shuffle")):
            run = Run("bench-joins", wh.root, quiet=True)
            engine.spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
            try:
                t = time.perf_counter()
                inputs = (base, frames)
                if mode == "bucketed" and engine.supports_bucketing:
                    inputs = bucket_frames(engine, run.run_id, base, frames, ID)
                out = joins.join_on_id(*inputs, ID)
                prepared = time.perf_counter()
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    out.explain()
                plans[mode] = buf.getvalue()
                w = time.perf_counter()
                _write(out, _scratch(wh, f"bk-out-{mode}"))
                done = time.perf_counter()
                times.setdefault(mode, []).append((prepared - t) + (done - w))
                if mode == "bucketed":
                    times.setdefault("bucketed_join_only", []).append(done - w)
            finally:
                drop_bucketed(engine, run.run_id)
                engine.spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "impressions": base.count(),
        "frames": names,
        "repeats": sizes.repeats,
        "shuffle_s": med["shuffle"],
        "bucketed_s": med["bucketed"],
        "bucketed_join_only_s": med["bucketed_join_only"],
        "shuffle_exchanges": _exchanges(plans["shuffle"]),
        "bucketed_exchanges": _exchanges(plans["bucketed"]),
        "plans": plans,
        "all": times,
    }


def _exchanges(plan: str) -> int:
    return sum(1 for line in plan.splitlines() if "Exchange" in line and "ReusedExchange" not in line)


def task_scale(engine: Any, defs: Any, sizes: Sizes) -> dict[str, Any]:
    """One nightly run over one day of events: backfill (with lateness) + snapshot of user_7d."""
    from spark_jobs.jobs import backfill, snapshot

    times: dict[str, list[float]] = {}
    with _timer(times, "backfill_s"):
        _job(engine, defs, "backfill", backfill.run, start=START, end=START + timedelta(days=1), names=["user_7d"])
    with _timer(times, "snapshot_s"):
        _job(engine, defs, "snapshot", snapshot.run, as_of=midnight(START + timedelta(days=1)), names=["user_7d"])
    b, s = times["backfill_s"][0], times["snapshot_s"][0]
    return {"backfill_s": b, "snapshot_s": s, "nightly_s": b + s}


def task_backfill(engine: Any, defs: Any, sizes: Sizes, days: int, step_days: int) -> dict[str, Any]:
    """A chunked backfill of `days` days of user_history (resuming what a killed run committed)."""
    from spark_jobs.jobs import backfill

    t = time.perf_counter()
    run = _job(engine, defs, "backfill", backfill.run, start=START, end=START + timedelta(days=days),
               names=["user_history"], step_days=step_days)
    seconds = time.perf_counter() - t
    counts = run.counts["user_history"]
    chunks = counts["chunks"]
    return {
        "seconds": seconds, "events": counts["events_aggregated"], "events_per_s": counts["events_aggregated"] / seconds,
        "chunks": len(chunks), "kept": sum(c["status"] == "skipped" for c in chunks),
    }


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "nightly": task_nightly,
    "pit": task_pit,
    "engines": task_engines,
    "bucketed": task_bucketed,
    "scale": task_scale,
    "backfill": task_backfill,
}
