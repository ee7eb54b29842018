"""The minimal cover of [a, b): exact, non-overlapping, and as few blocks as possible."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_jobs.plan.windows import cover

SIZES = (300, 3600, 86400)
G = SIZES[0]


@functools.lru_cache(maxsize=None)
def fewest_blocks(a: int, b: int, sizes: tuple[int, ...]) -> int:
    """Brute force: dynamic programming over aligned positions."""
    if a == b:
        return 0
    best = None
    for s in sizes:
        if a % s == 0 and a + s <= b:
            n = 1 + fewest_blocks(a + s, b, sizes)
            best = n if best is None else min(best, n)
    assert best is not None
    return best


def assert_exact_cover(a: int, b: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    blocks = cover(a, b, sizes)
    pos = a
    for size, start in blocks:
        assert start == pos, f"gap or overlap at {pos}: {blocks}"
        assert start % size == 0, "every block is aligned to its size"
        pos += size
    assert pos == max(a, b)
    return blocks


@given(st.integers(0, 3 * 86400 // G), st.integers(0, 3 * 86400 // G))
@settings(max_examples=300, deadline=None)
def test_cover_is_exact_and_minimal(i: int, j: int) -> None:
    a, b = 86400 * 20 + i * G, 86400 * 20 + j * G
    blocks = assert_exact_cover(a, b, SIZES)
    if b > a:
        small = (300, 3600, 86400)  # brute force over the same sizes, on a shifted small range
        assert len(blocks) == fewest_blocks(a - 86400 * 20, b - 86400 * 20, small)


def test_thirty_days_aligned_needs_thirty_day_blocks() -> None:
    assert cover(0, 30 * 86400, SIZES) == [(86400, d * 86400) for d in range(30)]


def test_unaligned_window_uses_each_level_at_most_once_per_side() -> None:
    blocks = cover(300, 30 * 86400 - 300, SIZES)
    per_size = {s: sum(1 for size, _ in blocks if size == s) for s in SIZES}
    assert per_size == {300: 22, 3600: 46, 86400: 28}


@pytest.mark.parametrize(("a", "b"), [(600, 600), (900, 600)])
def test_empty_or_inverted_window_has_no_blocks(a: int, b: int) -> None:
    assert cover(a, b, SIZES) == []


def test_window_inside_one_hour_uses_only_fine_blocks() -> None:
    assert cover(3600 + 300, 3600 + 900, SIZES) == [(300, 3900), (300, 4200)]


def test_negative_epochs_align_like_positive_ones() -> None:
    assert_exact_cover(-86400 - 600, 300, SIZES)


def test_weekly_top_level() -> None:
    sizes = (300, 3600, 86400, 604800)
    blocks = assert_exact_cover(3 * 86400 + 300, 40 * 86400, sizes)
    assert (604800, 604800) in blocks
