"""Which blocks cover a window: the fewest non-overlapping blocks, as a pure function.

Block sizes s_0 < s_1 < ... < s_m each divide the next, and blocks are aligned to the Unix epoch.
For an interval [a, b) aligned to s_0, let C_i = [ceil(a, s_i), floor(b, s_i)) be the part
that whole s_i-blocks can cover. The C_i are nested intervals (C_m inside ... inside C_0), and
the minimal cover uses s_i-blocks exactly on C_i minus C_(i+1): at most s_(i+1)/s_i - 1 blocks
on each side of every level, and s_m-blocks on C_m.

`cover_pieces` is written once over an `Arith` so the same formula runs on Python ints (the
reference, tested exhaustively against brute force) and renders to Spark SQL (what the jobs run,
one array of block starts per impression).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

X = TypeVar("X")


class Arith(Protocol[X]):
    def floor_to(self, x: X, size: int) -> X: ...
    def ceil_to(self, x: X, size: int) -> X: ...
    def where_lt(self, lhs: X, rhs: X, then: X, other: X) -> X: ...


@dataclass(frozen=True)
class Piece(Generic[X]):
    """Blocks of `size` seconds starting at lo, lo + size, ... below hi (empty when hi <= lo)."""

    size: int
    lo: X
    hi: X


def cover_pieces(a: X, b: X, sizes: tuple[int, ...], ar: Arith[X]) -> list[Piece[X]]:
    """The pieces of the minimal cover of [a, b); `a` and `b` are aligned to sizes[0]."""
    lo = [ar.ceil_to(a, s) for s in sizes]
    hi = [ar.floor_to(b, s) for s in sizes]
    pieces: list[Piece[X]] = []
    for i, size in enumerate(sizes[:-1]):
        # If the next level covers something, this level fills only the two edges around it.
        inner_lo = ar.where_lt(lo[i + 1], hi[i + 1], lo[i + 1], hi[i])
        inner_hi = ar.where_lt(lo[i + 1], hi[i + 1], hi[i + 1], hi[i])
        pieces.append(Piece(size, lo[i], inner_lo))
        pieces.append(Piece(size, inner_hi, hi[i]))
    pieces.append(Piece(sizes[-1], lo[-1], hi[-1]))
    return pieces


class IntArith:
    """Arith on Python ints (epoch seconds)."""

    def floor_to(self, x: int, size: int) -> int:
        return x - x % size

    def ceil_to(self, x: int, size: int) -> int:
        return x + (-x) % size

    def where_lt(self, lhs: int, rhs: int, then: int, other: int) -> int:
        return then if lhs < rhs else other


class SqlArith:
    """Arith rendered as Spark SQL over BIGINT epoch-second expressions."""

    def floor_to(self, x: str, size: int) -> str:
        return f"({x} - pmod({x}, {size}))"

    def ceil_to(self, x: str, size: int) -> str:
        return f"({x} + pmod(-{x}, {size}))"

    def where_lt(self, lhs: str, rhs: str, then: str, other: str) -> str:
        return f"(CASE WHEN {lhs} < {rhs} THEN {then} ELSE {other} END)"


def cover(a: int, b: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """(size, start) of every block of the minimal cover of [a, b), in time order per level."""
    if b <= a:
        return []
    blocks = [(p.size, start) for p in cover_pieces(a, b, sizes, IntArith()) for start in range(p.lo, p.hi, p.size)]
    return sorted(blocks, key=lambda sb: sb[1])


def cover_sql(a: str, b: str, sizes: tuple[int, ...]) -> str:
    """SQL array<struct<size: bigint, start: bigint>> of the minimal cover of [a, b).

    `a` and `b` are SQL expressions of aligned epoch seconds; empty when b <= a.
    """
    arrays = []
    for p in cover_pieces(a, b, sizes, SqlArith()):
        starts = f"sequence({p.lo}, {p.hi} - {p.size}, CAST({p.size} AS BIGINT))"
        arrays.append(
            f"CASE WHEN {p.lo} < {p.hi} AND {a} < {b} "
            f"THEN transform({starts}, s -> named_struct('size', CAST({p.size} AS BIGINT), 'start', s)) "
            f"ELSE array() END"
        )
    return f"concat({', '.join(arrays)})"
