"""The event time a block table has been backfilled over, kept beside it in `_tilewise_coverage.json`.

A block table holds blocks only where there were events, so the table alone cannot tell a quiet
day from a day nobody backfilled. Each backfill chunk records the range it computed once its
commit landed (a `--rebuild`'s first chunk replaces the record), and a lookup that needs blocks
outside the recorded ranges (a training set, a snapshot) says so: those windows hold no blocks
and count as empty. A process that dies between a commit and this record leaves the range out
(the next run over it records it); the record never names a range whose commit did not land.
A `tilewise restore` forgets the record (the restored version's coverage is not known), and a
table without one (built before it was kept) is not checked.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from spark_jobs.plan.chunks import DAY

FILE = "_tilewise_coverage.json"  # "_": Delta and VACUUM leave it alone

Ranges = list[tuple[int, int]]  # [lo, hi) in epoch seconds, sorted, disjoint, not touching


def read(table_path: Path) -> Ranges | None:
    """The recorded ranges, or None when the table has no record."""
    try:
        data = json.loads((table_path / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ranges = data.get("ranges") if isinstance(data, dict) else None
    if not isinstance(ranges, list):
        return None
    return merge([(int(lo), int(hi)) for lo, hi in ranges])


def record(table_path: Path, lo: int, hi: int, *, reset: bool = False) -> None:
    """Add [lo, hi) to the table's record (replace the record with it when `reset`). The caller
    holds the table's lock and has committed the blocks of that range."""
    ranges = [] if reset else (read(table_path) or [])
    merged = merge([*ranges, (lo, hi)])
    tmp = table_path / f".{FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"ranges": [list(r) for r in merged],
                               "text": [f"{_ts(a)} .. {_ts(b)}" for a, b in merged]}) + "\n", encoding="utf-8")
    os.replace(tmp, table_path / FILE)


def forget(table_path: Path) -> None:
    (table_path / FILE).unlink(missing_ok=True)


def merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(r for r in ranges if r[0] < r[1]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def gaps(ranges: Ranges, lo: int, hi: int) -> Ranges:
    """The parts of [lo, hi) outside `ranges`."""
    out: Ranges = []
    at = lo
    for a, b in merge(ranges):
        if b <= at or a >= hi:
            continue
        if a > at:
            out.append((at, min(a, hi)))
        at = max(at, b)
        if at >= hi:
            break
    if at < hi:
        out.append((at, hi))
    return out


def note(table_path: Path, table: str, feature_set: str, lo: int, hi: int, what: str) -> str | None:
    """`gap_note` against the table's record; None when it has none (not checked)."""
    ranges = read(table_path)
    return None if ranges is None else gap_note(table, feature_set, ranges, lo, hi, what)


def gap_note(table: str, feature_set: str, ranges: Ranges, lo: int, hi: int, what: str) -> str | None:
    """A note for a run that needs `table`'s blocks over [lo, hi) (for `what`), or None when the
    record covers that range."""
    missing = gaps(ranges, lo, hi)
    if not missing:
        return None
    have = ", ".join(f"[{_ts(a)}, {_ts(b)})" for a, b in ranges) or "no range"
    holes = ", ".join(f"[{_ts(a)}, {_ts(b)})" for a, b in missing)
    first = datetime.fromtimestamp(missing[0][0] - missing[0][0] % DAY, timezone.utc).date()
    last = datetime.fromtimestamp(missing[-1][1] + (-missing[-1][1]) % DAY, timezone.utc).date()
    return (
        f"{table} was backfilled over {have}; {what} need it over [{_ts(lo)}, {_ts(hi)}): their windows over "
        f"{holes} hold no blocks and count as empty. To fill them: tilewise backfill --start {first} "
        f"--end {last if last > first else first + timedelta(days=1)} --feature-set {feature_set}"
    )


def _ts(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M")
