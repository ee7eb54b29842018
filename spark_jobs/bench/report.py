"""The bench's goals, its markdown report and its chart, rendered from `results.json`'s dict.

Pure functions of the results (no engine): `goals` compares the measured ratios with their
targets, `markdown` writes `results.md`, `write_chart` draws `results.png` when matplotlib is
installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spark_jobs.bench.config import LENGTHS


# Goals of issues #6 and #13: (key, text, target, higher_is_better)
GOALS = (
    ("nightly_30d_over_1d", "nightly cost at 30d windows vs 1d", 1.5, False),
    ("naive_over_nightly_30d", "naive recompute vs nightly, 30d windows", 20.0, True),
    ("naive_over_nightly_90d", "naive recompute vs nightly, 90d windows", 20.0, True),
    ("nightly_over_naive_per_event_30d", "cost per event read, nightly vs naive (30d windows)", 2.0, False),
    ("pit_over_floor", "point-in-time lookup vs equi-join floor (3x stretch)", 4.0, False),
    ("classic_over_sail", "classic Spark vs Sail, demo pipeline", 5.0, True),
    ("scale_50m_peak_gb", "peak memory of a 50M-event nightly run (GB)", 24.0, False),
    ("resumed_over_full", "backfill resumed after a kill at 60% vs a full run", 0.5, False),
)


# -- goals, markdown, chart ----------------------------------------------------------------------
def goals(sections: dict[str, Any]) -> list[dict[str, Any]]:
    measured: dict[str, float | None] = dict.fromkeys(g[0] for g in GOALS)
    if "nightly" in sections:
        measured["nightly_30d_over_1d"] = sections["nightly"]["ratios"]["nightly_30d_over_1d"]
        measured["naive_over_nightly_30d"] = sections["nightly"]["ratios"]["naive_over_nightly_30d"]
        measured["naive_over_nightly_90d"] = sections["nightly"]["ratios"].get("naive_over_nightly_90d")
        measured["nightly_over_naive_per_event_30d"] = sections["nightly"]["ratios"].get("nightly_over_naive_per_event_30d")
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
        f"load average {m['loadavg_start'][0]:.1f} at the start and {m['loadavg_end'][0]:.1f} at the end"
        + (f", CPU steal {m['steal_s']:.0f} s (time the hypervisor gave these cores to other machines)"
           if m.get("steal_s") is not None else "")
        + " (a shared machine: read the ratios, each measured within one run, not the seconds).",
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
            if "naive_90d" in e:
                out += [f"At 90d windows: naive {e['naive_90d']:,} events read, "
                        f"{_fmt(rt['naive_over_nightly_events_read_90d'])}x the nightly run's; naive(90d) / nightly(90d) = "
                        f"{_fmt(rt['naive_over_nightly_90d'])}.", ""]
            if "nightly_over_naive_per_event" in rt:
                per = rt["nightly_over_naive_per_event"]
                out += ["Cost per event read, nightly / naive (seconds per event of each job): "
                        + ", ".join(f"{_fmt(v)} at {k}" for k, v in per.items()) + ".", ""]
    if "pit" in s:
        p = s["pit"]
        out += [
            "## Point-in-time lookup",
            "",
            f"{p['impressions']:,} impressions x {p['features']} feature columns (`{p['feature_set']}`). "
            f"Medians of {p.get('fast_repeats', p.get('repeats', 1))} runs ({p.get('repeats', 1)} for the SQL assembly and the "
            "naive join), the kernels loaded before the first.",
            "",
            "| method | impressions | seconds | per 1k impressions (s) |",
            "|---|---|---|---|",
            f"| equi-join to one value per key (floor) | {p['impressions']:,} | {_fmt(p['floor_s'])} | "
            f"{_fmt(1000 * p['floor_s'] / p['impressions'], 4)} |",
            f"| tilewise lookup (sorted sweep over the timeline) | {p['impressions']:,} | {_fmt(p['pit_s'])} | "
            f"{_fmt(1000 * p['pit_s_per_impression'], 4)} |",
            *([f"| its reads, shuffle and hand-over to Python alone (partitions read and dropped) | {p['impressions']:,} | "
               f"{_fmt(p['pit_transfer_s'])} | {_fmt(1000 * p['pit_transfer_s'] / p['impressions'], 4)} |"]
              if "pit_transfer_s" in p else []),
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
            + (f"; the sweep's transfer alone / floor = {_fmt(p['ratios']['transfer_over_floor'])}"
               if "transfer_over_floor" in p["ratios"] else "")
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
                     f"naive/nightly at 30d = {rt['naive_over_nightly_30d']:.2f}x"
                     + (f", at 90d = {rt['naive_over_nightly_90d']:.2f}x" if "naive_over_nightly_90d" in rt else ""),
                     fontsize=10)
    else:
        ax.set_title("Nightly cost vs window length")
    ax = axes[0][1]
    if "pit" in s:
        p = s["pit"]
        per_k = [1000 * p["floor_s"] / p["impressions"], 1000 * p["pit_s_per_impression"], 1000 * p["naive_s_per_impression"]]
        ax.bar(["equi-join\nfloor", "tilewise\nlookup (sweep)", "naive\nrange join"], per_k, color=["grey", "C0", "C1"])
        ax.set_yscale("log")
        ax.set_ylabel("seconds per 1k impressions (log)")
        ax.set_title(f"Point-in-time lookup ({p['impressions']:,} impressions x {p['features']})\n"
                     f"lookup/floor = {p['ratios']['pit_over_floor']:.2f}x", fontsize=10)
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
    panels = ((0, 0, "nightly"), (0, 1, "pit"), (0, 2, "engines"), (1, 0, "bucketed"), (1, 1, "scale"), (1, 2, "scale"))
    for row, col, section in panels:
        if section not in s:  # a run of some sections only: say so instead of drawing empty axes
            axes[row][col].set_xticks([])
            axes[row][col].set_yticks([])
            axes[row][col].text(0.5, 0.5, f"section {section}\nnot in this run", ha="center", va="center", color="grey")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
