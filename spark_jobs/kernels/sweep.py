"""The point-in-time sweep's inner loops: numba kernels over one partition's blocks.

The SQL assembly (`transforms.pit`) explodes every request into its cover blocks and joins them;
these kernels do the same arithmetic on sorted arrays, one partition at a time, in the manner
of Chronon's SawtoothAggregator:

1. The partition's blocks are sorted by (key, level, start); `seg[key * L + level]` is where a
   key's blocks of one level begin, so the blocks of a level with starts in [lo, hi) are one
   binary search away.
2. `cover_csr` turns each impression's window [a, b) into row ranges of that sorted block array:
   the minimal cover of `plan.windows` (the same pieces, level by level), one range per piece.
3. Each aggregation combines the rows of those ranges exactly as its SQL `combine` does
   (integer counts, DECIMAL(38, 9) sums as two 64-bit words, the best rank for min/max, the
   newest entries for last_n, the bottom-K sample for approx_quantile).
4. approx_count_distinct does not merge sketches per impression: per key, impressions are taken
   in window order and a count map over the finest blocks' hashes slides with the window (each
   block's hashes enter and leave about once), which gives the distinct count directly; the K-th
   smallest hash is read only for windows holding K or more.

Every kernel is compiled once and cached on disk (`NUMBA_CACHE_DIR`, by default
`~/.cache/tilewise/numba`), and releases the GIL, so partitions run in parallel inside Sail.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where compiled kernels are kept: $NUMBA_CACHE_DIR, else ~/.cache/tilewise/numba."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("NUMBA_CACHE_DIR") or base / "tilewise" / "numba")


os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir()))

import numba as nb  # noqa: E402  (reads NUMBA_CACHE_DIR when imported)
import numpy as np  # noqa: E402

jit = nb.njit(cache=True, nogil=True)  # compiled once, cached on disk, GIL released
# Helpers of a hot loop: inlined into their caller by numba (a call per hash costs a third).
inline = nb.njit(cache=True, nogil=True, inline="always")


@jit
def _floor(x: int, s: int) -> int:
    return x - x % s


@jit
def _ceil(x: int, s: int) -> int:
    return x + (-x) % s


@jit
def segments(key: np.ndarray, level: np.ndarray, n_keys: int, n_levels: int) -> np.ndarray:
    """seg[k * L + l] = first row of key k, level l, in rows sorted by (key, level)."""
    code = key * n_levels + level
    return np.searchsorted(code, np.arange(n_keys * n_levels + 1))


@jit
def cover_csr(imp_key, imp_a, imp_b, starts, seg, sizes):  # type: ignore[no-untyped-def]
    """Row ranges of the minimal cover of [a, b) for every impression, as CSR.

    Returns (ptr, lo, hi): impression i's ranges are [lo[j], hi[j]) for ptr[i] <= j < ptr[i + 1].
    Level i fills only the edges around what level i + 1 covers (see `plan.windows`).
    """
    n = imp_key.shape[0]
    n_levels = sizes.shape[0]
    most = n * (2 * n_levels - 1)
    lo = np.empty(most, np.int64)
    hi = np.empty(most, np.int64)
    ptr = np.zeros(n + 1, np.int64)
    m = 0
    for i in range(n):
        k = imp_key[i]
        a = imp_a[i]
        b = imp_b[i]
        if k >= 0 and a < b:
            for lv in range(n_levels):
                s = sizes[lv]
                lo_l = _ceil(a, s)
                hi_l = _floor(b, s)
                if lv < n_levels - 1:
                    s1 = sizes[lv + 1]
                    lo_n = _ceil(a, s1)
                    hi_n = _floor(b, s1)
                    if lo_n < hi_n:
                        inner_lo, inner_hi = lo_n, hi_n
                    else:
                        inner_lo, inner_hi = hi_l, hi_l
                    pieces = ((lo_l, inner_lo), (inner_hi, hi_l))
                else:
                    pieces = ((lo_l, hi_l), (hi_l, hi_l))
                base = seg[k * n_levels + lv]
                top = seg[k * n_levels + lv + 1]
                if base == top:
                    continue
                for p in pieces:
                    if p[0] < p[1]:
                        r_lo = base + np.searchsorted(starts[base:top], p[0])
                        r_hi = base + np.searchsorted(starts[base:top], p[1])
                        if r_lo < r_hi:
                            lo[m] = r_lo
                            hi[m] = r_hi
                            m += 1
        ptr[i + 1] = m
    return ptr, lo[:m], hi[:m]


@jit
def prefix_int(part):  # type: ignore[no-untyped-def]
    """prefix[r] = part[0] + ... + part[r - 1]: the sum of rows [lo, hi) is prefix[hi] - prefix[lo]."""
    out = np.zeros(part.shape[0] + 1, np.int64)
    for r in range(part.shape[0]):
        out[r + 1] = out[r] + part[r]
    return out


@jit
def sum_int(ptr, lo, hi, prefix):  # type: ignore[no-untyped-def]
    """Sum of an integer part (NULLs stored as 0) over each impression's cover, from its prefix
    sums (`prefix_int`): one subtraction per cover range, however many rows it holds."""
    n = ptr.shape[0] - 1
    out = np.zeros(n, np.int64)
    for i in range(n):
        t = 0
        for j in range(ptr[i], ptr[i + 1]):
            t += prefix[hi[j]] - prefix[lo[j]]
        out[i] = t
    return out


@jit
def prefix_decimal(low, high, valid):  # type: ignore[no-untyped-def]
    """Prefix sums of a DECIMAL(38, s) part given as two's-complement 64-bit words (NULL rows
    add nothing), with the number of non-NULL rows. The words wrap modulo 2^128, so a range's
    difference is exact whenever its own sum fits, as SQL's sum requires."""
    n = low.shape[0]
    p_low = np.zeros(n + 1, np.uint64)
    p_high = np.zeros(n + 1, np.int64)
    p_valid = np.zeros(n + 1, np.int64)
    for r in range(n):
        acc_low = p_low[r]
        acc_high = p_high[r]
        seen = p_valid[r]
        if valid[r]:
            new_low = acc_low + low[r]
            carry = np.int64(1) if new_low < acc_low else np.int64(0)
            acc_high = acc_high + high[r] + carry
            acc_low = new_low
            seen += 1
        p_low[r + 1] = acc_low
        p_high[r + 1] = acc_high
        p_valid[r + 1] = seen
    return p_low, p_high, p_valid


@jit
def sum_decimal(ptr, lo, hi, p_low, p_high, p_valid):  # type: ignore[no-untyped-def]
    """Exact sum of a DECIMAL(38, s) part over each impression's cover, from `prefix_decimal`.

    Like SQL `sum`, NULL parts are skipped and the result is NULL when every part was.
    """
    n = ptr.shape[0] - 1
    out_low = np.zeros(n, np.uint64)
    out_high = np.zeros(n, np.int64)
    out_valid = np.zeros(n, np.bool_)
    for i in range(n):
        acc_low = np.uint64(0)
        acc_high = np.int64(0)
        seen = 0
        for j in range(ptr[i], ptr[i + 1]):
            a, b = lo[j], hi[j]
            d_low = p_low[b] - p_low[a]
            borrow = np.int64(1) if p_low[b] < p_low[a] else np.int64(0)
            d_high = p_high[b] - p_high[a] - borrow
            new_low = acc_low + d_low
            carry = np.int64(1) if new_low < acc_low else np.int64(0)
            acc_high = acc_high + d_high + carry
            acc_low = new_low
            seen += p_valid[b] - p_valid[a]
        out_low[i] = acc_low
        out_high[i] = acc_high
        out_valid[i] = seen > 0
    return out_low, out_high, out_valid


CHUNK = 64  # rows per precomputed best in `best_rank`
NULL_RANK = np.iinfo(np.int64).min  # the rank of a NULL value in `best_rank` (no real rank is this)


@jit
def _better(rank, a, b, largest):  # type: ignore[no-untyped-def]
    """The better of rows a and b (either may be -1: none); ties keep a."""
    if b < 0 or rank[b] == NULL_RANK:
        return a
    if a < 0 or rank[a] == NULL_RANK:
        return b
    if largest:
        return b if rank[b] > rank[a] else a
    return b if rank[b] < rank[a] else a


@jit
def chunk_edges(rank, largest):  # type: ignore[no-untyped-def]
    """Per row, the best row from the start of its run of CHUNK rows up to it (`pre`) and from
    it to the end of that run (`suf`), -1 if none: a range's partial runs at its two ends are
    then one lookup each, and a whole run is `pre` at its last row. A rank is any int64 in the
    values' order, NULL_RANK for NULL; ties keep the first row."""
    n = rank.shape[0]
    pre = np.full(n, -1, np.int64)
    suf = np.full(n, -1, np.int64)
    for r in range(n):
        prev = -1 if r % CHUNK == 0 else pre[r - 1]
        pre[r] = _better(rank, prev, r, largest)
    for r in range(n - 1, -1, -1):
        nxt = -1 if (r + 1) % CHUNK == 0 or r + 1 == n else suf[r + 1]
        suf[r] = _better(rank, r, nxt, largest)
    return pre, suf


@jit
def best_rank(ptr, lo, hi, rank, largest, pre, suf):  # type: ignore[no-untyped-def]
    """Row of the smallest (or largest) non-NULL rank (NULL_RANK is NULL) per impression, -1 if none.

    A range inside one run of CHUNK rows is scanned; a longer one is its first run's tail
    (`suf`), the whole runs between and its last run's head (`pre`, both from `chunk_edges`):
    about m / CHUNK steps for m rows. Ties keep the first row, as a scan would: the parts are
    taken in row order and a later one wins only if better.
    """
    n = ptr.shape[0] - 1
    out = np.full(n, -1, np.int64)
    for i in range(n):
        best = -1
        for j in range(ptr[i], ptr[i + 1]):
            a = lo[j]
            b = hi[j]
            if a >= b:
                continue
            first = a // CHUNK
            last = (b - 1) // CHUNK
            if first == last:
                for r in range(a, b):
                    best = _better(rank, best, r, largest)
            else:
                best = _better(rank, best, suf[a], largest)
                for c in range(first + 1, last):
                    best = _better(rank, best, pre[c * CHUNK + CHUNK - 1], largest)
                best = _better(rank, best, pre[b - 1], largest)
        out[i] = best
    return out


@jit
def _cover_rows(ptr, lo, hi, i, buf):  # type: ignore[no-untyped-def]
    m = 0
    for j in range(ptr[i], ptr[i + 1]):
        for r in range(lo[j], hi[j]):
            buf[m] = r
            m += 1
    return m


@jit
def newest(ptr, lo, hi, starts, first, last, n):  # type: ignore[no-untyped-def]
    """last_n: positions in the blocks' list values of the `n` newest entries per impression.

    Each block's list is already newest first and blocks do not overlap in time, so the window's
    newest entries are the blocks' lists read from the latest block back.
    Returns (length per impression, positions: n slots per impression).
    """
    count = ptr.shape[0] - 1
    length = np.zeros(count, np.int64)
    pos = np.zeros(count * n, np.int64)
    for i in range(count):
        m = 0
        for j in range(ptr[i], ptr[i + 1]):
            m += hi[j] - lo[j]
        rows = np.empty(m, np.int64)
        m = 0
        for j in range(ptr[i], ptr[i + 1]):
            for r in range(lo[j], hi[j]):
                rows[m] = r
                m += 1
        k = 0
        for o in np.argsort(-starts[rows]):
            r = rows[o]
            for p in range(first[r], min(last[r], first[r] + n - k)):
                pos[i * n + k] = p
                k += 1
            if k == n:
                break
        length[i] = k
    return length, pos


@jit
def newest_sorted(ptr, lo, hi, first, last, n):  # type: ignore[no-untyped-def]
    """`newest` for covers that are one run of rows sorted by start (a single block size, as the
    timeline gives): the rows are read from the last back, and only until `n` entries are found."""
    count = ptr.shape[0] - 1
    length = np.zeros(count, np.int64)
    pos = np.zeros(count * n, np.int64)
    for i in range(count):
        k = 0
        for j in range(ptr[i + 1] - 1, ptr[i] - 1, -1):
            r = hi[j] - 1
            while r >= lo[j] and k < n:
                for p in range(first[r], min(last[r], first[r] + n - k)):
                    pos[i * n + k] = p
                    k += 1
                r -= 1
            if k == n:
                break
        length[i] = k
    return length, pos


@jit
def _sample_of_cover(i, ptr, lo, hi, first, last, h, v, k_max, qs, out):  # type: ignore[no-untyped-def]
    """approx_quantile of impression i from its cover: the bottom-k sample by (hash, value) of
    the cover blocks' samples, then the nearest rank. Writes out[i * len(qs):]; False if empty."""
    total = 0
    for j in range(ptr[i], ptr[i + 1]):
        for r in range(lo[j], hi[j]):
            total += last[r] - first[r]
    if total == 0:
        return False
    hs = np.empty(total, np.int64)
    vs = np.empty(total, np.float64)
    m = 0
    for j in range(ptr[i], ptr[i + 1]):
        for r in range(lo[j], hi[j]):
            for p in range(first[r], last[r]):
                hs[m] = h[p]
                vs[m] = v[p]
                m += 1
    if total > k_max:
        cut = np.partition(hs, k_max - 1)[k_max - 1]
        below = hs < cut
        at = np.sort(vs[hs == cut])
        vs = np.concatenate((vs[below], at[: k_max - below.sum()]))
    values = np.sort(vs)
    nq = qs.shape[0]
    for q in range(nq):
        out[i * nq + q] = values[_nearest_rank(qs[q], values.shape[0]) - 1]
    return True


@jit
def _nearest_rank(q, size):  # type: ignore[no-untyped-def]
    """1-based rank of quantile q among `size` sorted values (the SQL finalize's rule)."""
    return max(1, int(np.ceil(q * size - 1e-9)))


@jit
def _bit_add(tree, i, delta):  # type: ignore[no-untyped-def]
    """Fenwick tree over value ranks (1-based): count[i] += delta."""
    n = tree.shape[0] - 1
    while i <= n:
        tree[i] += delta
        i += i & -i


@jit
def _bit_kth(tree, k):  # type: ignore[no-untyped-def]
    """Smallest rank whose prefix count reaches k (1-based)."""
    n = tree.shape[0] - 1
    step = 1
    while step * 2 <= n:
        step *= 2
    pos = 0
    while step > 0:
        if pos + step <= n and tree[pos + step] < k:
            pos += step
            k -= tree[pos]
        step //= 2
    return pos + 1


@jit
def _slide_quantile_block(r, first, last, ranks, tree, delta):  # type: ignore[no-untyped-def]
    for p in range(first[r], last[r]):
        _bit_add(tree, ranks[p] + 1, delta)
    return delta * (last[r] - first[r])


@jit
def quantiles_sliding(order, imp_key, rows_l, rows_r, seg, n_levels, first, last, h, v, k_max, qs, ptr, lo, hi):  # type: ignore[no-untyped-def]
    """approx_quantile: exact nearest ranks from a Fenwick tree of value counts that slides with
    the window over the finest blocks, per key; windows of K or more sampled values fall back to
    the bottom-K sample of their cover (`_sample_of_cover`).

    Below K values in the window no block's sample was cut, so the sample is every value.
    Returns (valid per impression, values: len(qs) slots per impression).
    """
    n = imp_key.shape[0]
    nq = qs.shape[0]
    valid = np.zeros(n, np.bool_)
    out = np.zeros(n * nq, np.float64)
    ranks = np.zeros(v.shape[0], np.int64)
    uniq = np.empty(0, np.float64)
    tree = np.zeros(1, np.int64)
    cur = -1
    wl = 0
    wr = 0
    count = 0
    for idx in range(n):
        i = order[idx]
        if rows_l[i] < 0:
            continue
        k = imp_key[i]
        if k != cur:
            base = seg[k * n_levels]
            top = seg[k * n_levels + 1]
            m = 0
            for r in range(base, top):
                m += last[r] - first[r]
            values = np.empty(m, np.float64)
            m = 0
            for r in range(base, top):
                for p in range(first[r], last[r]):
                    values[m] = v[p]
                    m += 1
            uniq = np.sort(values)  # repeated values only leave unused ranks
            for r in range(base, top):
                for p in range(first[r], last[r]):
                    ranks[p] = np.searchsorted(uniq, v[p])
            tree = np.zeros(m + 1, np.int64)
            cur = k
            wl = rows_l[i]
            wr = rows_l[i]
            count = 0
        while wr < rows_r[i]:
            count += _slide_quantile_block(wr, first, last, ranks, tree, 1)
            wr += 1
        while wl < rows_l[i]:
            count += _slide_quantile_block(wl, first, last, ranks, tree, -1)
            wl += 1
        while wr > rows_r[i]:
            wr -= 1
            count += _slide_quantile_block(wr, first, last, ranks, tree, -1)
        if count >= k_max:
            valid[i] = _sample_of_cover(i, ptr, lo, hi, first, last, h, v, k_max, qs, out)
        elif count > 0:
            for q in range(nq):
                out[i * nq + q] = uniq[_bit_kth(tree, _nearest_rank(qs[q], count)) - 1]
            valid[i] = True
    return valid, out


@jit
def finest_rows(imp_key, imp_a, imp_b, starts, seg, n_levels):  # type: ignore[no-untyped-def]
    """Rows [l, r) of each impression's finest blocks inside its window; l = -1 when the window
    is empty or the key has no blocks."""
    n = imp_key.shape[0]
    rows_l = np.full(n, -1, np.int64)
    rows_r = np.full(n, -1, np.int64)
    for i in range(n):
        k = imp_key[i]
        if k < 0 or imp_a[i] >= imp_b[i]:
            continue
        base = seg[k * n_levels]
        top = seg[k * n_levels + 1]
        rows_l[i] = base + np.searchsorted(starts[base:top], imp_a[i])
        rows_r[i] = base + np.searchsorted(starts[base:top], imp_b[i])
    return rows_l, rows_r


@inline
def _slot(ht, h, mask):  # type: ignore[no-untyped-def]
    """Open addressing with linear probing in `ht` (rows of hash, count; count -1 = free slot):
    the slot holding `h`, or the free slot it would take. Hash and count share a cache line."""
    s = h & mask
    while ht[s, 1] >= 0 and ht[s, 0] != h:
        s = (s + 1) & mask
    return s


@inline
def _enter(first, last, hashes, mask, ht, touched, n_touched, distinct):  # type: ignore[no-untyped-def]
    """Add one block's hashes to the count map; returns (n_touched, distinct)."""
    for p in range(first, last):
        h = hashes[p]
        s = _slot(ht, h, mask)
        if ht[s, 1] < 0:
            ht[s, 0] = h
            ht[s, 1] = 0
            touched[n_touched] = s
            n_touched += 1
        ht[s, 1] += 1
        if ht[s, 1] == 1:
            distinct += 1
    return n_touched, distinct


@inline
def _leave(first, last, hashes, mask, ht, distinct):  # type: ignore[no-untyped-def]
    """Remove one block's hashes (each was entered before); returns distinct. A slot whose count
    drops to 0 stays taken (probe chains through it stay intact) until the key changes."""
    for p in range(first, last):
        s = _slot(ht, hashes[p], mask)
        ht[s, 1] -= 1
        if ht[s, 1] == 0:
            distinct -= 1
    return distinct


@jit
def distinct_sliding(order, imp_key, rows_l, rows_r, seg, n_levels, first, last, hashes, k_max):  # type: ignore[no-untyped-def]
    """approx_count_distinct over the finest blocks, with a count map that slides per key.

    `order` visits impressions by (key, window start, window end). For each, the window's
    finest-block rows [wl, wr) are reached from the previous window by adding and removing whole
    blocks; the map counts, per hash, how many blocks of the window hold it.
    Returns (distinct hashes, K-th smallest hash, has K-th) per impression. Each block's hashes
    are the K smallest of its values, so below K distinct the count is exact, and at K or more
    the K-th smallest of the union is the K-th smallest of all values (bottom-K is mergeable).
    """
    n = imp_key.shape[0]
    out_n = np.zeros(n, np.int64)
    out_kth = np.zeros(n, np.int64)
    has_kth = np.zeros(n, np.bool_)
    n_keys = (seg.shape[0] - 1) // n_levels
    cap = 16
    for k in range(n_keys):
        total = 0
        for r in range(seg[k * n_levels], seg[k * n_levels + 1]):
            total += last[r] - first[r]
        while cap < 2 * total:
            cap *= 2
    mask = cap - 1
    ht = np.empty((cap, 2), np.int64)  # per slot: hash, count (-1 = free)
    ht[:, 1] = -1
    touched = np.empty(cap, np.int64)
    n_touched = 0
    cur = -1
    wl = 0
    wr = 0
    distinct = 0
    for idx in range(n):
        i = order[idx]
        if rows_l[i] < 0:
            continue
        k = imp_key[i]
        new_l = rows_l[i]
        new_r = rows_r[i]
        if k != cur or new_l >= wr:
            # A new key, or a window that shares no block with the last one (short windows far
            # apart): start from an empty map rather than walk every block in between. Freeing
            # the slots costs what entering them did, so each block is still paid about once.
            for u in range(n_touched):
                ht[touched[u], 1] = -1
            n_touched = 0
            distinct = 0
            cur = k
            wl = new_l
            wr = new_l
        # Window starts only grow in `order`; ends may step back (watermarks vary). Grow the end
        # first, then shrink both sides: the window stays one run of rows, so nothing leaves
        # that has not entered.
        while wr < new_r:
            n_touched, distinct = _enter(first[wr], last[wr], hashes, mask, ht, touched, n_touched, distinct)
            wr += 1
        while wl < new_l:
            distinct = _leave(first[wl], last[wl], hashes, mask, ht, distinct)
            wl += 1
        while wr > new_r:
            wr -= 1
            distinct = _leave(first[wr], last[wr], hashes, mask, ht, distinct)
        out_n[i] = distinct
        if distinct >= k_max:
            live = np.empty(distinct, np.int64)
            m = 0
            for u in range(n_touched):
                if ht[touched[u], 1] > 0:
                    live[m] = ht[touched[u], 0]
                    m += 1
            out_kth[i] = np.partition(live, k_max - 1)[k_max - 1]
            has_kth[i] = True
    return out_n, out_kth, has_kth
