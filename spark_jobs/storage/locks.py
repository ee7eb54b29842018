"""One writer per table: an exclusive `flock` on a lock file in the warehouse.

Sail detects no write conflicts (two overwrites of one Delta table can both "win" and lose an
update), so tilewise serialises writers itself. `flock` is released by the kernel when the holder
dies, so a kill -9 never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from spark_jobs.errors import TableBusy  # exit 3: retry later

__all__ = ["TableBusy", "table_lock"]

_HELD: dict[Path, int] = {}  # locks this process holds -> depth (a job holds a table while it writes it)


@contextmanager
def table_lock(
    lock_dir: Path, table: str, *, timeout_s: float, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold `table` exclusively; re-entrant within this process."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = (lock_dir / (table.replace("/", "__") + ".lock")).resolve()
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_holder(path)
                if time.monotonic() >= deadline:
                    raise TableBusy(
                        f"table {table} is being written by another run ({holder}); gave up after {timeout_s:.0f}s"
                    ) from None
                if on_wait and not told:
                    on_wait(f"waiting for table {table}: held by {holder}")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        _HELD[path] = 1
        try:
            yield
        finally:
            del _HELD[path]
    finally:
        os.close(fd)  # closing releases the flock


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info.get('pid')} on {info.get('host')}"
    except (OSError, ValueError):
        return "an unknown process"
