"""A chunked backfill killed (-9) after a chunk's commit, run again: the finished chunks are kept
(the manifest shows them skipped) and the table equals one clean run over the whole range."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_faults import BLOCKS, _common, _kill_at
from tests.helpers import manifests, table_content, tilewise

RANGE = ["--start", "2026-01-01", "--end", "2026-01-03", "--feature-set", "user_activity"]


def test_a_killed_chunked_backfill_resumes_and_equals_a_clean_run(demo_data: Path, tmp_path: Path) -> None:
    wh, clean = tmp_path / "wh", tmp_path / "clean"
    # Lateness 1d: chunks 12-31, 01-01 and 01-02; killed as soon as the second one is committed.
    _kill_at(["backfill", *RANGE, "--step-days", "1", *_common(wh, demo_data)], "chunk 2/3 committed")
    killed = manifests(wh, "backfill")
    assert len(killed) == 1 and killed[0]["status"] == "running", "the kill left the manifest of chunk 2"
    assert [c["status"] for c in killed[0]["counts"]["user_activity"]["chunks"]] == ["done", "done"]

    res = tilewise("backfill", *RANGE, "--step-days", "1", *_common(wh, demo_data))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "3 chunks (--step-days 1), 1 computed; 2 kept" in res.stderr
    resumed = [m for m in manifests(wh, "backfill") if m["status"] == "ok"]
    chunks = resumed[0]["counts"]["user_activity"]["chunks"]
    assert [c["status"] for c in chunks] == ["skipped", "skipped", "done"]
    assert {c["kept_from"] for c in chunks[:2]} == {killed[0]["run_id"]}
    assert resumed[0]["counts"]["user_activity"]["progress"]["chunks_finished"] == 3

    res = tilewise("backfill", *RANGE, "--quiet", *_common(clean, demo_data))  # one chunk
    assert res.returncode == 0, res.stderr[-3000:]
    assert table_content(wh, BLOCKS) == table_content(clean, BLOCKS)
