"""Run manifests (`_runs/<run_id>.json`) and the progress / summary lines every run prints.

A manifest records what a run read and wrote so an output can be traced and rebuilt: command,
definition hashes, input and output table versions, row counts (read, written, dropped and why),
validation outcome and durations. It is written at the end of the run, also when it fails.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Run:
    """One command's run: its id, folder, counters and timings."""

    command: str
    warehouse: Path
    args: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    targets: list[str] = field(default_factory=list)  # the tables the run set out to write or validate
    run_id: str = ""
    started: float = field(default_factory=time.time)
    steps: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Table -> logged name -> online/offline consistency totals (see `consistency_line`).
    consistency: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)
    engine: str = ""
    profile: dict[str, Any] = field(default_factory=dict)  # the settings the run ran with
    status: str = "running"
    error: str | None = None
    traceback: str | None = None  # of an unexpected error (exit 4): the CLI shows it only with --debug

    def __post_init__(self) -> None:
        if not self.run_id:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            self.run_id = f"{stamp}-{self.command}-{uuid.uuid4().hex[:6]}"

    @property
    def clock(self) -> datetime:
        """The run's start on the wall clock (naive UTC): an event after it is in the future."""
        return datetime.fromtimestamp(self.started, timezone.utc).replace(tzinfo=None)

    @property
    def dir(self) -> Path:
        """Folder for this run's reports and rejected output."""
        return self.warehouse / "_runs" / self.run_id

    # -- progress ----------------------------------------------------------------------------
    def say(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.time() - self.started
            print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)

    def step(self, name: str) -> "_Step":
        return _Step(self, name)

    def drop(self, reason: str, rows: int) -> None:
        if rows:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(rows)

    # -- manifest ----------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        seconds = time.time() - self.started
        validating = sum(float(v.get("seconds") or 0.0) for v in self.validation.values())
        return {
            "run_id": self.run_id,
            "command": self.command,
            "args": self.args,
            "targets": self.targets,
            "engine": self.engine,
            "profile": self.profile,
            "status": self.status,
            "error": self.error,
            "traceback": self.traceback,
            "started": datetime.fromtimestamp(self.started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished": _now_iso(),
            "seconds": round(seconds, 3),
            # What the quality gate costs next to the whole run (Great Expectations time / run time).
            "validation_seconds": round(validating, 3),
            "validation_share": round(validating / seconds, 4) if seconds > 0 else None,
            "steps_seconds": {k: round(v, 3) for k, v in self.steps.items()},
            "definitions": self.definitions,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "counts": self.counts,
            "dropped": self.dropped,
            "validation": self.validation,
            "consistency": self.consistency,
            "notes": self.notes,
            "pid": os.getpid(),
        }

    def write_manifest(self) -> Path:
        path = manifest_path(self.warehouse, self.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest(), indent=2, default=str))
        tmp.replace(path)
        return path


def consistency_line(logged: str, c: dict[str, Any]) -> str:
    """One summary line of a logged value's totals over a run's dates."""
    rate = "n/a (nothing compared)" if c["match_rate"] is None else f"{c['match_rate']:.2%}"
    line = (f"{logged} vs {c['feature']}: match {rate}, {c['differ']:,} of {c['compared']:,} compared rows differ"
            f" ({c['logged_null']:,} logged null, {c['backfilled_null']:,} backfilled null)")
    if c.get("stale_matched") is not None and c["differ"]:
        lag = f", most at {c['stale_lag_blocks']} blocks" if c.get("stale_lag_blocks") else ""
        line += f"; {c['stale_matched']:,} stale{lag}, {c['differ'] - c['stale_matched']:,} logic"
    if c.get("worst_date") is not None and c["differ"]:
        line += f"; worst day {c['worst_date']} {c['worst_rate']:.2%}"
    return line


def manifest_path(warehouse: Path, run_id: str) -> Path:
    return warehouse / "_runs" / f"{run_id}.json"


def read_manifests(warehouse: Path) -> list[dict[str, Any]]:
    """Every readable run manifest under `warehouse`, newest first, each with its `manifest` path.

    A manifest being replaced (its `.json.tmp`) or damaged by hand is skipped: listing runs must
    not fail because of one file.
    """
    found = []
    for path in (warehouse / "_runs").glob("*.json"):
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and "run_id" in m:
            found.append({**m, "manifest": str(path)})
    return sorted(found, key=lambda m: (str(m.get("started")), str(m.get("finished")), m["run_id"]), reverse=True)


class _Step:
    def __init__(self, run: Run, name: str):
        self.run, self.name = run, name

    def __enter__(self) -> "_Step":
        self.t0 = time.time()
        self.run.say(f"{self.name} ...")
        return self

    def __exit__(self, *exc: object) -> None:
        took = time.time() - self.t0
        self.run.steps[self.name] = self.run.steps.get(self.name, 0.0) + took
        if exc[0] is None:
            self.run.say(f"{self.name} done in {took:.1f}s")
