"""The algebra of every registered aggregation, in plain Python (the reference the SQL is held to).

combine is associative and commutative, and blocks merged in any grouping finalize to the value
computed from the raw events at once.
"""

from __future__ import annotations

import functools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_jobs.aggregations import ACD_K, QUANTILE_K, REGISTRY, AggInput, Aggregation, PyEvent

X = AggInput(value="v", cond="true", ts="ts", sample_hash="h", n=3, quantiles=(0.0, 0.25, 0.5, 0.9, 1.0))

events_st = st.lists(
    st.builds(
        lambda ts, v, h: PyEvent(ts=ts, value=v, sample_hash=h, value_hash=hash(("v", v)) & 0xFFFFFFFF),
        st.integers(0, 10_000),
        st.integers(-50, 50),
        st.integers(-(2**63), 2**63 - 1),
    ),
    max_size=40,
)


def parts_of(agg: Aggregation, events: list[PyEvent]) -> dict:
    return agg.py_map(events, X) if events else agg.py_empty()


def norm(value: object) -> object:
    return round(value, 9) if isinstance(value, float) else value


def merged(agg: Aggregation, groups: list[list[PyEvent]]) -> dict:
    return functools.reduce(lambda a, b: agg.py_combine(a, b, X), (parts_of(agg, g) for g in groups), agg.py_empty())


@pytest.mark.parametrize("name", sorted(REGISTRY))
@given(a=events_st, b=events_st, c=events_st)
@settings(max_examples=60, deadline=None)
def test_combine_is_associative_and_commutative(name: str, a: list, b: list, c: list) -> None:
    agg = REGISTRY[name]
    pa, pb, pc = parts_of(agg, a), parts_of(agg, b), parts_of(agg, c)
    left = agg.py_combine(agg.py_combine(pa, pb, X), pc, X)
    right = agg.py_combine(pa, agg.py_combine(pb, pc, X), X)
    swapped = agg.py_combine(pc, agg.py_combine(pb, pa, X), X)
    fin = lambda p: norm(agg.py_finalize(p, X))  # noqa: E731
    assert fin(left) == fin(right) == fin(swapped)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@given(events=events_st, seed=st.integers(0, 2**32))
@settings(max_examples=60, deadline=None)
def test_blocks_in_any_grouping_equal_raw_events(name: str, events: list, seed: int) -> None:
    agg = REGISTRY[name]
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(len(events) + 1), k=min(3, len(events) + 1)))
    groups = [events[i:j] for i, j in zip([0, *cuts], [*cuts, len(events)])]
    rng.shuffle(groups)
    raw = agg.py_finalize(parts_of(agg, events), X)
    assert norm(agg.py_finalize(merged(agg, groups), X)) == norm(raw)


def test_reference_values_by_hand() -> None:
    ev = [PyEvent(ts, v, h, v) for ts, v, h in [(10, 5, 3), (20, 1, 1), (30, 7, 2), (30, 2, 4)]]
    got = {name: agg.py_finalize(agg.py_map(ev, X), X) for name, agg in REGISTRY.items()}
    assert got["count"] == 4
    assert got["sum"] == 15.0
    assert (got["min"], got["max"]) == (1, 7)
    assert got["avg"] == 3.75
    assert got["last_n"] == [7, 2, 1]  # newest first; the tie at ts=30 puts the larger value first
    assert got["approx_count_distinct"] == 4
    # nearest rank on [1, 2, 5, 7]: q=0 -> 1st, 0.25 -> 1st, 0.5 -> 2nd, 0.9 -> 4th, 1 -> 4th
    assert got["approx_quantile"] == [1.0, 1.0, 2.0, 7.0, 7.0]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_empty_finalizes_to_none(name: str) -> None:
    agg = REGISTRY[name]
    assert agg.py_finalize(agg.py_empty(), X) is None


def test_kmv_is_exact_at_ten_thousand_distinct_and_within_two_percent_above_k() -> None:
    rng = random.Random(1)
    hashes = list({rng.getrandbits(64) - 2**63 for _ in range(3 * ACD_K)})
    ev = [PyEvent(0, h, 0, h) for h in hashes]
    agg = REGISTRY["approx_count_distinct"]
    assert agg.py_finalize(merged(agg, [ev[:10_000][i::7] for i in range(7)]), X) == 10_000, "exact below K"
    assert agg.py_finalize(agg.py_map(ev[: ACD_K - 1], X), X) == ACD_K - 1
    est = agg.py_finalize(merged(agg, [ev[i::7] for i in range(7)]), X)
    assert abs(est - len(hashes)) / len(hashes) <= 0.02


def test_quantile_sample_rank_error_within_one_percent() -> None:
    rng = random.Random(2)
    values = [rng.lognormvariate(0, 1) for _ in range(50_000)]
    ev = [PyEvent(i, v, rng.getrandbits(64) - 2**63, 0) for i, v in enumerate(values)]
    agg = REGISTRY["approx_quantile"]
    x = AggInput(value="v", cond="true", ts="ts", sample_hash="h", quantiles=(0.1, 0.5, 0.9, 0.99))
    got = agg.py_finalize(functools.reduce(lambda a, b: agg.py_combine(a, b, x), (agg.py_map(ev[i::5], x) for i in range(5))), x)
    ordered = sorted(values)
    for q, v in zip(x.quantiles, got):
        rank = ordered.index(v) / len(ordered)
        assert abs(rank - q) <= 0.01, (q, rank)
    assert len(agg.py_map(ev, x)["q"]) == QUANTILE_K
    assert math.isfinite(got[0])
