"""`tilewise runs`: what has run, from the manifests under `{warehouse}/_runs/`, newest first.

One line per run (start time, command, status, duration, what it was asked for, the tables written
with their versions, the validation outcome), and `--json` for machines: the same facts plus the run id, the error and
the manifest's path. Files only: no engine, no definitions needed.
"""

from __future__ import annotations

import json
from typing import Any

from spark_jobs.jobs.invocation import Invocation
from spark_jobs.names import near_tables
from spark_jobs.storage.manifest import read_manifests


def summarize(m: dict[str, Any]) -> dict[str, Any]:
    """The facts of one manifest that a listing shows."""
    validation = m.get("validation") or {}
    return {
        "run_id": m["run_id"],
        "started": m.get("started"),
        "command": m.get("command"),
        "status": m.get("status"),
        "seconds": m.get("seconds"),
        "engine": m.get("engine"),
        "scope": scope(m.get("args") or {}),
        "outputs": {t: {"version": o.get("version"), "rows": o.get("rows"), **({"unchanged": True} if o.get("unchanged") else {})}
                    for t, o in (m.get("outputs") or {}).items()},
        "validation": {t: bool(v.get("success")) for t, v in validation.items()},
        "error": (m.get("error") or "").splitlines()[0] if m.get("error") else None,
        "manifest": m["manifest"],
    }


def scope(args: dict[str, Any]) -> str:
    """What the run was asked for: a training set's name, a date range, a time, a table."""
    parts = [str(args["name"])] if args.get("name") else []
    if args.get("start") and args.get("end"):
        parts.append(f"[{args['start']}, {args['end']})")
    if args.get("as_of"):
        parts.append(f"as of {args['as_of']}")
    if isinstance(args.get("table"), str):
        parts.append(args["table"])
    return " ".join(parts)


def touches(m: dict[str, Any], table: str) -> bool:
    """Did the run set out to write or validate `table`, or read, write or validate it?"""
    return any(table in (m.get(part) or ()) for part in ("targets", "outputs", "inputs", "validation"))


def select(manifests: list[dict[str, Any]], last: int, table: str | None) -> list[dict[str, Any]]:
    return [summarize(m) for m in manifests if table is None or touches(m, table)][:last]


def line(r: dict[str, Any]) -> str:
    when = (r["started"] or "?").replace("T", " ").rstrip("Z")
    took = f"{r['seconds']:.1f}s" if isinstance(r["seconds"], (int, float)) else "?"
    wrote = ", ".join(f"{t} v{o['version']} (unchanged)" if o.get("unchanged") else f"{t} v{o['version']} ({o['rows'] or 0:,} rows)"
                      for t, o in r["outputs"].items()) or "-"
    failed = [t for t, ok in r["validation"].items() if not ok]
    asked = f"{r['scope']} -> " if r["scope"] else ""
    text = f"{when}  {r['command'] or '?':<12} {r['status'] or '?':<7} {took:>8}  {asked}{wrote}"
    if failed:
        text += f"; validation FAILED: {', '.join(failed)}"
    elif r["validation"]:
        text += "; validation passed"
    if r["error"]:
        text += f"; error: {r['error'][:160]}"
    return text


def main(inv: Invocation) -> int:
    args, profile = inv.args, inv.profile
    manifests = read_manifests(profile.warehouse_path)
    rows = select(manifests, args.last, args.table)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        what = f" touching {args.table}" if args.table else ""
        print(f"no runs{what} under {profile.warehouse_path / '_runs'}")
        if args.table:  # a typo, most likely: name the tables that have runs
            tables = sorted({t for m in manifests for t in (m.get("outputs") or {})} - {args.table})
            close = near_tables(args.table, tables)
            if close:
                print(f"did you mean {' or '.join(close)}?")
            elif tables:
                print(f"tables with runs: {', '.join(tables)}")
        return 0
    print(f"{'started (UTC)':<19}  {'command':<12} {'status':<7} {'took':>8}  asked for -> tables written (version, rows)")
    for r in rows:
        print(line(r))
    return 0
