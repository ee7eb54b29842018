"""count, sum, min, max, avg: the aggregations whose parts are plain numbers."""

from __future__ import annotations

import operator
from typing import Any

from spark_jobs.aggregations.base import AggInput, Aggregation, PyEvent, decimal_to_double, none_or


class Count(Aggregation):
    """Number of events that pass the filter (and have a non-null `column`, when one is given)."""

    name = "count"
    needs_column = False
    empty = "zero"
    non_negative = True
    parts = ("n",)

    def map_sql(self, x: AggInput) -> dict[str, str]:
        return {"n": f"CAST(sum(CASE WHEN {x.cond} THEN 1 ELSE 0 END) AS BIGINT)"}

    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        return {"n": f"CAST(sum({part['n']}) AS BIGINT)"}

    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        return f"CASE WHEN {part['n']} > 0 THEN {part['n']} END"

    def py_map(self, events: list[PyEvent], x: AggInput) -> dict[str, Any]:
        return {"n": len(events)}

    def py_combine(self, a: dict[str, Any], b: dict[str, Any], x: AggInput) -> dict[str, Any]:
        return {"n": none_or(operator.add, a["n"], b["n"])}

    def py_finalize(self, parts: dict[str, Any], x: AggInput) -> Any:
        return parts["n"] if parts["n"] else None


# Block parts of sums are DECIMAL: addition is then exact, so the result does not depend on the
# order partial sums meet (a DOUBLE sum differs in its last bits between runs and engines).
# Values are rounded to 9 decimal places; sums up to 10**29 fit.
EXACT = "DECIMAL(38, 9)"
# The two engines convert between DOUBLE and DECIMAL differently: classic Spark through the
# double's shortest decimal string, Sail by scaling in floating point (CAST(1e28 AS DECIMAL(38, 9))
# is 9999999999999999538762658202.121142272 on Sail), and back again Sail is not correctly
# rounded. On random doubles 15% of sums differed. So a DOUBLE goes in as integer part plus
# rounded nanos, computed with IEEE operations both engines do alike (exact below 9e18; beyond,
# the plain cast), and a sum comes out through its exact decimal string, which both parse to the
# nearest double.
_FLOAT_TO_EXACT = (
    "CASE WHEN abs({v}) < 9.0E18 THEN CAST(CAST(CAST(floor({v}) AS BIGINT) AS DECIMAL(28, 9)) "
    "+ CAST(floor(({v} - floor({v})) * 1.0E9 + 0.5) AS DECIMAL(10, 0)) * CAST(0.000000001 AS DECIMAL(10, 9)) "
    "AS {exact}) ELSE CAST({v} AS {exact}) END"
)


def double_to_exact_sql(value: str) -> str:
    """A DOUBLE expression as EXACT, the same on both engines (see _FLOAT_TO_EXACT)."""
    return _FLOAT_TO_EXACT.format(v=value, exact=EXACT)


def exact_sql(x: AggInput, aggregation: str) -> str:
    """`x.value` as EXACT, the same on both engines."""
    if x.mapped_type(aggregation) in ("double", "float"):
        return _FLOAT_TO_EXACT.format(v=x.value, exact=EXACT)
    return f"CAST({x.value} AS {EXACT})"


class Sum(Aggregation):
    """Sum of `column`: exact in the blocks, DOUBLE when finalized."""

    name = "sum"
    empty = "zero"
    parts = ("s",)

    def map_sql(self, x: AggInput) -> dict[str, str]:
        return {"s": f"sum(CASE WHEN {x.cond} THEN {exact_sql(x, self.name)} END)"}

    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        return {"s": f"sum({part['s']})"}

    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        return decimal_to_double(part["s"])

    def py_map(self, events: list[PyEvent], x: AggInput) -> dict[str, Any]:
        return {"s": float(sum(e.value for e in events)) if events else None}

    def py_combine(self, a: dict[str, Any], b: dict[str, Any], x: AggInput) -> dict[str, Any]:
        return {"s": none_or(operator.add, a["s"], b["s"])}

    def py_finalize(self, parts: dict[str, Any], x: AggInput) -> Any:
        return parts["s"]


class _Extreme(Aggregation):
    """min / max of `column`, in the column's own type."""

    fn: str
    parts = ("m",)

    def map_sql(self, x: AggInput) -> dict[str, str]:
        return {"m": f"{self.fn}(CASE WHEN {x.cond} THEN {x.value} END)"}

    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        return {"m": f"{self.fn}({part['m']})"}

    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        return part["m"]

    def py_map(self, events: list[PyEvent], x: AggInput) -> dict[str, Any]:
        pick = min if self.fn == "min" else max
        return {"m": pick(e.value for e in events) if events else None}

    def py_combine(self, a: dict[str, Any], b: dict[str, Any], x: AggInput) -> dict[str, Any]:
        pick = min if self.fn == "min" else max
        return {"m": none_or(pick, a["m"], b["m"])}

    def py_finalize(self, parts: dict[str, Any], x: AggInput) -> Any:
        return parts["m"]


class Min(_Extreme):
    name = "min"
    fn = "min"


class Max(_Extreme):
    name = "max"
    fn = "max"


class Avg(Aggregation):
    """Mean of `column`: an exact sum and a count, divided at the end."""

    name = "avg"
    parts = ("s", "n")

    def map_sql(self, x: AggInput) -> dict[str, str]:
        return {
            "s": f"sum(CASE WHEN {x.cond} THEN {exact_sql(x, self.name)} END)",
            "n": f"CAST(sum(CASE WHEN {x.cond} THEN 1 ELSE 0 END) AS BIGINT)",
        }

    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        return {"s": f"sum({part['s']})", "n": f"CAST(sum({part['n']}) AS BIGINT)"}

    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        return f"CASE WHEN {part['n']} > 0 THEN {decimal_to_double(part['s'])} / {part['n']} END"

    def py_map(self, events: list[PyEvent], x: AggInput) -> dict[str, Any]:
        if not events:
            return {"s": None, "n": 0}
        return {"s": float(sum(e.value for e in events)), "n": len(events)}

    def py_combine(self, a: dict[str, Any], b: dict[str, Any], x: AggInput) -> dict[str, Any]:
        return {"s": none_or(operator.add, a["s"], b["s"]), "n": none_or(operator.add, a["n"], b["n"])}

    def py_finalize(self, parts: dict[str, Any], x: AggInput) -> Any:
        return parts["s"] / parts["n"] if parts["n"] else None
