"""`storage.coverage`: the record of the event time a block table was backfilled over, and the
note a lookup gets for windows outside it."""

from __future__ import annotations

from pathlib import Path

from spark_jobs.storage import coverage

DAY = 86400
D = 1_767_225_600  # 2026-01-01 00:00 UTC


def test_ranges_merge_when_they_touch_or_overlap_and_gaps_are_what_is_left(tmp_path: Path) -> None:
    assert coverage.read(tmp_path) is None  # no record: not checked
    coverage.record(tmp_path, D + 2 * DAY, D + 3 * DAY)
    coverage.record(tmp_path, D + 5 * DAY, D + 6 * DAY)
    coverage.record(tmp_path, D + 3 * DAY, D + 4 * DAY)  # touches the first
    assert coverage.read(tmp_path) == [(D + 2 * DAY, D + 4 * DAY), (D + 5 * DAY, D + 6 * DAY)]
    ranges = coverage.read(tmp_path) or []
    assert coverage.gaps(ranges, D + 2 * DAY, D + 4 * DAY) == []
    assert coverage.gaps(ranges, D, D + 7 * DAY) == [(D, D + 2 * DAY), (D + 4 * DAY, D + 5 * DAY), (D + 6 * DAY, D + 7 * DAY)]
    assert coverage.gaps(ranges, D + 3 * DAY, D + 3 * DAY + 300) == []
    assert coverage.gaps([], D, D + 1) == [(D, D + 1)]
    coverage.record(tmp_path, D, D + DAY, reset=True)  # a --rebuild's first chunk
    assert coverage.read(tmp_path) == [(D, D + DAY)]
    coverage.forget(tmp_path)
    assert coverage.read(tmp_path) is None


def test_the_note_names_the_missing_time_and_the_backfill_that_fills_it() -> None:
    ranges = [(D + 2 * DAY, D + 4 * DAY)]
    assert coverage.gap_note("blocks/u", "u", ranges, D + 2 * DAY, D + 4 * DAY - 300, "w") is None
    note = coverage.gap_note("blocks/u", "u", ranges, D - 7 * DAY + 3600, D + 4 * DAY - 300, "the windows of t's impressions")
    assert note == (
        "blocks/u was backfilled over [2026-01-03 00:00, 2026-01-05 00:00); the windows of t's impressions need it "
        "over [2025-12-25 01:00, 2026-01-04 23:55): their windows over [2025-12-25 01:00, 2026-01-03 00:00) hold no "
        "blocks and count as empty. To fill them: tilewise backfill --start 2025-12-25 --end 2026-01-03 --feature-set u"
    )
