"""One partition of the point-in-time sweep: Arrow batches in, one row per impression out.

A partition holds rows of two kinds, told apart by `LEVEL`: block rows (the index of their block
size, 0 = finest) and impression rows (-1). Both carry the feature set's key columns, so a key's
blocks and the impressions that need them meet in one partition. The function here:
1. numbers the keys of the partition (exactly, from the key values; no hashing);
2. sorts the blocks by (key, level, start) and hands numpy views to `kernels.sweep`;
3. returns, per impression, its id, its window end and each feature's combined parts (or, for
   last_n, approx_count_distinct and approx_quantile, what their finalize needs), which the
   DataFrame side finalizes with the aggregation's own SQL.
No pyspark import: this runs inside Sail's embedded Python and in classic Spark's Python workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spark_jobs.kernels import sweep
from spark_jobs.kernels.memory import reuse_freed_memory

LEVEL = "_tw_level"  # block rows: index of the block size (0 = finest); impression rows: -1
T = "_tw_t"  # block rows: block start; impression rows: floor_g(t) (epoch seconds)
END = "_tw_end"  # impression rows: end of every window (epoch seconds)
STARTS = "_tw_starts"  # timeline rows: the starts of a (key, day)'s finest blocks, parts alongside
KEY_ID = "_tw_key"  # flattened timeline rows (`from_timeline`): the keys' `key_ids`, in place of the keys
BATCH_ROWS = 1 << 16


@dataclass(frozen=True)
class RefSpec:
    """One output feature column and how the sweep computes it."""

    column: str  # output column, `{feature}_{window}`
    aggregation: str
    window: int  # seconds
    parts: tuple[str, ...]  # the block columns it reads, in the aggregation's part order
    n: int | None = None
    quantiles: tuple[float, ...] = ()
    sketch_size: int | None = None

    def outputs(self) -> tuple[str, ...]:
        """Names of the columns this ref adds to the partition's output."""
        return tuple(f"{self.column}__{o}" for o in OUTPUTS[self.aggregation])


# What the sweep returns per aggregation (the DataFrame side finalizes them).
OUTPUTS: dict[str, tuple[str, ...]] = {
    "count": ("n",),
    "sum": ("s",),
    "avg": ("s", "n"),
    "min": ("m",),
    "max": ("m",),
    "last_n": ("values",),
    "approx_count_distinct": ("n", "kth"),
    "approx_quantile": ("values",),
}


@dataclass(frozen=True)
class SweepPlan:
    keys: tuple[str, ...]
    sizes: tuple[int, ...]  # block sizes in seconds, finest first
    id_column: str
    refs: tuple[RefSpec, ...]
    timeline: bool = False  # block rows are timeline rows (`from_timeline`); `sizes` is the finest only

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        reuse_freed_memory()
        received = list(batches)
        if not received:
            return
        table = pa.Table.from_batches(received)
        if table.num_rows == 0:
            return
        if self.timeline:
            table = from_timeline(table, self.keys)
        out = sweep_table(self, table)
        yield from out.to_batches(max_chunksize=BATCH_ROWS)


def drop_input(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Read every batch of a partition and return nothing: what the sweep costs before it
    computes anything (the benchmark's `transfer_only` lookup)."""
    for _ in batches:
        pass
    return iter(())


def warm_up() -> None:
    """Load every kernel from the on-disk cache (or compile it) on two rows: a process's first
    call of a kernel costs most of a second, and a job can pay it in a thread behind other work."""
    reuse_freed_memory()
    q = pa.struct([("h", pa.int64()), ("v", pa.float64())])
    table = pa.table({
        "k": pa.array([1, 1], pa.int64()),
        LEVEL: pa.array([0, -1], pa.int32()),
        T: pa.array([0, 300], pa.int64()),
        END: pa.array([None, 300], pa.int64()),
        "id": pa.array([None, 1], pa.int64()),
        "n": pa.array([1, None], pa.int64()),
        "s": pa.array([1, None], pa.decimal128(38, 9)),
        "m": pa.array([1.0, None], pa.float64()),
        "a": pa.array([[1.0], None], pa.list_(pa.float64())),
        "h": pa.array([[7], None], pa.list_(pa.int64())),
        "q": pa.array([[{"h": 7, "v": 1.0}], None], pa.list_(q)),
    })
    refs = tuple(
        RefSpec(agg, agg, 300, parts, n=1, quantiles=(0.5,), sketch_size=2)
        for agg, parts in (("count", ("n",)), ("sum", ("s",)), ("avg", ("s", "n")), ("max", ("m",)),
                           ("last_n", ("a",)), ("approx_count_distinct", ("h",)), ("approx_quantile", ("q",)))
    )
    sweep_table(SweepPlan(("k",), (300, 3600), "id", refs), table)
    lists = {c: pa.array([[table.column(c)[0].as_py()], None], pa.list_(table.schema.field(c).type))
             for c in ("n", "s", "m", "a", "h", "q")}
    timeline = table.drop_columns(list(lists)).set_column(2, T, pa.array([None, 300], pa.int64()))
    timeline = timeline.append_column(STARTS, pa.array([[0], None], pa.list_(pa.int64())))
    for c, v in lists.items():
        timeline = timeline.append_column(c, v)
    sweep_table(SweepPlan(("k",), (300,), "id", refs), from_timeline(timeline, ("k",)))


def from_timeline(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Timeline rows (one per key and day: `STARTS` and every part as parallel lists) as block
    rows of the finest level, followed by the impression rows, in the form `sweep_table` reads.

    The lists are flattened, not copied element by element: a part's values are its list's
    values (for list-valued parts, the inner lists, offsets and all). The key columns become
    `KEY_ID` (`key_ids`, numbered on the timeline rows before they are flattened: one lookup per
    day, not per block). Impression rows keep their other columns; their parts become NULL of
    the flattened type.
    """
    level = _ints(table.column(LEVEL))
    imp_rows = np.flatnonzero(level < 0)
    starts = table.column(STARTS).combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(starts), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    ids = key_ids(table, keys)
    owner = np.repeat(np.arange(table.num_rows), lengths)
    n_blocks = int(lengths.sum())
    parts = [c for c in table.column_names if c not in (*keys, LEVEL, T, END, STARTS) and _is_list(table.schema.field(c).type)]
    imps = table.select([c for c in table.column_names if c not in (*keys, STARTS, *parts)]).take(pa.array(imp_rows))
    columns: dict[str, pa.ChunkedArray] = {KEY_ID: pa.chunked_array([pa.array(np.concatenate((ids[owner], ids[imp_rows])))])}
    for name in table.column_names:
        if name == STARTS or name in keys:
            continue
        if name == LEVEL:
            block_col = pa.chunked_array([pa.array(np.zeros(n_blocks, np.int32))])
        elif name == T:
            block_col = pa.chunked_array([starts.flatten()])
        elif name in parts:
            col = table.column(name).combine_chunks()
            mismatch = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False) != lengths
            if mismatch.any():
                raise ValueError(f"timeline column {name} has lists of other lengths than {STARTS}")
            block_col = pa.chunked_array([col.flatten()])
        else:  # END, the impression id
            block_col = pa.chunked_array([pa.nulls(n_blocks, table.schema.field(name).type)])
        if name in parts:
            imp_col = pa.chunked_array([pa.nulls(len(imp_rows), block_col.type)])
        else:
            imp_col = imps.column(name)
        columns[name] = pa.chunked_array(block_col.chunks + imp_col.chunks, type=block_col.type)
    return pa.table(columns)


def _is_list(dtype: pa.DataType) -> bool:
    return pa.types.is_list(dtype) or pa.types.is_large_list(dtype)


def key_ids(table: pa.Table, keys: tuple[str, ...]) -> np.ndarray:
    """Dense ids of the key values (equal values, equal ids); -1 where any key column is NULL."""
    codes = []
    for k in keys:
        encoded = pc.dictionary_encode(table.column(k)).combine_chunks()
        codes.append(pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64))
    if len(codes) == 1:
        return codes[0]
    stacked = np.stack(codes, axis=1)
    null = (stacked < 0).any(axis=1)
    _, ids = np.unique(stacked, axis=0, return_inverse=True)
    ids = ids.reshape(-1).astype(np.int64)
    ids[null] = -1
    return ids


def _ints(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.fill_null(col, 0).to_numpy().astype(np.int64)


def _list_bounds(col: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(first, last) positions of each row's list in its values (NULL lists are empty), values."""
    offsets = col.offsets.to_numpy().astype(np.int64)
    first, last = offsets[:-1].copy(), offsets[1:].copy()
    null = ~col.is_valid().to_numpy(zero_copy_only=False)
    last[null] = first[null]
    return first, last, col.values


def _decimal_words(col: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A decimal128 column as (low uint64, high int64, valid) words."""
    words = np.frombuffer(col.buffers()[1], dtype=np.uint64)[2 * col.offset : 2 * (col.offset + len(col))]
    words = words.reshape(-1, 2)
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(words[:, 0]), np.ascontiguousarray(words[:, 1]).view(np.int64), valid


def _decimal_array(low: np.ndarray, high: np.ndarray, valid: np.ndarray, dtype: pa.DataType) -> pa.Array:
    data = np.empty((len(low), 2), dtype=np.uint64)
    data[:, 0] = low
    data[:, 1] = high.view(np.uint64)
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(dtype, len(low), [bitmap, pa.py_buffer(data.tobytes())])


def _with_nulls(values: np.ndarray, valid: np.ndarray, dtype: pa.DataType) -> pa.Array:
    return pa.array(values, type=dtype, mask=~valid)


def _lists(values: pa.Array, positions: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """A list array (NULL where a length is 0) of `values` taken at `positions`."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    taken = values.take(pa.array(positions, type=pa.int64()))
    mask = pa.array(lengths == 0)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), taken, mask=mask)


def sweep_table(plan: SweepPlan, table: pa.Table) -> pa.Table:
    """The sweep over one partition (see the module docstring).

    The partition's rows never move: the blocks' sort order is a permutation (`Blocks.order`)
    applied to the fixed-width arrays the kernels read (numbers, decimal words, list offsets), so
    list values (hashes, last_n entries, samples) stay where Arrow put them.
    """
    level = _ints(table.column(LEVEL))
    keys = _ints(table.column(KEY_ID)) if KEY_ID in table.column_names else key_ids(table, plan.keys)
    start = _ints(table.column(T))
    block_rows = np.flatnonzero(level >= 0)
    imp_rows = np.flatnonzero(level < 0)
    order = block_rows[_block_order(keys[block_rows], level[block_rows], start[block_rows], len(plan.sizes))]
    blocks = Blocks(table, order)
    b_key, b_start = keys[order], start[order]
    n_levels = len(plan.sizes)
    n_keys = int(keys.max()) + 1 if len(keys) else 0
    seg = sweep.segments(b_key, level[order], n_keys, n_levels)
    sizes = np.array(plan.sizes, dtype=np.int64)

    i_key = keys[imp_rows]
    i_floor = start[imp_rows]
    i_end = _ints(table.column(END))[imp_rows]
    columns: dict[str, pa.Array] = {
        plan.id_column: table.column(plan.id_column).take(pa.array(imp_rows)).combine_chunks(),
        END: pa.array(i_end, type=pa.int64()),
    }
    # Sliding kernels visit a key's impressions by window start, then end.
    visit = np.lexsort((i_end, i_floor, i_key))
    windows = {}
    for w in sorted({r.window for r in plan.refs}):
        rows_l, rows_r = sweep.finest_rows(i_key, i_floor - w, i_end, b_start, seg, n_levels)
        if n_levels == 1:  # one block size (a timeline): the cover is the run of finest rows
            kept = rows_l < rows_r
            ptr = np.zeros(len(kept) + 1, np.int64)
            np.cumsum(kept, out=ptr[1:])
            windows[w] = Window(ptr, rows_l[kept], rows_r[kept], rows_l, rows_r)
        else:
            windows[w] = Window(*sweep.cover_csr(i_key, i_floor - w, i_end, b_start, seg, sizes), rows_l, rows_r)
    sliding = Sliding(visit, i_key, seg, n_levels)
    for ref in plan.refs:
        for name, array in zip(ref.outputs(), _combine(ref, windows[ref.window], sliding, b_start, blocks)):
            columns[name] = array
    return pa.table(columns)


def _block_order(key: np.ndarray, level: np.ndarray, start: np.ndarray, n_levels: int) -> np.ndarray:
    """The permutation sorting block rows by (key, level, start): one int64 argsort of a combined
    code when it fits in 62 bits (it always does for days of blocks), else a lexsort."""
    if len(key) == 0:
        return np.zeros(0, np.int64)
    first = int(start.min())
    span = int(start.max()) - first + 1
    if (int(key.max()) + 2) * n_levels * span < 1 << 62:
        code = ((key + 1) * n_levels + level) * span + (start - first)
        return np.argsort(code, kind="stable")
    return np.lexsort((start, level, key))


def order_keys(col: pa.Array) -> np.ndarray:
    """int64 keys ordered as the values, equal where the values are (sweep.NULL_RANK for NULL).

    Integers (timestamps arrive as epoch microseconds) are their own keys; a float's bits are
    turned so that integer order is float order, with -0.0 equal to 0.0 and every NaN equal and
    above +inf, as Spark orders them. Other types (decimals, strings) get dense ranks.
    """
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    dtype = col.type
    keys: np.ndarray | None = None
    if pa.types.is_integer(dtype):
        keys = _ints(col)
    elif pa.types.is_date32(dtype) or pa.types.is_date64(dtype):
        keys = _ints(col.cast(pa.int32() if pa.types.is_date32(dtype) else pa.int64()))
    elif pa.types.is_floating(dtype):
        x = pc.fill_null(col.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        x = np.where(np.isnan(x), np.nan, x + 0.0)  # one NaN, and -0.0 + 0.0 is 0.0
        bits = x.view(np.int64)
        keys = np.where(bits < 0, bits ^ np.int64(0x7FFFFFFFFFFFFFFF), bits)
    # Dense ranks for the other types, and for integers holding the one value the sentinel takes.
    if keys is None or (keys[valid] == sweep.NULL_RANK).any():
        keys = pc.rank(col, sort_keys="ascending", tiebreaker="dense").to_numpy().astype(np.int64)
    keys[~valid] = sweep.NULL_RANK
    return keys


class Blocks:
    """A partition's block columns as the kernels read them, in sorted order, each prepared once
    (a part is usually read by several windows)."""

    def __init__(self, table: pa.Table, order: np.ndarray):
        self.table = table
        self.order = order  # rows of `table` in (key, level, start) order
        self._cache: dict[tuple[str, str], Any] = {}

    def _once(self, kind: str, name: str, make: Callable[[], Any]) -> Any:
        if (kind, name) not in self._cache:
            self._cache[kind, name] = make()
        return self._cache[kind, name]

    def column(self, name: str) -> pa.Array:
        """The column in the partition's own (unsorted) row order."""
        return self._once("column", name, lambda: self.table.column(name).combine_chunks())

    def ints(self, name: str) -> np.ndarray:
        return self._once("ints", name, lambda: _ints(self.column(name))[self.order])

    def chunk_edges(self, name: str, largest: bool) -> tuple[np.ndarray, np.ndarray]:
        """`sweep.chunk_edges` of the column's ranks, as `best_rank` reads them."""
        return self._once("chunk_edges" + "max" * largest, name, lambda: sweep.chunk_edges(self.ranks(name), largest))

    def prefix_int(self, name: str) -> np.ndarray:
        return self._once("prefix_int", name, lambda: sweep.prefix_int(self.ints(name)))

    def prefix_decimal(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._once("prefix_decimal", name, lambda: sweep.prefix_decimal(*self.decimal_words(name)))

    def decimal_words(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def make() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            low, high, valid = _decimal_words(self.column(name))
            return low[self.order], high[self.order], valid[self.order]
        return self._once("decimal", name, make)

    def list_bounds(self, name: str) -> tuple[np.ndarray, np.ndarray, pa.Array]:
        """Each sorted row's (first, last) position in the list values; the values as stored."""
        def make() -> tuple[np.ndarray, np.ndarray, pa.Array]:
            first, last, values = _list_bounds(self.column(name))
            return first[self.order], last[self.order], values
        return self._once("lists", name, make)

    def list_ints(self, name: str) -> np.ndarray:
        """The list values of an integer list column (hashes), as stored."""
        return self._once("list_ints", name, lambda: _ints(self.list_bounds(name)[2]))

    def sample(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The (hash, value) entries of a quantile sample column, as stored."""
        def make() -> tuple[np.ndarray, np.ndarray]:
            h, v = self.list_bounds(name)[2].flatten()
            return _ints(h), v.to_numpy(zero_copy_only=False).astype(np.float64)
        return self._once("sample", name, make)

    def ranks(self, name: str) -> np.ndarray:
        """int64 keys in the values' order (`order_keys`), NULL_RANK for NULL, in sorted order."""
        return self._once("ranks", name, lambda: order_keys(self.column(name))[self.order])

    def take(self, name: str, rows: np.ndarray) -> pa.Array:
        """Values of the column at these sorted rows; NULL where a row is -1."""
        picked = self.order[np.maximum(rows, 0)] if len(self.order) else np.zeros(len(rows), np.int64)
        return self.column(name).take(pa.array(picked, mask=rows < 0))


@dataclass(frozen=True)
class Window:
    """Where one window length reaches, per impression: its cover (CSR row ranges of the sorted
    blocks) and its finest-block rows [rows_l, rows_r)."""

    ptr: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    rows_l: np.ndarray
    rows_r: np.ndarray


@dataclass(frozen=True)
class Sliding:
    """What the sliding kernels need besides a window: the visit order and the key segments."""

    visit: np.ndarray
    key: np.ndarray
    seg: np.ndarray
    n_levels: int


def _combine(ref: RefSpec, win: Window, sl: Sliding, starts: np.ndarray, blocks: Blocks) -> list[pa.Array]:
    agg = ref.aggregation
    ptr, lo, hi = win.ptr, win.lo, win.hi
    part = ref.parts[0]
    if agg == "count":
        return [pa.array(sweep.sum_int(ptr, lo, hi, blocks.prefix_int(part)), type=pa.int64())]
    if agg in ("sum", "avg"):
        s_low, s_high, s_valid = sweep.sum_decimal(ptr, lo, hi, *blocks.prefix_decimal(part))
        s = _decimal_array(s_low, s_high, s_valid, blocks.column(part).type)
        if agg == "sum":
            return [s]
        return [s, pa.array(sweep.sum_int(ptr, lo, hi, blocks.prefix_int(ref.parts[1])), type=pa.int64())]
    if agg in ("min", "max"):
        rank = blocks.ranks(part)
        best = sweep.best_rank(ptr, lo, hi, rank, agg == "max", *blocks.chunk_edges(part, agg == "max"))
        return [blocks.take(part, best)]
    if agg == "last_n":
        n = ref.n or 0
        first, last, values = blocks.list_bounds(part)
        if sl.n_levels == 1:  # one block size: each cover is one run of rows sorted by start
            length, pos = sweep.newest_sorted(ptr, lo, hi, first, last, n)
        else:
            length, pos = sweep.newest(ptr, lo, hi, starts, first, last, n)
        flat = pos.reshape(-1, n)[np.arange(n) < length[:, None]]
        return [_lists(values, flat, length)]
    if agg == "approx_count_distinct":
        first, last, _ = blocks.list_bounds(part)
        n, kth, has_kth = sweep.distinct_sliding(
            sl.visit, sl.key, win.rows_l, win.rows_r, sl.seg, sl.n_levels, first, last, blocks.list_ints(part),
            ref.sketch_size,
        )
        return [pa.array(n, type=pa.int64()), _with_nulls(kth, has_kth, pa.int64())]
    if agg == "approx_quantile":
        first, last, _ = blocks.list_bounds(part)
        h, v = blocks.sample(part)
        qs = np.array(ref.quantiles, dtype=np.float64)
        valid, out = sweep.quantiles_sliding(
            sl.visit, sl.key, win.rows_l, win.rows_r, sl.seg, sl.n_levels, first, last, h, v, ref.sketch_size, qs,
            ptr, lo, hi,
        )
        nq = len(qs)
        slots = (np.flatnonzero(valid)[:, None] * nq + np.arange(nq)).ravel()
        return [_lists(pa.array(out, type=pa.float64()), slots, np.where(valid, nq, 0))]
    raise ValueError(f"the sweep has no kernel for {agg}")
