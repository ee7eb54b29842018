"""The sweep's partition function against the contract computed from raw events (no Spark).

Random events per key become blocks of three levels the way the backfill builds them (finest
from events, coarser rolled up with `py_combine`), impressions get random window ends (the
watermark cases: before, on and after the impression's block, far back), and every output of
`sweep_table` must equal the answer over the raw events in [start, end). The sketches run at a
small K so that windows above K (the estimate and the bottom-K sample) are common.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_jobs.aggregations import REGISTRY, AggInput, PyEvent
from spark_jobs.kernels.partition import END, LEVEL, STARTS, T, RefSpec, SweepPlan, from_timeline, order_keys, sweep_table
from spark_jobs.kernels.sweep import NULL_RANK, best_rank, chunk_edges
from tests.helpers import run_python

SIZES = (60, 300, 1800)  # finest, then x5, then x6
K = 4
N = 3
QS = (0.0, 0.5, 0.9, 1.0)
WINDOWS = (60, 420, 1800, 5400)
X = AggInput(value="v", cond="true", ts="ts", sample_hash="h", n=N, quantiles=QS)

event = st.tuples(st.integers(0, 4), st.integers(0, 7200), st.integers(-5, 9), st.integers(-(2**63), 2**63 - 1))


def _blocks(events: list[tuple[int, int, int, int]]) -> list[dict]:
    """Block rows of every level, as the backfill writes them (coarser from finer)."""
    rows: list[dict] = []
    by_block: dict[tuple[int, int], list[PyEvent]] = {}
    for key, ts, v, h in events:
        e = PyEvent(ts=ts * 1_000_000 + h % 1000, value=v, sample_hash=h, value_hash=hash(("v", v)) & 0x7FFFFFFFFFFF)
        by_block.setdefault((key, ts - ts % SIZES[0]), []).append(e)
    level_parts: dict[tuple[int, int], dict] = {}
    for (key, start), evs in by_block.items():
        level_parts[(key, start)] = {name: REGISTRY[name].py_map(evs, X) for name in AGGS}
        level_parts[(key, start)]["_raw"] = evs
    levels = [level_parts]
    for size in SIZES[1:]:
        coarser: dict[tuple[int, int], dict] = {}
        for (key, start), parts in levels[-1].items():
            k = (key, start - start % size)
            if k not in coarser:
                coarser[k] = parts
            else:
                coarser[k] = {n: REGISTRY[n].py_combine(coarser[k][n], parts[n], X) for n in AGGS}
        levels.append(coarser)
    for lv, blocks in enumerate(levels):
        for (key, start), parts in blocks.items():
            rows.append({"key": f"k{key}", LEVEL: lv, T: start, **_cut(parts)})
    return rows


AGGS = ("count", "sum", "min", "last_n", "approx_count_distinct", "approx_quantile")


def _cut(parts: dict) -> dict:
    """The stored parts: sketches cut to the test's K, last_n as values, sums as DECIMAL."""
    h = sorted(parts["approx_count_distinct"]["h"] or [])[:K]
    q = sorted(parts["approx_quantile"]["q"] or [])[:K]
    return {
        "n": parts["count"]["n"] or 0,
        "s": Decimal(parts["sum"]["s"]).quantize(Decimal("1e-9")) if parts["sum"]["s"] is not None else None,
        "m": None if parts["min"]["m"] is None else f"v{parts['min']['m'] + 10:02d}",
        "a": [f"v{v + 10:02d}" for _, v in parts["last_n"]["a"] or []],
        "h": h,
        "q": [{"h": hh, "v": float(v)} for hh, v in q],
    }


SCHEMA = pa.schema([
    ("key", pa.string()), (LEVEL, pa.int32()), (T, pa.int64()), (END, pa.int64()), ("id", pa.int64()),
    ("n", pa.int64()), ("s", pa.decimal128(38, 9)), ("m", pa.string()), ("a", pa.list_(pa.string())),
    ("h", pa.list_(pa.int64())), ("q", pa.list_(pa.struct([("h", pa.int64()), ("v", pa.float64())]))),
])


def _plan(timeline: bool = False) -> SweepPlan:
    refs = []
    for w in WINDOWS:
        refs += [
            RefSpec(f"n_{w}", "count", w, ("n",)),
            RefSpec(f"s_{w}", "sum", w, ("s",)),
            RefSpec(f"m_{w}", "min", w, ("m",)),
            RefSpec(f"a_{w}", "last_n", w, ("a",), n=N),
            RefSpec(f"h_{w}", "approx_count_distinct", w, ("h",), sketch_size=K),
            RefSpec(f"q_{w}", "approx_quantile", w, ("q",), quantiles=QS, sketch_size=K),
        ]
    if timeline:
        return SweepPlan(("key",), SIZES[:1], "id", tuple(refs), timeline=True)
    return SweepPlan(("key",), SIZES, "id", tuple(refs))


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(event, max_size=150),
    imps=st.lists(st.tuples(st.integers(-1, 5), st.integers(0, 7500), st.integers(-4000, 400)), min_size=1, max_size=40),
)
def test_sweep_equals_raw_events(events, imps) -> None:  # type: ignore[no-untyped-def]
    g = SIZES[0]
    imp_rows = []
    for i, (key, t, lag) in enumerate(imps):
        floor = t - t % g
        end = min(floor, (t + lag) - (t + lag) % g)  # watermark t + lag: before, on or after
        imp_rows.append({"key": None if key < 0 else f"k{key}", LEVEL: -1, T: floor, END: end, "id": i})
    table = pa.Table.from_pylist(_blocks(events) + imp_rows, schema=SCHEMA)
    out = sweep_table(_plan(), table).to_pylist()
    assert [r["id"] for r in out] == list(range(len(imps)))
    for row, imp in zip(out, imp_rows):
        assert row[END] == imp[END]
        for w in WINDOWS:
            start = imp[T] - w
            raw = [e for e in events if f"k{e[0]}" == imp["key"] and start <= e[1] < imp[END]]
            _check(row, w, raw)


def _check(row: dict, w: int, raw: list[tuple[int, int, int, int]]) -> None:
    values = [v for _, _, v, _ in raw]
    assert row[f"n_{w}__n"] == len(raw)
    assert row[f"s_{w}__s"] == (Decimal(sum(values)).quantize(Decimal("1e-9")) if raw else None)
    assert row[f"m_{w}__m"] == (f"v{min(values) + 10:02d}" if raw else None)
    newest = sorted(((ts * 1_000_000 + h % 1000, v) for _, ts, v, h in raw), reverse=True)[:N]
    assert row[f"a_{w}__values"] == ([f"v{v + 10:02d}" for _, v in newest] or None)
    hashes = sorted({hash(("v", v)) & 0x7FFFFFFFFFFF for v in values})
    if len(hashes) < K:
        assert row[f"h_{w}__n"] == len(hashes)
        assert row[f"h_{w}__kth"] is None
    else:
        assert row[f"h_{w}__n"] >= K
        assert row[f"h_{w}__kth"] == hashes[K - 1]
    sample = sorted((h, float(v)) for _, _, v, h in raw)[:K]
    if not sample:
        assert row[f"q_{w}__values"] is None
    else:
        vs = sorted(v for _, v in sample)
        assert row[f"q_{w}__values"] == [vs[max(1, math.ceil(q * len(vs) - 1e-9)) - 1] for q in QS]


PARTS = ("n", "s", "m", "a", "h", "q")
TIMELINE = pa.schema([
    ("key", pa.string()), (LEVEL, pa.int32()), (T, pa.int64()), (END, pa.int64()), ("id", pa.int64()),
    (STARTS, pa.list_(pa.int64())), *[(c, pa.list_(SCHEMA.field(c).type)) for c in PARTS],
])


def _timeline(blocks: list[dict], day: int) -> list[dict]:
    """The finest blocks as the backfill's timeline holds them: one row per key and `day`
    seconds, parallel lists in no particular order (the sweep sorts)."""
    rows: dict[tuple[str, int], dict] = {}
    for b in sorted((b for b in blocks if b[LEVEL] == 0), key=lambda b: -b[T]):
        row = rows.setdefault((b["key"], b[T] // day), {"key": b["key"], LEVEL: 0, STARTS: [], **{c: [] for c in PARTS}})
        row[STARTS].append(b[T])
        for c in PARTS:
            row[c].append(b[c])
    return list(rows.values())


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(event, max_size=150),
    imps=st.lists(st.tuples(st.integers(-1, 5), st.integers(0, 7500), st.integers(-4000, 400)), min_size=1, max_size=40),
    day=st.sampled_from([300, 1800, 86400]),
)
def test_timeline_equals_blocks_and_raw_events(events, imps, day) -> None:  # type: ignore[no-untyped-def]
    """The timeline path (finest blocks only, flattened from per-day lists, prefix sums and a
    walk back for last_n) gives what the three-level blocks give, and the raw events' answer."""
    g = SIZES[0]
    imp_rows = []
    for i, (key, t, lag) in enumerate(imps):
        floor = t - t % g
        end = min(floor, (t + lag) - (t + lag) % g)
        imp_rows.append({"key": None if key < 0 else f"k{key}", LEVEL: -1, T: floor, END: end, "id": i})
    blocks = _blocks(events)
    expected = sweep_table(_plan(), pa.Table.from_pylist(blocks + imp_rows, schema=SCHEMA)).to_pylist()
    # Impressions first, then timeline rows, in two batches: the order rows arrive in is free.
    table = pa.Table.from_pylist(imp_rows + _timeline(blocks, day), schema=TIMELINE)
    batches = table.to_batches(max_chunksize=max(1, table.num_rows // 2))
    out = pa.Table.from_batches(list(_plan(timeline=True)(iter(batches))), schema=None).to_pylist()
    assert sorted(out, key=lambda r: r["id"]) == expected
    for row, imp in zip(expected, imp_rows):
        start = imp[T] - WINDOWS[-1]
        _check(row, WINDOWS[-1], [e for e in events if f"k{e[0]}" == imp["key"] and start <= e[1] < imp[END]])


def test_timeline_rows_of_unequal_lists_are_refused() -> None:
    row = {"key": "k0", LEVEL: 0, STARTS: [0, 60], **{c: [None] for c in PARTS}}
    table = pa.Table.from_pylist([row], schema=TIMELINE)
    try:
        from_timeline(table, ("key",))
    except ValueError as e:
        assert "other lengths" in str(e)
    else:
        raise AssertionError("unequal timeline lists were accepted")


def test_best_rank_over_long_ranges_equals_a_scan() -> None:
    """min/max read whole and partial runs of rows from `chunk_edges`: the same rows as a plain
    scan, over ranges shorter and far longer than a chunk, at any offset (inside one run, across
    two, on run edges), with NULL ranks and ties."""
    from spark_jobs.kernels import sweep

    rng = np.random.default_rng(5)
    rank = rng.integers(-1, 40, 1000)
    rank[300:500] = -1
    rank[rank < 0] = NULL_RANK
    lo = rng.integers(0, 1000, 400)
    hi = np.minimum(1000, lo + rng.integers(0, 700, 400))
    lo[:40], hi[:40] = np.arange(40) * sweep.CHUNK % 960, np.arange(40) * sweep.CHUNK % 960 + 1 + np.arange(40) % 3 * sweep.CHUNK
    hi[40:80] = lo[40:80] + rng.integers(0, 2 * sweep.CHUNK, 40)
    hi = np.minimum(1000, hi)
    ptr = np.arange(401, dtype=np.int64)
    for largest in (False, True):
        got = sweep.best_rank(ptr, lo, hi, rank, largest, *sweep.chunk_edges(rank, largest))
        for i in range(400):
            rows = [r for r in range(lo[i], hi[i]) if rank[r] != NULL_RANK]
            want = -1 if not rows else (max if largest else min)(rows, key=lambda r: (rank[r], -r) if largest else (rank[r], r))
            assert got[i] == want, (i, largest)


_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 5e-324, -5e-324]),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.one_of(
        st.lists(st.one_of(st.none(), _floats), max_size=40).map(lambda v: pa.array(v, pa.float64())),
        st.lists(st.one_of(st.none(), st.floats(width=32)), max_size=40).map(lambda v: pa.array(v, pa.float32())),
        st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=40).map(lambda v: pa.array(v, pa.int64())),
        st.lists(st.one_of(st.none(), st.integers(-719_162, 2_932_896)), max_size=40).map(lambda v: pa.array(v, pa.date32())),
        st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=40).map(lambda v: pa.array(v, pa.string())),
    )
)
def test_order_keys_order_as_the_values(values) -> None:  # type: ignore[no-untyped-def]
    """min/max compare int64 keys: for every pair of values the keys compare as the values do
    (NaN equal to NaN and above +inf, -0.0 equal to 0.0, as Spark orders them), NULL is the
    sentinel, and an int64 column holding the sentinel's own value still gets dense ranks."""
    keys = order_keys(values)
    py = values.to_pylist()

    def spark_order(x):  # type: ignore[no-untyped-def]
        return (math.isnan(x), 0.0 if math.isnan(x) else x) if isinstance(x, float) else x

    def cmp(a, b):  # type: ignore[no-untyped-def]
        a, b = spark_order(a), spark_order(b)
        return (a > b) - (a < b)

    for i, a in enumerate(py):
        assert (keys[i] == NULL_RANK) == (a is None)
        for j, b in enumerate(py):
            if a is not None and b is not None:
                assert int(keys[i] > keys[j]) - int(keys[i] < keys[j]) == cmp(a, b), (a, b)


def test_best_rank_with_keys_takes_the_first_of_equal_values() -> None:
    """-0.0 and 0.0 are equal keys: max keeps the first row in the range, as a scan would."""
    col = pa.array([-0.0, 0.0, None, -1.0], pa.float64())
    keys = order_keys(col)
    ptr, lo, hi = np.array([0, 1]), np.array([0]), np.array([4])
    assert best_rank(ptr, lo, hi, keys, True, *chunk_edges(keys, True)).tolist() == [0]
    assert best_rank(ptr, lo, hi, keys, False, *chunk_edges(keys, False)).tolist() == [3]


def test_a_sweep_process_keeps_freed_memory_for_reuse():
    """`reuse_freed_memory` (called when Sail starts and by every sweep) moves pyarrow onto glibc
    once its mallopt calls are accepted, and turns off numpy's huge-page requests; a second call
    changes nothing. (glibc has no getter for its thresholds: those are measured, not tested.)"""
    out = run_python(
        """
        import ctypes, pyarrow as pa
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy 1.x
            from numpy.core import multiarray
        from spark_jobs.kernels import partition
        from spark_jobs.kernels.memory import reuse_freed_memory
        assert partition.reuse_freed_memory is reuse_freed_memory
        before = pa.default_memory_pool().backend_name
        reuse_freed_memory()
        reuse_freed_memory()
        huge = multiarray._get_madvise_hugepage()
        try:
            ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):
            print("no-glibc", huge, before, pa.default_memory_pool().backend_name)
        else:
            print("glibc", huge, before != "system", pa.default_memory_pool().backend_name)
        """
    ).split()
    assert out[1] == "False"
    if out[0] == "glibc":
        assert out[2:] == ["True", "system"]
    else:
        assert out[2] == out[3]
