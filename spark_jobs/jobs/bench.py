"""`tilewise bench`: what the block design buys, measured on this machine (issue #6).

Six sections, each a comparison made within one run (a shared, noisy machine makes absolute
seconds meaningless; ratios of timings taken side by side are what the results stand on):

- nightly:  one new day on top of N days of backfilled history: the nightly backfill (the day plus
            lateness) and the snapshot job assembling every key's windows, for feature sets whose
            windows go up to 1d, 7d and 30d; against a naive job that computes every window from
            the raw events of the whole window.
- pit:      point-in-time features for N impressions: tilewise's lookup (`transforms.pit.lookup`,
            what the training-set job runs) against the floor (an equi-join of the same
            impressions with one precomputed value per key) and a naive range join to raw events.
- engines:  the demo pipeline (backfill + training set) on Sail and on classic Spark.
- bucketed: the final joins of a training set with three feature sets on classic Spark, bucketed
            (`transforms.joins`) against plain shuffle joins: time and Exchanges in the plan.
- scale:    events/s and peak memory (RSS of the process tree: the Sail server lives in the
            worker process, classic Spark's JVM is its child) of a nightly run, 1M..50M events.
- backfill: a chunked backfill of 30, 90 and 365 days of history at the daily volume: events/s
            and peak memory; and a run killed (-9) at 60% of its chunks then resumed, the resumed
            run's time as a fraction of one full run.

The parent process generates the data (numpy/pyarrow, no engine) and runs every engine in a fresh
worker process (`python -m spark_jobs.jobs.bench --worker SPEC`), so memory is per run and the two
engines never share a process. Workers call the real jobs (backfill, snapshot, training lookups,
final joins); only the naive baselines are written here, with the same aggregation algebra.
Outputs: `results.json` (every timing, ratio, size, version, the machine), `results.md`, and
`results.png` when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from spark_jobs.errors import InputDataError
from spark_jobs.jobs.training import midnight

SECTIONS = ("nightly", "pit", "engines", "bucketed", "scale", "backfill")
START = date(2026, 1, 1)
ID = "impression_id"
WATERMARK = "feature_watermark"
LENGTHS = ("1d", "7d", "30d")
# Goals of issue #6: (key, text, target, higher_is_better)
GOALS = (
    ("nightly_30d_over_1d", "nightly cost at 30d windows vs 1d", 1.5, False),
    ("naive_over_nightly_30d", "naive recompute vs nightly, 30d windows", 20.0, True),
    ("pit_over_floor", "point-in-time lookup vs equi-join floor", 3.0, False),
    ("classic_over_sail", "classic Spark vs Sail, demo pipeline", 5.0, True),
    ("scale_50m_peak_gb", "peak memory of a 50M-event nightly run (GB)", 24.0, False),
    ("resumed_over_full", "backfill resumed after a kill at 60% vs a full run", 0.5, False),
)


@dataclass(frozen=True)
class Sizes:
    mode: str
    history_days: int  # nightly/pit: days backfilled before the new day (>= 30 for 30d windows)
    events_per_day: int
    impressions_per_day: int
    users: int
    items: int
    naive_pit_impressions: int  # the naive range join runs on at most this many impressions
    engine_days: int
    engine_events_per_day: int
    engine_impressions_per_day: int
    scale_sail: tuple[int, ...]
    scale_spark: tuple[int, ...]
    repeats: int
    backfill_days: tuple[int, ...] = (30, 90, 365)
    backfill_step_days: int = 30
    resume_days: int = 90  # the killed-and-resumed backfill: its days and chunk size
    resume_step_days: int = 10


FULL = Sizes("full", 30, 200_000, 10_000, 2000, 500, 2_000, 3, 200_000, 20_000,
             (1_000_000, 10_000_000, 50_000_000), (1_000_000,), 2)
QUICK = Sizes("quick", 30, 5_000, 1_000, 2000, 500, 5_000, 2, 10_000, 1_000, (1_000_000,), (), 1, (30, 90))
TINY = Sizes("tiny", 30, 1_000, 100, 200, 50, 1_000, 2, 2_000, 300, (20_000,), (), 1, (10,), 2, 10, 2)

# The bench's own feature sets over the demo's `events` source: the same features, windows up to
# 1d, 7d and 30d; `user_shares` is the third feature set of the bucketed-join training set.
_FEATURES = (
    "      - {name: events, aggregation: count, windows: %(w)s}",
    "      - {name: views, aggregation: count, filter: \"event_type = 'view'\", windows: %(w)s}",
    "      - {name: dur_sum, aggregation: sum, column: duration_s, filter: duration_s < 3600, windows: %(w)s}",
    "      - {name: dur_avg, aggregation: avg, column: duration_s, filter: duration_s < 3600, windows: %(w)s}",
    "      - {name: dur_max, aggregation: max, column: duration_s, windows: %(w)s}",
    "      - {name: items, aggregation: approx_count_distinct, column: item_id, windows: %(w)s}",
    "      - {name: recent_items, aggregation: last_n, column: item_id, n: 5, windows: %(w)s}",
)
_WINDOWS = {"1d": "[1h, 1d]", "7d": "[1h, 1d, 7d]", "30d": "[1h, 1d, 7d, 30d]"}


def bench_defs_yaml() -> str:
    lines = ["feature_sets:"]
    for length, windows in _WINDOWS.items():
        lines += [f"  user_{length}:", "    source: events", "    key: [user_id]", "    block_sizes: [5m, 1h, 1d]",
                  "    lateness: 1d", "    features:"]
        lines += [f % {"w": windows} for f in _FEATURES]
    # The backfill section's feature set: the four aggregations of a typical long backfill.
    lines += ["  user_history:", "    source: events", "    key: [user_id]", "    block_sizes: [5m, 1h, 1d]",
              "    lateness: 1d", "    features:",
              "      - {name: events, aggregation: count, windows: [1h, 1d]}",
              "      - {name: dur_sum, aggregation: sum, column: duration_s, windows: [1d]}",
              "      - {name: dur_max, aggregation: max, column: duration_s, windows: [1d]}",
              "      - {name: items, aggregation: approx_count_distinct, column: item_id, windows: [1d]}"]
    lines += ["  user_shares:", "    source: events", "    key: [user_id]", "    block_sizes: [5m, 1h, 1d]",
              "    features:",
              "      - {name: shares, aggregation: count, filter: \"event_type = 'share'\", windows: [1h, 1d, 7d]}",
              "      - {name: likes, aggregation: count, filter: \"event_type = 'like'\", windows: [1h, 1d, 7d]}"]
    return "\n".join(lines) + "\n"


# -- the parent: data, workers, report ------------------------------------------------------------
def main(args: argparse.Namespace, profile: Any) -> int:
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    if args.scale_events:
        sizes = replace(sizes, scale_sail=tuple(_count(x) for x in args.scale_events.split(",")))
    sections = [s.strip() for s in args.sections.split(",")] if args.sections else list(SECTIONS)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        from spark_jobs.errors import InputDataError

        raise InputDataError(f"--sections: unknown {unknown} (choose from {', '.join(SECTIONS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="tilewise-bench-"))
    say = (lambda m: None) if args.quiet else (lambda m: print(f"[bench {time.strftime('%H:%M:%S')}] {m}",
                                                               file=sys.stderr, flush=True))
    bench = Bench(args, sizes, work, say)
    t0 = time.time()
    results: dict[str, Any] = {
        "tilewise_bench": 1,
        "mode": sizes.mode,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "sizes": asdict(sizes),
        "settings": {"conf": args.conf or "conf/local.yaml", "spark_conf": args.spark_conf, "sets": list(args.set)},
        "sections": {},
    }
    try:
        bench.write_defs()
        results["sections"] = bench.run(sections)
    finally:
        if not args.keep_work and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.time() - t0, 1)
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["goals"] = goals(results["sections"])
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    chart = write_chart(results, out / "results.png")
    say(f"wrote {out / 'results.json'}, {out / 'results.md'}" + (f", {chart}" if chart else " (no chart: matplotlib missing)"))
    if not args.quiet:
        print(goals_table(results["goals"]), file=sys.stderr)
        print(f"total {results['seconds']}s", file=sys.stderr)
    return 0


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, work: Path, say: Callable[[str], None]):
        self.args, self.sizes, self.work, self.say = args, sizes, work, say
        self.defs = work / "feature_defs"
        self.sail_conf = args.conf or "conf/local.yaml"
        self.spark_conf = args.spark_conf

    def write_defs(self) -> None:
        """The demo definitions (thresholds relaxed for small sizes) plus the bench's feature sets."""
        self.defs.mkdir(parents=True, exist_ok=True)
        src = Path(self.args.defs)
        if not (src / "demo.yaml").is_file():
            raise InputDataError(
                f"tilewise bench builds on the demo definitions, and {src / 'demo.yaml'} does not exist: "
                "run it from the repository root, or pass --defs <repo>/feature_defs"
            )
        demo = (src / "demo.yaml").read_text()
        demo = demo.replace("min_rows: 1000", "min_rows: 1").replace("dur_avg_1d: 0.2", "dur_avg_1d: 1.0")
        (self.defs / "demo.yaml").write_text(demo)
        (self.defs / "bench.yaml").write_text(bench_defs_yaml())
        if (src.parent / "sql").is_dir():
            shutil.copytree(src.parent / "sql", self.work / "sql", dirs_exist_ok=True)

    def generate(self, root: Path, **kw: Any) -> dict[str, Any]:
        from spark_jobs.demo import synthetic

        if (root / "summary.json").exists():
            return json.loads((root / "summary.json").read_text())
        t = time.perf_counter()
        summary = synthetic.generate(root / "demo", start=START, **kw)
        summary["seconds"] = round(time.perf_counter() - t, 2)
        (root / "summary.json").write_text(json.dumps(summary))
        self.say(f"generated {summary['rows']['events']:,} events in {summary['seconds']}s under {root}")
        return summary

    def history_data(self) -> Path:
        s = self.sizes
        root = self.work / "history"
        self.generate(root, days=s.history_days + 1, events_per_day=s.events_per_day,
                      impressions_per_day=s.impressions_per_day, users=s.users, items=s.items)
        return root

    def engines_data(self) -> Path:
        s = self.sizes
        root = self.work / "engines-data"
        self.generate(root, days=s.engine_days, events_per_day=s.engine_events_per_day,
                      impressions_per_day=s.engine_impressions_per_day)
        return root

    # -- sections ------------------------------------------------------------------------------
    def run(self, sections: list[str]) -> dict[str, Any]:
        """Every selected section; engines share worker processes where that is fair.

        nightly and pit run in one Sail process (same data); the classic engines run and the
        bucketed joins share one JVM (same warehouse); the Sail engines run and every scale point
        get a fresh process of their own.
        """
        out: dict[str, Any] = {}
        sail_tasks = [t for t in ("nightly", "pit") if t in sections]
        if sail_tasks:
            root = self.history_data()
            self.say(f"== {' + '.join(sail_tasks)} on {self.sail_conf}")
            res = self.worker(sail_tasks, self.sail_conf, root, root / "warehouse")
            if "nightly" in res:
                out["nightly"] = _nightly_ratios(res["nightly"])
            if "pit" in res:
                out["pit"] = _pit_ratios(res["pit"])
        classic_tasks = [t for t in ("engines", "bucketed") if t in sections]
        if classic_tasks:
            root = self.engines_data()
            sail = None
            if "engines" in sections:
                self.say(f"== engines: demo pipeline on {self.sail_conf}")
                sail = self.worker(["engines"], self.sail_conf, root, self.work / "engines-sail")["engines"]
            self.say(f"== {' + '.join(classic_tasks)} on {self.spark_conf}")
            spark = self.worker(classic_tasks, self.spark_conf, root, self.work / "engines-spark")
            if sail is not None:
                out["engines"] = {
                    "days": self.sizes.engine_days,
                    "events": json.loads((root / "summary.json").read_text())["rows"]["events"],
                    "sail": sail,
                    "spark": spark["engines"],
                    "ratios": {
                        "classic_over_sail": spark["engines"]["pipeline_s"] / sail["pipeline_s"],
                        "classic_over_sail_with_startup": spark["engines"]["total_s"] / sail["total_s"],
                    },
                }
            if "bucketed" in spark:
                b = spark["bucketed"]
                b["ratios"] = {
                    "shuffle_over_bucketed": b["shuffle_s"] / b["bucketed_s"],
                    "shuffle_over_bucketed_join_only": b["shuffle_s"] / b["bucketed_join_only_s"],
                }
                out["bucketed"] = b
        if "scale" in sections:
            self.say("== scale")
            out["scale"] = self.scale()
        if "backfill" in sections:
            self.say("== backfill")
            out["backfill"] = self.backfill()
        return out

    def backfill(self) -> dict[str, Any]:
        """Chunked backfills of growing history; then a full, a killed and a resumed run of one range."""
        s = self.sizes
        points = []
        full: dict[str, Any] | None = None
        for days in s.backfill_days:
            root = self.work / f"backfill-{days}d"
            summary = self.generate(root, days=days, events_per_day=s.events_per_day, impressions_per_day=10,
                                    users=s.users, items=s.items)
            res = self.worker(["backfill"], self.sail_conf, root, root / "warehouse",
                              params={"backfill": {"days": days, "step_days": s.backfill_step_days}})["backfill"]
            res.update({"days": days, "events_generated": summary["rows"]["events"],
                        "peak_rss_gb": res["peak_rss_bytes"] / 2**30})
            points.append(res)
            if (days, s.backfill_step_days) == (s.resume_days, s.resume_step_days):
                full = res  # the same run as the full one of the resume measurement
            self.say(f"backfill {days}d ({res['events']:,} events, {res['chunks']} chunks): "
                     f"{res['events_per_s']:,.0f} events/s, peak {res['peak_rss_gb']:.2f} GB")
            if not self.args.keep_work and days != s.resume_days:
                shutil.rmtree(root, ignore_errors=True)
        root = self.work / f"backfill-{s.resume_days}d"
        self.generate(root, days=s.resume_days, events_per_day=s.events_per_day, impressions_per_day=10,
                      users=s.users, items=s.items)
        params = {"backfill": {"days": s.resume_days, "step_days": s.resume_step_days}}
        if full is None:
            full = self.worker(["backfill"], self.sail_conf, root, root / "warehouse-full", params=params)["backfill"]
        killed_wh = root / "warehouse-killed"
        self.worker(["backfill"], self.sail_conf, root, killed_wh, params=params,
                    kill_when=lambda: _chunk_share(killed_wh) >= 0.6)
        done_share = _chunk_share(killed_wh)
        resumed = self.worker(["backfill"], self.sail_conf, root, killed_wh, params=params)["backfill"]
        resume = {
            "days": s.resume_days, "step_days": s.resume_step_days, "killed_at_share": round(done_share, 3),
            "full_s": full["seconds"], "resumed_s": resumed["seconds"], "chunks": resumed["chunks"],
            "kept": resumed["kept"], "resumed_over_full": resumed["seconds"] / full["seconds"],
        }
        self.say(f"backfill {s.resume_days}d killed at {done_share:.0%} of its days, resumed: "
                 f"{resume['resumed_s']:.1f}s vs {resume['full_s']:.1f}s full ({resume['resumed_over_full']:.2f}x)")
        if not self.args.keep_work:
            shutil.rmtree(root, ignore_errors=True)
        return {"points": points, "resume": resume}

    def scale(self) -> dict[str, Any]:
        points = []
        plan = [("sail", self.sail_conf, n) for n in self.sizes.scale_sail]
        plan += [("spark", self.spark_conf, n) for n in self.sizes.scale_spark]
        for engine, conf, n in plan:
            root = self.work / f"scale-{n}"
            summary = self.generate(root, days=1, events_per_day=n, impressions_per_day=10,
                                    users=max(2000, n // 500), items=max(500, n // 2000))
            res = self.worker(["scale"], conf, root, root / f"warehouse-{engine}")["scale"]
            events = summary["rows"]["events"]
            res.update({
                "engine": res["engine"],
                "events": events,
                "generate_s": summary["seconds"],
                "generate_events_per_s": events / summary["seconds"],
                "events_per_s": events / res["nightly_s"],
                "peak_rss_gb": res["peak_rss_bytes"] / 2**30,
            })
            points.append(res)
            self.say(f"scale {engine} {events:,} events: {res['events_per_s']:,.0f} events/s, "
                     f"peak {res['peak_rss_gb']:.2f} GB")
            if not self.args.keep_work:
                shutil.rmtree(root, ignore_errors=True)
        return {"points": points}

    # -- workers -------------------------------------------------------------------------------
    def worker(
        self, tasks: list[str], conf: str, data_root: Path, warehouse: Path, *,
        params: dict[str, dict[str, Any]] | None = None, kill_when: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Run `tasks` in order in a fresh process on `conf`'s engine; results per task. `params`:
        keyword arguments per task; `kill_when`: polled, kills the process (-9) once true (then
        the result is empty)."""
        result = self.work / f"result-{'-'.join(tasks)}-{time.time_ns()}.json"
        spec = {
            "tasks": tasks,
            "conf": conf,
            "sets": [*self.args.set, f"warehouse={warehouse}", f"data_root={data_root}"],
            "defs": str(self.defs),
            "sizes": asdict(self.sizes),
            "result": str(result),
            "params": params or {},
        }
        spec_path = result.with_suffix(".spec.json")
        spec_path.write_text(json.dumps(spec))
        log = result.with_suffix(".log")
        env = {**os.environ, "TZ": "UTC", "PYSPARK_PYTHON": sys.executable}
        env.pop("SPARK_CONNECT_MODE_ENABLED", None)
        cmd = [sys.executable, "-m", "spark_jobs.jobs.bench", "--worker", str(spec_path)]
        t = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd())
            with PeakRss(proc.pid) as peak:
                while kill_when is not None and proc.poll() is None:
                    if kill_when():
                        proc.kill()
                        proc.wait()
                        self.say(f"{' + '.join(tasks)}: killed (-9) as planned")
                        return {}
                    time.sleep(0.2)
                rc = proc.wait()
        wall = time.perf_counter() - t
        if rc != 0:
            tail = log.read_text()[-4000:]
            raise RuntimeError(f"bench worker {tasks} ({conf}) failed with exit {rc}:\n{tail}")
        res = json.loads(result.read_text())
        for task in tasks:
            res[task].update({
                "engine": res["engine"],
                "table_format": res["table_format"],
                "startup_s": res["startup_s"],
                "warmup_s": res["warmup_s"],
                "worker_wall_s": round(wall, 2),
                "peak_rss_bytes": peak.peak,
            })
            if "pipeline_s" in res[task]:
                res[task]["total_s"] = res[task]["pipeline_s"] + res["startup_s"]
        self.say(f"{' + '.join(tasks)} on {res['engine']} done in {wall:.1f}s (peak RSS {peak.peak / 2**30:.2f} GB)")
        return res


def _nightly_ratios(res: dict[str, Any]) -> dict[str, Any]:
    runs = res["runs"]
    res["ratios"] = {
        "nightly_30d_over_1d": runs["30d"]["nightly_s"] / runs["1d"]["nightly_s"],
        "naive_over_nightly_30d": runs["30d"]["naive_s"] / runs["30d"]["nightly_s"],
        "naive_over_nightly": {k: runs[k]["naive_s"] / runs[k]["nightly_s"] for k in LENGTHS},
        "naive_over_nightly_30d_without_gate": runs["30d"]["naive_s"] / runs["30d"]["nightly_without_gate_s"],
        "naive_over_nightly_events_read": res["events_read"]["naive_30d"] / max(1, res["events_read"]["nightly"]),
        "nightly_30d_over_1d_without_gate": runs["30d"]["nightly_without_gate_s"] / runs["1d"]["nightly_without_gate_s"],
    }
    return res


def _pit_ratios(res: dict[str, Any]) -> dict[str, Any]:
    res["ratios"] = {
        "pit_over_floor": res["pit_s"] / res["floor_s"],
        "naive_over_pit": res["naive_s_per_impression"] / res["pit_s_per_impression"],
    }
    if "pit_sql_s" in res:
        res["ratios"]["sql_assembly_over_sweep"] = res["pit_sql_s"] / res["pit_s"]
    if "pit_scalar_s" in res:
        res["ratios"]["pit_over_floor_scalar_only"] = res["pit_scalar_s"] / res["floor_scalar_s"]
    return res


class PeakRss:
    """Samples the resident memory of a process and all its descendants (e.g. a JVM child)."""

    def __init__(self, pid: int, every_s: float = 0.2):
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.every_s)


def tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(children.get(pid, []))
    return total


def machine_info() -> dict[str, Any]:
    mem = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "memory_gb": round(mem / 2**30, 1) if mem else None,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "loadavg_start": list(os.getloadavg()),
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("pyspark", "pysail", "deltalake", "pyarrow", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        out["java"] = (java.stderr or java.stdout).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        out["java"] = None
    return out


def _count(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


# -- goals, markdown, chart ----------------------------------------------------------------------
def goals(sections: dict[str, Any]) -> list[dict[str, Any]]:
    measured: dict[str, float | None] = dict.fromkeys(g[0] for g in GOALS)
    if "nightly" in sections:
        measured["nightly_30d_over_1d"] = sections["nightly"]["ratios"]["nightly_30d_over_1d"]
        measured["naive_over_nightly_30d"] = sections["nightly"]["ratios"]["naive_over_nightly_30d"]
    if "pit" in sections:
        measured["pit_over_floor"] = sections["pit"]["ratios"]["pit_over_floor"]
    if "engines" in sections:
        measured["classic_over_sail"] = sections["engines"]["ratios"]["classic_over_sail"]
    at_50m = None
    for p in (sections.get("scale") or {}).get("points", []):
        if p["engine"] == "sail" and p["events"] >= 50_000_000:
            at_50m = p["peak_rss_gb"]
    measured["scale_50m_peak_gb"] = at_50m
    if "backfill" in sections:
        measured["resumed_over_full"] = sections["backfill"]["resume"]["resumed_over_full"]
    out = []
    for key, text, target, higher in GOALS:
        value = measured[key]
        met = None if value is None else (value >= target if higher else value <= target)
        out.append({"key": key, "goal": text, "target": f"{'>=' if higher else '<='} {target:g}",
                    "measured": value, "met": met})
    return out


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def goals_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| goal | target | measured | status |", "|---|---|---|---|"]
    for g in rows:
        status = "not measured" if g["met"] is None else "met" if g["met"] else "NOT met"
        lines.append(f"| {g['goal']} | {g['target']} | {_fmt(g['measured'])} | {status} |")
    return "\n".join(lines)


def markdown(r: dict[str, Any]) -> str:
    m, v, s = r["machine"], r["versions"], r["sections"]
    out = [
        f"# tilewise bench ({r['mode']})",
        "",
        f"{r['started']}, {r['seconds']} s in all. Machine: {m['cores']} cores, {m['memory_gb']} GB, "
        f"load average {m['loadavg_start'][0]:.1f} at the start and {m['loadavg_end'][0]:.1f} at the end "
        "(a shared machine: read the ratios, each measured within one run, not the seconds).",
        f"Python {v['python']}, pyspark {v['pyspark']}, pysail {v['pysail']}, {v.get('java') or 'no Java'}."
        + (f" Profile overrides: {', '.join(r['settings']['sets'])}." if r.get("settings", {}).get("sets") else ""),
        "",
        "## Goals",
        "",
        goals_table(r["goals"]),
        "",
    ]
    if "nightly" in s:
        n = s["nightly"]
        out += [
            "## Nightly cost vs window length",
            "",
            f"{n['history_days']} days of history ({n['events_per_day']:,} events a day) already in the block tables; "
            f"one new day. Nightly = backfill of the new day plus lateness, then the snapshot job assembling every "
            f"key's windows ({n['keys']:,} keys, {n['features']} features). Naive = every window recomputed from the "
            "raw events of the whole window. Medians of "
            f"{n['repeats']} run(s).",
            "",
            "| windows up to | backfill s | snapshot s | nightly s | of which quality gate s | naive s | naive / nightly |",
            "|---|---|---|---|---|---|---|",
        ]
        for k in LENGTHS:
            x = n["runs"][k]
            out.append(f"| {k} | {_fmt(x['backfill_s'])} | {_fmt(x['snapshot_s'])} | {_fmt(x['nightly_s'])} | "
                       f"{_fmt(x['gate_s'])} | {_fmt(x['naive_s'])} | {_fmt(x['naive_s'] / x['nightly_s'])} |")
        rt = n["ratios"]
        out += ["", f"nightly(30d) / nightly(1d) = {_fmt(rt['nightly_30d_over_1d'])} "
                    f"({_fmt(rt['nightly_30d_over_1d_without_gate'])} without the Great Expectations gate); "
                    f"naive(30d) / nightly(30d) = {_fmt(rt['naive_over_nightly_30d'])} "
                    f"({_fmt(rt['naive_over_nightly_30d_without_gate'])} without the gate, which the naive job does not run). "
                    f"Check: naive and snapshot agree on every count column ({n['check']['agree']}).", ""]
        if "events_read" in n:
            e = n["events_read"]
            out += [f"Events read at 30d windows: naive {e['naive_30d']:,} (every window's range), nightly "
                    f"{e['nightly']:,} (the new day plus lateness): {_fmt(rt['naive_over_nightly_events_read'])}x. "
                    "At equal cost per event that would be the naive / nightly ratio; the measured ratio divided by it "
                    f"is the naive job's cost per event relative to the nightly run's "
                    f"({_fmt(rt['naive_over_nightly_30d'] / rt['naive_over_nightly_events_read'])}).", ""]
    if "pit" in s:
        p = s["pit"]
        out += [
            "## Point-in-time lookup",
            "",
            f"{p['impressions']:,} impressions x {p['features']} feature columns (`{p['feature_set']}`).",
            "",
            "| method | impressions | seconds | per 1k impressions (s) |",
            "|---|---|---|---|",
            f"| equi-join to one value per key (floor) | {p['impressions']:,} | {_fmt(p['floor_s'])} | "
            f"{_fmt(1000 * p['floor_s'] / p['impressions'], 4)} |",
            f"| tilewise lookup (sorted sweep over the timeline) | {p['impressions']:,} | {_fmt(p['pit_s'])} | "
            f"{_fmt(1000 * p['pit_s_per_impression'], 4)} |",
            *([f"| the same sweep over the block rows of every size | {p['impressions']:,} | {_fmt(p['pit_blocks_s'])} | "
               f"{_fmt(1000 * p['pit_blocks_s'] / p['impressions'], 4)} |"] if "pit_blocks_s" in p else []),
            *([f"| SQL window assembly (the reference) | {p['impressions']:,} | {_fmt(p['pit_sql_s'])} | "
               f"{_fmt(1000 * p['pit_sql_s'] / p['impressions'], 4)} |"] if "pit_sql_s" in p else []),
            f"| naive range join to raw events | {p['naive_impressions']:,} | {_fmt(p['naive_s'])} | "
            f"{_fmt(1000 * p['naive_s_per_impression'], 4)} |",
            *([f"| floor, the {p['scalar_features']} scalar columns only | {p['impressions']:,} | "
               f"{_fmt(p['floor_scalar_s'])} | {_fmt(1000 * p['floor_scalar_s'] / p['impressions'], 4)} |",
               f"| lookup, the {p['scalar_features']} scalar columns only | {p['impressions']:,} | "
               f"{_fmt(p['pit_scalar_s'])} | {_fmt(1000 * p['pit_scalar_s'] / p['impressions'], 4)} |"]
              if "pit_scalar_s" in p else []),
            "",
            f"lookup / floor = {_fmt(p['ratios']['pit_over_floor'])}"
            + (f" ({_fmt(p['ratios']['pit_over_floor_scalar_only'])} for the scalar columns alone)"
               if "pit_over_floor_scalar_only" in p["ratios"] else "")
            + (f"; SQL assembly / sweep = {_fmt(p['ratios']['sql_assembly_over_sweep'])}"
               if "sql_assembly_over_sweep" in p["ratios"] else "")
            + "; naive / lookup per impression = "
            f"{_fmt(p['ratios']['naive_over_pit'])}. Check: lookup and naive agree on the naive subset "
            f"({p['check']['agree']}).",
            "",
        ]
    if "engines" in s:
        e = s["engines"]
        out += [
            "## Engines: the demo pipeline (backfill + training set)",
            "",
            f"{e['days']} days, {e['events']:,} events; each engine in its own fresh process.",
            "",
            "| engine | engine start s | backfill s | training set s | pipeline s | peak RSS GB |",
            "|---|---|---|---|---|---|",
        ]
        for name in ("sail", "spark"):
            x = e[name]
            out.append(f"| {x['engine']} ({x['table_format']}) | {_fmt(x['startup_s'])} | {_fmt(x['backfill_s'])} | "
                       f"{_fmt(x['training_s'])} | {_fmt(x['pipeline_s'])} | {_fmt(x['peak_rss_bytes'] / 2**30)} |")
        out += ["", f"classic / Sail = {_fmt(e['ratios']['classic_over_sail'])} (pipeline), "
                    f"{_fmt(e['ratios']['classic_over_sail_with_startup'])} (with engine start).", ""]
    if "bucketed" in s:
        b = s["bucketed"]
        out += [
            "## Bucketed vs shuffle joins (classic Spark)",
            "",
            f"{b['impressions']:,} impressions joined with {len(b['frames'])} per-impression feature frames "
            f"({', '.join(b['frames'])}), materialised beforehand; medians of {b['repeats']} run(s).",
            "",
            "| joins | seconds | Exchanges in the plan |",
            "|---|---|---|",
            f"| shuffle (sort-merge) | {_fmt(b['shuffle_s'])} | {b['shuffle_exchanges']} |",
            f"| bucketed, including writing the bucketed tables | {_fmt(b['bucketed_s'])} | {b['bucketed_exchanges']} |",
            f"| bucketed, tables already bucketed (reuse) | {_fmt(b['bucketed_join_only_s'])} | {b['bucketed_exchanges']} |",
            "",
        ]
    if "scale" in s:
        out += [
            "## Scale: one nightly run (backfill + snapshot of one day)",
            "",
            "| engine | events | nightly s | events/s | peak RSS GB | data generation events/s |",
            "|---|---|---|---|---|---|",
        ]
        for p in s["scale"]["points"]:
            out.append(f"| {p['engine']} | {p['events']:,} | {_fmt(p['nightly_s'])} | {_fmt(p['events_per_s'], 0)} | "
                       f"{_fmt(p['peak_rss_gb'])} | {_fmt(p['generate_events_per_s'], 0)} |")
        out.append("")
    if "backfill" in s:
        b = s["backfill"]
        out += [
            "## Backfill: chunked runs over growing history",
            "",
            "| days | events | chunks | seconds | events/s | peak RSS GB |",
            "|---|---|---|---|---|---|",
        ]
        for p in b["points"]:
            out.append(f"| {p['days']} | {p['events']:,} | {p['chunks']} | {_fmt(p['seconds'])} | "
                       f"{_fmt(p['events_per_s'], 0)} | {_fmt(p['peak_rss_gb'])} |")
        r = b["resume"]
        out += ["", f"Killed (-9) once {r['killed_at_share']:.0%} of {r['days']} days were committed "
                f"({r['step_days']}-day chunks), then run again: {r['kept']} of {r['chunks']} chunks kept, "
                f"{_fmt(r['resumed_s'])} s against {_fmt(r['full_s'])} s for a full run "
                f"({_fmt(r['resumed_over_full'])} of it).", ""]
    return "\n".join(out)


def write_chart(r: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    s = r["sections"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    fig.suptitle(f"tilewise bench ({r['mode']}): {r['machine']['cores']} cores, {r['machine']['memory_gb']} GB, "
                 f"pyspark {r['versions']['pyspark']}, pysail {r['versions']['pysail']}")
    ax = axes[0][0]
    if "nightly" in s:
        runs = s["nightly"]["runs"]
        x = range(len(LENGTHS))
        ax.bar([i - 0.2 for i in x], [runs[k]["nightly_s"] for k in LENGTHS], 0.4, label="nightly (blocks)")
        ax.bar([i + 0.2 for i in x], [runs[k]["naive_s"] for k in LENGTHS], 0.4, label="naive (raw events)")
        ax.set_xticks(list(x), [f"up to {k}" for k in LENGTHS])
        ax.set_ylabel("seconds")
        ax.legend()
        rt = s["nightly"]["ratios"]
        ax.set_title(f"Nightly cost vs window length\n30d/1d = {rt['nightly_30d_over_1d']:.2f}x, "
                     f"naive/nightly at 30d = {rt['naive_over_nightly_30d']:.2f}x", fontsize=10)
    else:
        ax.set_title("Nightly cost vs window length")
    ax = axes[0][1]
    if "pit" in s:
        p = s["pit"]
        per_k = [1000 * p["floor_s"] / p["impressions"], 1000 * p["pit_s_per_impression"], 1000 * p["naive_s_per_impression"]]
        ax.bar(["equi-join\nfloor", "tilewise\nassembly", "naive\nrange join"], per_k, color=["grey", "C0", "C1"])
        ax.set_yscale("log")
        ax.set_ylabel("seconds per 1k impressions (log)")
        ax.set_title(f"Point-in-time lookup ({p['impressions']:,} impressions x {p['features']})\n"
                     f"assembly/floor = {p['ratios']['pit_over_floor']:.2f}x", fontsize=10)
    else:
        ax.set_title("Point-in-time lookup")
    ax = axes[0][2]
    if "engines" in s:
        e = s["engines"]
        names = ["Sail", "classic Spark"]
        ax.bar(names, [e["sail"]["pipeline_s"], e["spark"]["pipeline_s"]], color=["C0", "C3"], label="pipeline")
        ax.bar(names, [e["sail"]["startup_s"], e["spark"]["startup_s"]], bottom=[e["sail"]["pipeline_s"], e["spark"]["pipeline_s"]],
               color="lightgrey", label="engine start")
        ax.set_ylabel("seconds")
        ax.legend()
        ax.set_title(f"Demo pipeline: Sail vs classic Spark\nclassic/Sail = {e['ratios']['classic_over_sail']:.2f}x",
                     fontsize=10)
    else:
        ax.set_title("Demo pipeline: Sail vs classic Spark")
    ax = axes[1][0]
    if "bucketed" in s:
        b = s["bucketed"]
        ax.bar(["shuffle", "bucketed\n(+ write)", "bucketed\n(reuse)"], [b["shuffle_s"], b["bucketed_s"], b["bucketed_join_only_s"]],
               color=["C1", "C0", "C2"])
        for i, n in enumerate([b["shuffle_exchanges"], b["bucketed_exchanges"], b["bucketed_exchanges"]]):
            ax.annotate(f"{n} Exchange(s)", (i, 0), xytext=(0, 4), textcoords="offset points", ha="center")
        ax.set_ylabel("seconds")
    ax.set_title("Final joins on classic Spark")
    ax1, ax2 = axes[1][1], axes[1][2]
    if "scale" in s:
        for engine, color in (("sail", "C0"), ("spark", "C3")):
            pts = [p for p in s["scale"]["points"] if p["engine"] == engine]
            if pts:
                ev = [p["events"] / 1e6 for p in pts]
                ax1.plot(ev, [p["events_per_s"] for p in pts], "o-", color=color, label=engine)
                ax2.plot(ev, [p["peak_rss_gb"] for p in pts], "o-", color=color, label=engine)
        for a in (ax1, ax2):
            a.set_xlabel("events in the nightly run (millions)")
            a.legend()
        ax1.set_ylabel("events / s")
        ax1.set_ylim(bottom=0)
        ax2.set_ylim(0, 25.5)
        sizes = [p["events"] for p in s["scale"]["points"]]
        if sizes and max(sizes) > 3 * min(sizes):
            ax1.set_xscale("log")
            ax2.set_xscale("log")
        ax2.set_ylabel("peak RSS (GB)")
        ax2.axhline(24, color="grey", ls="--", lw=1)
        ax2.annotate("24 GB machine", (0, 24), xytext=(2, -12), textcoords="offset points", color="grey")
    ax1.set_title("Scale: throughput")
    ax2.set_title("Scale: peak memory (process tree)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- the worker: one engine, one task -------------------------------------------------------------
def _worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    from spark_jobs.defs.loader import load_definitions
    from spark_jobs.engine.profile import load_profile
    from spark_jobs.engine.session import open_engine, use_utc

    use_utc()
    sizes = Sizes(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["sizes"].items()})
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


def _now() -> datetime:
    """The wall clock as naive UTC: events after it are in the future, as in the jobs (`Run.clock`)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


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
    fs = defs.feature_sets["user_30d"]
    # Events each job reads: the naive job re-reads every window's range, the nightly one day plus
    # lateness. At equal cost per event their ratio would be the naive / nightly ratio.
    windows = sorted({w.seconds for f in fs.features for w in f.windows})
    naive_events = sum(_clean_events(engine.spark, defs, fs, as_of - timedelta(seconds=w), as_of).count() for w in windows)
    nightly_events = next(iter(b.counts.values()))["events_aggregated"]  # clean events, as the naive counts
    counts = [f"{f.name}_{w}" for f in fs.features if f.aggregation == "count" for w in f.windows]
    snap = wh.read("snapshots/user_30d").agg(*[F.sum(c).alias(c) for c in counts]).collect()[0].asDict()
    naive = engine.spark.read.parquet(str(_scratch(wh, "naive-30d"))).agg(*[F.sum(c).alias(c) for c in counts])
    naive_sums = naive.collect()[0].asDict()
    return {
        "history_days": sizes.history_days,
        "events_per_day": sizes.events_per_day,
        "keys": wh.read("snapshots/user_30d").count(),
        "features": len(fs.features),
        "repeats": sizes.repeats,
        "setup_history_s": setup_s,
        "events_read": {"naive_30d": naive_events, "nightly": nightly_events},
        "runs": runs,
        "check": {"snapshot_sums": snap, "naive_sums": naive_sums,
                  "agree": all(int(snap[c] or 0) == int(naive_sums[c] or 0) for c in counts)},
    }


def _gate_seconds(run: Any) -> float:
    """Seconds a run spent in Great Expectations validation (its `validate ...` steps)."""
    return sum(v for k, v in run.steps.items() if k.startswith("validate "))


def _scratch(wh: Any, name: str) -> Path:
    return wh.root / "_bench" / name


def _history(engine: Any, defs: Any, new_day: date) -> float:
    """Backfill the history once (user_30d), then copy its blocks to the other feature sets.

    The three feature sets have the same features and block sizes (only their windows differ), so
    their block tables are identical; copying saves two backfills of the whole history.
    """
    from spark_jobs.jobs import backfill
    from spark_jobs.jobs.runner import warehouse_for

    wh = warehouse_for(engine)
    t = time.perf_counter()
    if not wh.exists("blocks/user_30d"):
        _job(engine, defs, "backfill", backfill.run, start=START, end=new_day, names=["user_30d"])
    for k in LENGTHS[:-1]:
        target = wh.path(f"blocks/user_{k}")
        if not wh.exists(f"blocks/user_{k}"):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(wh.path("blocks/user_30d"), target)
    return time.perf_counter() - t


def naive_windows(spark: Any, defs: Any, fs: Any, as_of: datetime) -> Any:
    """Every key's windows as of `as_of` straight from raw events (no blocks): the naive baseline.

    Each window length reads its own range of raw events, [as_of - W, as_of), and aggregates it
    with the same aggregation algebra (map then finalize over all of the window's events).
    """
    from spark_jobs.aggregations import REGISTRY
    from spark_jobs.jobs.snapshot import all_refs
    from spark_jobs.transforms.blocks import agg_input, quote
    from spark_jobs.transforms.pit import fill_empty

    refs = all_refs(fs)
    keys = [quote(k) for k in fs.key]
    out = None
    for w in sorted({r.window.seconds for r in refs}):
        lo = as_of - timedelta(seconds=w)
        events = _clean_events(spark, defs, fs, lo, as_of)
        aggs, finals = [], []
        for ref in [r for r in refs if r.window.seconds == w]:
            feature = fs.feature(ref.feature)
            agg, x = REGISTRY[feature.aggregation], agg_input(feature, fs, events.schema)
            names = {p: f"_nv_{ref.column}__{p}" for p in agg.parts}
            aggs += [_expr(e).alias(names[p]) for p, e in agg.map_sql(x).items()]
            finals.append(_expr(agg.finalize_sql({p: quote(n) for p, n in names.items()}, x)).alias(ref.column))
        part = events.groupBy(*keys).agg(*aggs).select(*keys, *finals)
        out = part if out is None else out.join(part, on=list(fs.key), how="full")
    return fill_empty(out, fs, refs)


def _expr(sql: str) -> Any:
    from pyspark.sql import functions as F

    return F.expr(sql)


def _impressions(engine: Any, defs: Any, lo: datetime, hi: datetime, keys: list[str], folder: Path) -> Any:
    """Distinct impressions in [lo, hi) with their keys and watermark, materialised once."""
    from pyspark.sql import functions as F

    from spark_jobs.storage.sources import TimeRange, read_source
    from spark_jobs.storage.tables import stage
    from spark_jobs.transforms.events import TS, dedupe, in_range, with_event_time

    src = defs.sources["impressions"]
    raw = with_event_time(read_source(engine.spark, defs, "impressions", TimeRange(lo, hi), {}), src.timestamp, src.name)
    raw = raw.withColumn(WATERMARK, F.col(WATERMARK).cast("timestamp"))
    imps = dedupe(in_range(raw.filter(F.col(ID).isNotNull()), lo, hi), (ID,))
    return stage(engine.spark, folder, imps.select(ID, TS, WATERMARK, *keys))


def task_pit(engine: Any, defs: Any, sizes: Sizes) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from spark_jobs.jobs import snapshot, timeline
    from spark_jobs.jobs.runner import warehouse_for
    from spark_jobs.storage.tables import stage
    from spark_jobs.transforms.events import TS
    from spark_jobs.transforms.pit import fill_empty, lookup
    from spark_jobs.transforms.sweep import point_in_time

    wh = warehouse_for(engine)
    new_day = START + timedelta(days=sizes.history_days)
    end = midnight(new_day + timedelta(days=1))
    _history(engine, defs, new_day)
    fs = defs.feature_sets["user_7d"]
    refs = snapshot.all_refs(fs)
    columns = [r.column for r in refs]
    if not wh.exists("snapshots/user_7d"):
        _job(engine, defs, "snapshot", snapshot.run, as_of=end, names=["user_7d"])
    # Impressions from the 8th day of history to the new day (excluded: it may not be backfilled),
    # so every 7d window has blocks behind it.
    base = _impressions(engine, defs, midnight(START + timedelta(days=7)), midnight(new_day), ["user_id"],
                        _scratch(wh, "pit-impressions"))
    n = base.count()
    floor_values = stage(engine.spark, _scratch(wh, "pit-floor-values"), wh.read("snapshots/user_7d").select("user_id", *columns))
    blocks = wh.read("blocks/user_7d")
    # The timeline the backfill derives beside the blocks (here for the copied block table).
    _job(engine, defs, "backfill", lambda e, w, d, r: timeline.follow(e, w, r, fs, "blocks/user_7d", w.version("blocks/user_7d")))
    tl = wh.read("timelines/user_7d", version=timeline.in_step(wh, fs.name, wh.version("blocks/user_7d")))
    every = max(1, -(-n // sizes.naive_pit_impressions))
    subset = f"pmod(xxhash64({ID}), {every}) = 0"
    naive_base = stage(engine.spark, _scratch(wh, "pit-naive-impressions"), base.filter(subset))
    n_naive = naive_base.count()
    events = _clean_events(engine.spark, defs, fs, midnight(START), end)

    def pit() -> Any:
        return fill_empty(point_in_time(engine, base, blocks, fs, refs, id_column=ID, ts=TS, watermark=WATERMARK, timeline=tl), fs, refs)

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

    times: dict[str, list[float]] = {}
    variants = [("floor", floor), ("pit", pit), ("pit_blocks", pit_blocks), ("pit_sql", pit_sql), ("naive", naive), ("floor_scalar", floor_scalar),
                ("pit_scalar", pit_scalar)]
    for r in range(sizes.repeats):
        for name, build in (variants if r % 2 == 0 else variants[::-1]):
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
        "floor_s": med["floor"],
        "pit_s": med["pit"],
        "pit_sql_s": med["pit_sql"],
        "pit_blocks_s": med["pit_blocks"],
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


def _clean_events(spark: Any, defs: Any, fs: Any, lo: datetime, hi: datetime) -> Any:
    """`fs`'s source events in [lo, hi), cleaned as the backfill cleans them (no blocks)."""
    from spark_jobs.storage.sources import TimeRange, read_source
    from spark_jobs.transforms.events import clean_events, with_event_time

    src = defs.sources[fs.source]
    raw = read_source(spark, defs, fs.source, TimeRange(lo, hi), {})
    return clean_events(with_event_time(raw, src.timestamp, fs.source), fs.key, src.dedupe_key, lo, hi, _now())


def naive_lookup(impressions: Any, events: Any, fs: Any, refs: Any) -> Any:
    """Point-in-time values by a range join of every impression to its key's raw events."""
    from spark_jobs.aggregations import REGISTRY
    from spark_jobs.transforms.blocks import agg_input, quote
    from spark_jobs.transforms.events import TS
    from spark_jobs.transforms.pit import END, T_FLOOR, fill_empty, with_window_bounds

    its = "_nv_t"
    req = with_window_bounds(impressions.withColumnRenamed(TS, its), fs, its, WATERMARK)
    longest = max(r.window.seconds for r in refs)
    t = f"unix_seconds({TS})"
    joined = req.join(events, on=list(fs.key), how="inner").filter(f"{t} >= {T_FLOOR} - {longest} AND {t} < {END}")
    features = {f.name: f for f in fs.features}
    aggs, finals = [], []
    for ref in refs:
        feature = features[ref.feature]
        agg, x = REGISTRY[feature.aggregation], agg_input(feature, fs, events.schema)
        x = replace(x, cond=f"({x.cond}) AND {t} >= {T_FLOOR} - {ref.window.seconds}")
        names = {p: f"_nv_{ref.column}__{p}" for p in agg.parts}
        aggs += [_expr(e).alias(names[p]) for p, e in agg.map_sql(x).items()]
        finals.append(_expr(agg.finalize_sql({p: quote(n) for p, n in names.items()}, x)).alias(ref.column))
    values = joined.groupBy(ID).agg(*aggs).select(ID, *finals)
    return fill_empty(impressions.select(ID).join(values, on=ID, how="left"), fs, refs)


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
                out = joins.join_on_id(engine, run, base, frames, ID, bucketing=mode == "bucketed")
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
                joins.drop_bucketed(engine, run)
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


def _chunk_share(warehouse: Path) -> float:
    """The share of its days a (running) backfill in `warehouse` has committed, from its manifest."""
    from spark_jobs.storage.manifest import read_manifests

    for m in read_manifests(warehouse):
        counts = (m.get("counts") or {}).get("user_history") or {}
        lo, hi = (datetime.fromisoformat(x.rstrip("Z")) for x in counts.get("range") or ["2000-01-01", "2000-01-01"])
        total = (hi - lo).total_seconds()
        done = sum((datetime.fromisoformat(c["range"][1].rstrip("Z")) - datetime.fromisoformat(c["range"][0].rstrip("Z"))).total_seconds()
                   for c in counts.get("chunks") or [])
        return done / total if total else 0.0
    return 0.0


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "nightly": task_nightly,
    "pit": task_pit,
    "engines": task_engines,
    "bucketed": task_bucketed,
    "scale": task_scale,
    "backfill": task_backfill,
}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        raise SystemExit(_worker(sys.argv[2]))
    raise SystemExit("usage: python -m spark_jobs.jobs.bench --worker SPEC (use `tilewise bench`)")
