"""Backfill progress: the numbers (events/s of computed chunks, ETA from their seconds per day),
timestamped lines off a terminal, and a bar on one."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from spark_jobs.jobs.progress import Progress
from spark_jobs.plan.chunks import DAY, plan_chunks
from spark_jobs.storage.manifest import Run


def test_lines_and_numbers_off_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chunks = plan_chunks(0, 4 * DAY, DAY, DAY)
    p = Progress(Run("backfill", tmp_path), "acts", chunks, tty=False)
    p.kept(chunks[0], "committed by r1, source files unchanged")  # costs nothing: not in the rate
    p.computed(chunks[1], 1000, 2.0)
    p.show_computed(chunks[1], 1000, 2.0)
    n = p.numbers()
    assert (n["chunks_finished"], n["chunks"], n["events_per_s"]) == (2, 4, 500.0)
    assert n["eta_s"] == pytest.approx(4.0)  # 2 days left at 2 s per computed day
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("acts: chunk 1/4 kept (committed by r1, source files unchanged); 1/4 chunks, - events/s, "
                           "elapsed 0:00, ETA -")
    assert err[1].endswith("acts: chunk 2/4 committed: 1,000 events in 2.0s; 2/4 chunks, 500 events/s, elapsed 0:00, ETA 0:04")
    assert err[0].startswith("[") and "s] " in err[0], "timestamped"


def test_a_bar_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    chunks = plan_chunks(0, 2 * DAY, DAY, DAY)
    p = Progress(Run("backfill", tmp_path), "acts", chunks, tty=True)
    for c in chunks:
        p.computed(c, 500, 1.0)
        p.show_computed(c, 500, 1.0)
    p.close()
    text = out.getvalue()
    assert "acts: chunk 2/2 |" in text and "500 events/s, ETA 0:00" in text and "elapsed" in text
    assert "acts: chunk 1/2 committed: 500 events in 1.0s" in text
