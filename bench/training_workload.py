"""The 14-day training-set workload, side by side with an equi-join floor, in fresh processes.

    python bench/training_workload.py [--work DIR] [--runs N]

Data (synthetic generator): 14 days of events of 1,000 Zipf-skewed users (about 2.1M views),
100k impressions a day; the training set covers the last day (100k impressions) with count
1h/1d/7d, sum 7d, avg 7d, max 1d, last_n 1d, approx_count_distinct 7d and one label.
Both sides run as their own `python` process on the default profile (Sail), after a backfill
that is not timed:
- `tilewise training-set work --start DAY14 --end DAY15`: the whole command;
- the floor: a process that starts Sail, reads the same impressions, equi-joins them to one row
  per user (the snapshot) and writes a Delta table: the least a training set can cost.
Prints seconds and peak RSS (process tree) of each, and their ratio; results go to
`{work}/training_workload.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from spark_jobs.demo.synthetic import generate
from spark_jobs.bench import PeakRss

START = date(2026, 1, 1)
DAYS = 14
DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts, dedupe_key: event_id}
  views: {sql: views.sql, timestamp: ts, dedupe_key: event_id}
  impressions: {path: "${data_root}/impressions", format: parquet, timestamp: ts}
  engagements: {path: "${data_root}/labels", format: parquet, timestamp: ts}
feature_sets:
  user:
    source: views
    key: [user_id]
    block_sizes: [5m, 1h, 1d]
    features:
      - {name: views, aggregation: count, windows: [1h, 1d, 7d]}
      - {name: dur_sum, aggregation: sum, column: duration_s, windows: [7d]}
      - {name: dur_avg, aggregation: avg, column: duration_s, windows: [7d]}
      - {name: dur_max, aggregation: max, column: duration_s, windows: [1d]}
      - {name: recent_items, aggregation: last_n, column: item_id, n: 5, windows: [1d]}
      - {name: distinct_items, aggregation: approx_count_distinct, column: item_id, windows: [7d]}
training_sets:
  work:
    impressions: impressions
    features: [user.*]
    labels:
      - {name: clicked, source: engagements, filter: "action = 'click'", within: 1h}
"""
VIEWS = "SELECT event_id, user_id, item_id, duration_s, ts FROM events WHERE event_type = 'view'\n"
FLOOR = """
import sys
from pathlib import Path
from spark_jobs.engine.profile import load_profile
from spark_jobs.engine.session import open_engine
work = Path(sys.argv[1])
profile = load_profile(work / "conf.yaml")
with open_engine(profile) as engine:
    spark = engine.spark
    imps = spark.read.parquet(str(work / "data" / "impressions" / "impressions-{day}.parquet"))
    imps = imps.dropDuplicates(["impression_id"]).select("impression_id", "user_id", "ts")
    snap = spark.read.format("delta").load(str(work / "warehouse" / "snapshots" / "user"))
    out = imps.join(snap.drop("watermark"), on="user_id", how="left")
    out.write.format("delta").mode("overwrite").save(str(work / "floor-out"))
"""


def sh(args: list[str], cwd: Path) -> float:
    t0 = time.time()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with PeakRss(proc.pid) as rss:
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{err[-3000:]}")
    return time.time() - t0, rss.peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/tilewise-training-workload"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = args.work.resolve()
    last = START + timedelta(days=DAYS - 1)
    if not (work / "data" / "events").exists():
        (work / "feature_defs").mkdir(parents=True, exist_ok=True)
        (work / "sql").mkdir(exist_ok=True)
        (work / "feature_defs" / "work.yaml").write_text(DEFS)
        (work / "sql" / "views.sql").write_text(VIEWS)
        (work / "conf.yaml").write_text(f"engine: sail\nwarehouse: {work / 'warehouse'}\ndata_root: {work / 'data'}\n")
        summary = generate(work / "data", days=DAYS, users=1000, items=5000, events_per_day=220_000,
                           impressions_per_day=100_000, start=START)
        print(f"data: {summary['rows']}", flush=True)
        tw = [sys.executable, "-m", "spark_jobs.cli", "--profile", str(work / "conf.yaml"), "--defs", str(work / "feature_defs"), "--quiet"]
        sh([*tw, "backfill", "--start", str(START), "--end", str(last + timedelta(days=1))], work)
        sh([*tw, "snapshot", "--as-of", f"{last}T00:00:00"], work)
    tw = [sys.executable, "-m", "spark_jobs.cli", "--profile", str(work / "conf.yaml"), "--defs", str(work / "feature_defs"), "--quiet"]
    floor = [sys.executable, "-c", FLOOR.replace("{day}", str(last)), str(work)]
    training = [*tw, "training-set", "work", "--start", str(last), "--end", str(last + timedelta(days=1))]
    res: dict[str, list] = {"floor": [], "training_set": []}
    for r in range(args.runs):
        for name, cmd in (("floor", floor), ("training_set", training))[:: 1 if r % 2 == 0 else -1]:
            s, peak = sh(cmd, work)
            res[name].append({"seconds": round(s, 2), "peak_gb": round(peak / 1e9, 2)})
            print(f"{name:13s} run {r + 1}: {s:6.1f} s, peak RSS {peak / 1e9:.2f} GB", flush=True)
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in res.items()}
    peak = {k: max(x["peak_gb"] for x in v) for k, v in res.items()}
    out = {"runs": res, "median_s": med, "peak_gb": peak, "ratio": round(med["training_set"] / med["floor"], 2)}
    (work / "training_workload.json").write_text(json.dumps(out, indent=2))
    print(f"training-set / floor = {out['ratio']} (median {med['training_set']:.1f} s vs {med['floor']:.1f} s); "
          f"peak RSS {peak['training_set']:.2f} GB vs {peak['floor']:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
