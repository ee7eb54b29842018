"""The chunk plan of a backfill: edges on the coarsest block, time order, the whole range once."""

from __future__ import annotations

import pytest

from spark_jobs.plan.chunks import DAY, auto_step_days, plan_chunks

HOUR = 3600


@pytest.mark.parametrize("lo", [0, 5 * HOUR, DAY - 300, 3 * DAY])
@pytest.mark.parametrize("hi_days", [1, 2.5, 10, 31])
@pytest.mark.parametrize(("align", "step"), [(DAY, DAY), (DAY, 7 * DAY), (HOUR, 2 * DAY), (7 * DAY, 3 * DAY)])
def test_chunks_cover_the_range_once_with_inner_edges_aligned(lo: int, hi_days: float, align: int, step: int) -> None:
    hi = lo + int(hi_days * DAY)
    chunks = plan_chunks(lo, hi, align, step)
    assert chunks[0].lo == lo and chunks[-1].hi == hi
    assert all(a.hi == b.lo for a, b in zip(chunks, chunks[1:])), "contiguous, in time order"
    assert all(c.lo < c.hi for c in chunks)
    assert all(c.lo % align == 0 for c in chunks[1:]), "inner edges on the coarsest block"
    assert [c.index for c in chunks] == list(range(len(chunks)))
    rounded = -(-step // align) * align
    assert all(c.hi - c.lo <= rounded for c in chunks)


def test_a_step_smaller_than_the_coarsest_block_is_rounded_up() -> None:
    assert [(c.lo, c.hi) for c in plan_chunks(0, 3 * DAY, DAY, HOUR)] == [(0, DAY), (DAY, 2 * DAY), (2 * DAY, 3 * DAY)]


def test_lateness_before_an_aligned_start_is_its_own_short_chunk() -> None:
    lo = 10 * DAY - 2 * HOUR
    chunks = plan_chunks(lo, 12 * DAY, DAY, DAY)
    assert [(c.lo, c.hi) for c in chunks] == [(lo, 10 * DAY), (10 * DAY, 11 * DAY), (11 * DAY, 12 * DAY)]


def test_one_chunk_when_the_step_covers_the_range_and_none_for_an_empty_range() -> None:
    assert len(plan_chunks(0, 5 * DAY, DAY, 30 * DAY)) == 1
    assert plan_chunks(5, 5, DAY, DAY) == []


def test_auto_step_fits_the_memory_budget() -> None:
    # 1 GiB of files over 100 days = ~10 MiB a day, ~490 MiB in memory; 8 GiB plans for 1.6 GiB per chunk.
    days = auto_step_days(1 << 30, 100, 8 << 30)
    assert days == 3
    assert 4 * days <= auto_step_days(1 << 30, 100, 32 << 30) < 4 * (days + 1), "proportional to memory"
    assert auto_step_days(1 << 40, 1, 1 << 20) == 1, "at least one day"
    assert auto_step_days(0, 30, 1 << 30) == 30, "an empty source: one chunk"
