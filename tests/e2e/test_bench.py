"""`tilewise bench` in its tiny mode: every section reports positive timings and ratios, and the
markdown table and the PNG chart are written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench(tmp_path: Path, *sections: str) -> dict:
    env = {**os.environ, "TZ": "UTC"}
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "spark_jobs.cli", "bench", "--tiny", "--quiet", "--out", str(out),
           "--work", str(tmp_path / "work"), "--sections", ",".join(sections)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    assert (out / "results.md").read_text().startswith("# tilewise bench (tiny)")
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads((out / "results.json").read_text())


def positive(d: dict, *keys: str) -> None:
    for k in keys:
        assert isinstance(d[k], (int, float)) and d[k] > 0, (k, d[k])


def test_bench_tiny_sail_sections(tmp_path: Path) -> None:
    r = bench(tmp_path, "nightly", "pit", "scale")
    assert r["machine"]["cores"] >= 1 and r["machine"]["memory_bytes"] > 0
    assert r["machine"]["steal_s"] >= 0 and "steal_s_start" not in r["machine"]  # Linux: /proc/stat has it
    assert r["versions"]["pyspark"] and r["versions"]["pysail"] and r["versions"]["python"]
    n = r["sections"]["nightly"]
    for k in ("1d", "7d", "30d", "90d"):
        positive(n["runs"][k], "backfill_s", "snapshot_s", "nightly_s", "naive_s")
    positive(n["ratios"], "nightly_30d_over_1d", "naive_over_nightly_30d", "naive_over_nightly_90d",
             "nightly_over_naive_per_event_30d")
    assert n["check"]["agree"], n["check"]  # the naive job computes the same counts as the blocks
    # The naive job re-reads 1h + 1d + 7d + 30d of events, the nightly run 1 day plus 1d of lateness.
    ratio = n["ratios"]["naive_over_nightly_events_read"]
    assert 38.04 / 2 * 0.8 < ratio < 38.04 / 2 * 1.2, n["events_read"]
    ratio = n["ratios"]["naive_over_nightly_events_read_90d"]  # and 1h + 1d + 7d + 30d + 90d
    assert 128.04 / 2 * 0.8 < ratio < 128.04 / 2 * 1.2, n["events_read"]
    per_event = n["ratios"]["nightly_over_naive_per_event"]
    for k in ("30d", "90d"):  # (nightly s / nightly events) / (naive s / naive events)
        read = n["events_read"]
        expected = (n["runs"][k]["nightly_s"] / read["nightly"]) / (n["runs"][k]["naive_s"] / read[f"naive_{k}"])
        assert per_event[k] == pytest.approx(expected)
    p = r["sections"]["pit"]
    positive(p, "floor_s", "pit_s", "pit_transfer_s", "naive_s", "impressions", "naive_impressions")
    positive(p["ratios"], "pit_over_floor", "transfer_over_floor", "naive_over_pit")
    assert p["check"]["agree"], p["check"]
    (point,) = r["sections"]["scale"]["points"]
    positive(point, "events", "events_per_s", "peak_rss_bytes", "generate_events_per_s")
    goals = {g["key"]: g for g in r["goals"]}
    assert goals["nightly_30d_over_1d"]["measured"] == n["ratios"]["nightly_30d_over_1d"]
    assert goals["classic_over_sail"]["met"] is None  # not measured in this run


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java")
def test_bench_tiny_classic_sections(tmp_path: Path) -> None:
    r = bench(tmp_path, "engines", "bucketed")
    e = r["sections"]["engines"]
    for name in ("sail", "spark"):
        positive(e[name], "backfill_s", "training_s", "pipeline_s", "startup_s", "peak_rss_bytes")
    assert e["sail"]["rows"] == e["spark"]["rows"] > 0
    positive(e["ratios"], "classic_over_sail", "classic_over_sail_with_startup")
    b = r["sections"]["bucketed"]
    positive(b, "shuffle_s", "bucketed_s", "bucketed_join_only_s")
    assert b["bucketed_exchanges"] == 0 < b["shuffle_exchanges"]


def test_report_renders_every_section(tmp_path: Path) -> None:
    from spark_jobs.bench import goals, markdown, write_chart

    run = {"backfill_s": 2.0, "snapshot_s": 1.0, "nightly_s": 3.0, "nightly_without_gate_s": 2.0, "gate_s": 1.0,
           "naive_s": 6.0}
    engine = {"engine": "sail", "table_format": "delta", "startup_s": 1.0, "backfill_s": 2.0, "training_s": 3.0,
              "pipeline_s": 5.0, "total_s": 6.0, "peak_rss_bytes": 2**30}
    sections = {
        "nightly": {"history_days": 30, "events_per_day": 10, "keys": 5, "features": 7, "repeats": 1,
                    "runs": {k: run for k in ("1d", "7d", "30d", "90d")}, "check": {"agree": True},
                    "events_read": {"naive_30d": 190, "naive_90d": 640, "nightly": 10},
                    "ratios": {"nightly_30d_over_1d": 1.0, "naive_over_nightly_30d": 2.0, "naive_over_nightly_events_read": 19.0,
                               "nightly_30d_over_1d_without_gate": 1.0, "naive_over_nightly_30d_without_gate": 3.0,
                               "naive_over_nightly_90d": 21.0, "naive_over_nightly_events_read_90d": 64.0,
                               "nightly_over_naive_per_event": {"30d": 9.5, "90d": 1.5},
                               "nightly_over_naive_per_event_30d": 9.5}},
        "pit": {"feature_set": "user_7d", "impressions": 100, "features": 21, "naive_impressions": 10, "floor_s": 1.0,
                "pit_s": 2.0, "naive_s": 3.0, "pit_s_per_impression": 0.02, "naive_s_per_impression": 0.3,
                "check": {"agree": True}, "ratios": {"pit_over_floor": 2.0, "naive_over_pit": 15.0}},
        "engines": {"days": 2, "events": 100, "sail": engine, "spark": {**engine, "engine": "spark", "pipeline_s": 30.0},
                    "ratios": {"classic_over_sail": 6.0, "classic_over_sail_with_startup": 5.0}},
        "bucketed": {"impressions": 100, "frames": ["a", "b", "c"], "repeats": 1, "shuffle_s": 2.0, "bucketed_s": 3.0,
                     "bucketed_join_only_s": 1.0, "shuffle_exchanges": 4, "bucketed_exchanges": 0},
        "scale": {"points": [{"engine": "sail", "events": 50_000_000, "nightly_s": 100.0, "events_per_s": 5e5,
                              "peak_rss_gb": 6.0, "generate_events_per_s": 3e5}]},
        "backfill": {"points": [{"days": 30, "events": 300, "chunks": 2, "seconds": 3.0, "events_per_s": 100.0,
                                 "peak_rss_gb": 1.5}],
                     "resume": {"days": 90, "step_days": 10, "killed_at_share": 0.61, "full_s": 10.0, "resumed_s": 4.5,
                                "chunks": 10, "kept": 6, "resumed_over_full": 0.45}},
    }
    results = {"mode": "tiny", "started": "now", "seconds": 1.0, "sections": sections,
               "machine": {"cores": 2, "memory_gb": 24, "loadavg_start": [1.0], "loadavg_end": [1.0]},
               "versions": {"python": "3.11", "pyspark": "4.2.0", "pysail": "0.7.2", "java": None}}
    results["goals"] = goals(sections)
    assert [g["met"] for g in results["goals"]] == [True, False, True, False, True, True, True, True]
    md = markdown(results)
    for title in ("Nightly cost", "Point-in-time", "Engines", "Bucketed", "Scale", "Backfill"):
        assert f"## {title}" in md
    assert "6 of 10 chunks kept, 4.50 s against 10.00 s for a full run (0.45 of it)" in md
    assert "naive 190 (every window's range), nightly 10 (the new day plus lateness): 19.00x" in md
    assert "At 90d windows: naive 640 events read, 64.00x the nightly run's; naive(90d) / nightly(90d) = 21.00." in md
    assert "nightly / naive (seconds per event of each job): 9.50 at 30d, 1.50 at 90d." in md
    assert write_chart(results, tmp_path / "c.png") is not None
    assert (tmp_path / "c.png").stat().st_size > 10_000


@pytest.mark.slow
def test_bench_tiny_backfill_section(tmp_path: Path) -> None:
    r = bench(tmp_path, "backfill")
    (point,) = r["sections"]["backfill"]["points"]
    positive(point, "events", "events_per_s", "peak_rss_bytes", "seconds")
    assert point["chunks"] == 6 and point["kept"] == 0  # 1d of lateness + 10 days in 2-day chunks
    resume = r["sections"]["backfill"]["resume"]
    positive(resume, "full_s", "resumed_s", "resumed_over_full")
    assert resume["full_s"] == point["seconds"], "the 10-day point is the full run"
    # Killed once 60% of the days were committed (unless the run finished between two polls).
    assert resume["chunks"] == 6 and 0 < resume["kept"] <= 6
    assert (resume["kept"] < 6) == (resume["killed_at_share"] < 1)
    assert {g["key"]: g for g in r["goals"]}["resumed_over_full"]["measured"] == resume["resumed_over_full"]
