"""The bench's parent process: data generation, one fresh worker process per engine run, peak memory.

`main` generates the data (numpy/pyarrow, no engine), runs each section's tasks in a worker
process (`python -m spark_jobs.bench --worker SPEC`) while sampling the resident memory of its
process tree, derives the ratios and writes the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from spark_jobs.bench.config import FULL, LENGTHS, QUICK, SECTIONS, START, TINY, Sizes, bench_defs_yaml
from spark_jobs.bench.report import goals, goals_table, markdown, write_chart
from spark_jobs.errors import InputDataError
from spark_jobs.jobs.invocation import Invocation


# -- the parent: data, workers, report ------------------------------------------------------------
def main(inv: Invocation) -> int:
    args = inv.args
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
    steal0 = cpu_steal_seconds()
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
    steal = cpu_steal_seconds()
    if steal is not None and steal0 is not None:
        results["machine"]["steal_s"] = round(steal - steal0, 1)
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

    def history_data(self, impressions: bool = True) -> Path:
        """The nightly and pit sections' days of events; impressions only for pit (the nightly
        section reads none, and 91 days of them took minutes to generate)."""
        s = self.sizes
        root = self.work / ("history" if impressions else "history-events")
        self.generate(root, days=s.history_days + 1, events_per_day=s.events_per_day,
                      impressions_per_day=s.impressions_per_day if impressions else 10, users=s.users, items=s.items)
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
        sail_tasks: list[str] = [t for t in ("nightly", "pit") if t in sections]
        if sail_tasks:
            root = self.history_data(impressions="pit" in sail_tasks)
            self.say(f"== {' + '.join(sail_tasks)} on {self.sail_conf}")
            res = self.worker(sail_tasks, self.sail_conf, root, root / "warehouse")
            if "nightly" in res:
                out["nightly"] = _nightly_ratios(res["nightly"])
            if "pit" in res:
                out["pit"] = _pit_ratios(res["pit"])
        classic_tasks: list[str] = [t for t in ("engines", "bucketed") if t in sections]
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
        cmd = [sys.executable, "-m", "spark_jobs.bench", "--worker", str(spec_path)]
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
    runs, read = res["runs"], res["events_read"]
    # Cost per event read, nightly over naive: (nightly s / nightly events) / (naive s / naive events).
    per_event = {k: (runs[k]["nightly_s"] / max(1, read["nightly"])) / (runs[k]["naive_s"] / max(1, read[f"naive_{k}"]))
                 for k in LENGTHS if f"naive_{k}" in read}
    res["ratios"] = {
        "naive_over_nightly_90d": runs["90d"]["naive_s"] / runs["90d"]["nightly_s"],
        "naive_over_nightly_events_read_90d": read["naive_90d"] / max(1, read["nightly"]),
        "nightly_over_naive_per_event": per_event,
        "nightly_over_naive_per_event_30d": per_event["30d"],
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
    if "pit_transfer_s" in res:
        res["ratios"]["transfer_over_floor"] = res["pit_transfer_s"] / res["floor_s"]
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


def cpu_steal_seconds() -> float | None:
    """CPU time the hypervisor gave to other guests while this one wanted it, summed over the
    cores since boot (`steal` in /proc/stat), or None where there is no such counter."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        if fields[0] == "cpu" and len(fields) > 8:
            return int(fields[8]) / (os.sysconf("SC_CLK_TCK") or 100)
    return None


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
