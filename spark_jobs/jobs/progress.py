"""Progress of a chunked backfill: a live bar on a terminal, timestamped lines in a log.

Both show the same numbers, which the manifest records too: chunk i of N, events per second of
the chunks computed so far, elapsed time and the estimated time left (from the seconds per day
of the computed chunks times the days left; chunks a resumed run keeps cost nothing).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from spark_jobs.plan.chunks import Chunk
from spark_jobs.storage.manifest import Run


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Counts chunks of one feature set's backfill as they are kept or computed."""

    def __init__(self, run: Run, label: str, chunks: list[Chunk], *, tty: bool | None = None):
        self.run, self.label, self.chunks = run, label, chunks
        self.t0 = time.time()
        self.events = 0
        self.busy_s = 0.0  # seconds spent on computed chunks
        self.days_done = 0.0  # days of computed chunks
        self.days_left = sum(c.days for c in chunks)
        self.finished = 0
        use_bar = sys.stderr.isatty() if tty is None else tty
        self.bar: Any = None
        if use_bar and not run.quiet and len(chunks) > 1:
            from tqdm import tqdm

            # tqdm's own rate and ETA would count kept chunks as work done: ours are in the postfix.
            self.bar = tqdm(total=len(chunks), desc=f"{label}: chunk", file=sys.stderr, dynamic_ncols=True, leave=True,
                            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| elapsed {elapsed}{postfix}")

    def numbers(self) -> dict[str, Any]:
        """What the bar and the lines show, for the manifest too."""
        elapsed = time.time() - self.t0
        rate = self.events / self.busy_s if self.busy_s > 0 else None
        eta = self.busy_s / self.days_done * self.days_left if self.days_done > 0 else None
        return {
            "chunks_finished": self.finished,
            "chunks": len(self.chunks),
            "events_per_s": round(rate, 1) if rate is not None else None,
            "elapsed_s": round(elapsed, 3),
            "eta_s": round(eta, 3) if eta is not None else None,
        }

    def kept(self, chunk: Chunk, why: str) -> None:
        self._advance(chunk)
        self._show(f"chunk {chunk.index + 1}/{len(self.chunks)} kept ({why})")

    def computed(self, chunk: Chunk, events: int, seconds: float) -> None:
        """Count a committed chunk; `show_computed` prints it (after the manifest records it)."""
        self.events += events
        self.busy_s += seconds
        self.days_done += chunk.days
        self._advance(chunk)

    def show_computed(self, chunk: Chunk, events: int, seconds: float) -> None:
        self._show(f"chunk {chunk.index + 1}/{len(self.chunks)} committed: {events:,} events in {seconds:.1f}s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _advance(self, chunk: Chunk) -> None:
        self.finished += 1
        self.days_left = max(0.0, self.days_left - chunk.days)

    def _show(self, what: str) -> None:
        n = self.numbers()
        rate = f"{n['events_per_s']:,.0f} events/s" if n["events_per_s"] is not None else "- events/s"
        eta = _clock(n["eta_s"]) if n["eta_s"] is not None else "-"
        if self.bar is not None:
            self.bar.set_postfix_str(f"{rate}, ETA {eta}", refresh=False)
            self.bar.update(1)
            self.bar.write(f"{self.label}: {what}", file=sys.stderr)
            return
        self.run.say(f"{self.label}: {what}; {n['chunks_finished']}/{n['chunks']} chunks, {rate}, "
                     f"elapsed {_clock(n['elapsed_s'])}, ETA {eta}")
