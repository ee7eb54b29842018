"""The contract every aggregation fulfils: map / combine / finalize, twice.

An aggregation is written once as Spark SQL text (what the jobs run, identical on Sail and
classic Spark) and once as plain Python (the reference the tests check the SQL against, and the
place where the maths can be read without a JVM). Blocks hold the *intermediate* parts; any
window is the `combine` of its blocks, then `finalize`.

- map:      events of one block            -> parts            (aggregate expressions)
- combine:  parts of many blocks           -> parts            (associative, commutative)
- finalize: parts                          -> feature value    (NULL when nothing was seen)

The "empty window" value (0, [] or NULL, or the feature's `default`) is applied by the caller
from `empty`, so finalize only has to say "nothing seen" with NULL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

Empty = Literal["zero", "empty_list", "null"]


@dataclass(frozen=True)
class AggInput:
    """What an aggregation needs to know about one feature, as SQL over the event rows.

    `cond` already includes the feature's filter and `value IS NOT NULL`, so map expressions only
    look at rows that count.
    """

    value: str | None  # SQL expression of the aggregated column (None for a plain count)
    cond: str  # SQL boolean: this event counts for this feature
    ts: str  # SQL expression of the event timestamp
    sample_hash: str  # SQL bigint hash of the event identity (for sampling sketches)
    n: int | None = None
    quantiles: tuple[float, ...] = ()
    # The value column's Spark type, e.g. "double" (None: unknown, for callers that never map events).
    value_type: str | None = None

    def mapped_type(self, aggregation: str) -> str:
        """`value_type`, which mapping events needs (it picks engine-identical conversions)."""
        if self.value_type is None:
            raise ValueError(f"map_sql of {aggregation} needs AggInput.value_type (the value column's type)")
        return self.value_type


def decimal_to_double(sql: str) -> str:
    """A DECIMAL as the nearest DOUBLE, the same on both engines: Sail's plain cast is not
    correctly rounded, and the exact decimal string parses to the nearest double on both."""
    return f"CAST(CAST({sql} AS STRING) AS DOUBLE)"


@dataclass(frozen=True)
class PyEvent:
    """One event as the Python reference sees it (already filtered)."""

    ts: int  # epoch microseconds
    value: Any
    sample_hash: int  # stands for the SQL `sample_hash`
    value_hash: int  # stands for xxhash64(value)


class Aggregation(ABC):
    """One aggregation: its parts, SQL map/combine/finalize and the Python reference."""

    name: ClassVar[str]
    params: ClassVar[tuple[str, ...]] = ()
    needs_column: ClassVar[bool] = True
    empty: ClassVar[Empty] = "null"
    non_negative: ClassVar[bool] = False  # a count: validated as >= 0 in every output
    sketch_size: ClassVar[int | None] = None  # a sketch's K: stored blocks depend on it
    parts: ClassVar[tuple[str, ...]]

    # -- Spark SQL ---------------------------------------------------------------------------
    @abstractmethod
    def map_sql(self, x: AggInput) -> dict[str, str]:
        """Part name -> aggregate expression over the events of one block."""

    @abstractmethod
    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        """Part name -> aggregate expression over rows holding parts (`part[name]` is SQL)."""

    @abstractmethod
    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        """Scalar SQL expression: the feature value, NULL when no event was seen."""

    # -- Python reference --------------------------------------------------------------------
    @abstractmethod
    def py_map(self, events: list[PyEvent], x: AggInput) -> dict[str, Any]:
        """Parts of one block; `None` parts mean nothing was seen."""

    @abstractmethod
    def py_combine(self, a: dict[str, Any], b: dict[str, Any], x: AggInput) -> dict[str, Any]:
        """Merge two part dicts."""

    @abstractmethod
    def py_finalize(self, parts: dict[str, Any], x: AggInput) -> Any:
        """Feature value, None when nothing was seen."""

    def py_empty(self) -> dict[str, Any]:
        return {p: None for p in self.parts}


def none_or(op: Any, a: Any, b: Any) -> Any:
    """Combine two nullable values the way SQL aggregates skip NULLs."""
    if a is None:
        return b
    if b is None:
        return a
    return op(a, b)
