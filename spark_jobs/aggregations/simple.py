"""count, sum, min, max, avg: the aggregations whose parts are plain numbers."""

from __future__ import annotations

import operator
from typing import Any

from spark_jobs.aggregations.base import AggInput, Aggregation, PyEvent, none_or


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


class Sum(Aggregation):
    """Sum of `column`: exact in the blocks, DOUBLE when finalized."""

    name = "sum"
    empty = "zero"
    parts = ("s",)

    def map_sql(self, x: AggInput) -> dict[str, str]:
        return {"s": f"sum(CASE WHEN {x.cond} THEN CAST({x.value} AS {EXACT}) END)"}

    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        return {"s": f"sum({part['s']})"}

    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        return f"CAST({part['s']} AS DOUBLE)"

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
            "s": f"sum(CASE WHEN {x.cond} THEN CAST({x.value} AS {EXACT}) END)",
            "n": f"CAST(sum(CASE WHEN {x.cond} THEN 1 ELSE 0 END) AS BIGINT)",
        }

    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        return {"s": f"sum({part['s']})", "n": f"CAST(sum({part['n']}) AS BIGINT)"}

    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        return f"CASE WHEN {part['n']} > 0 THEN CAST({part['s']} AS DOUBLE) / {part['n']} END"

    def py_map(self, events: list[PyEvent], x: AggInput) -> dict[str, Any]:
        if not events:
            return {"s": None, "n": 0}
        return {"s": float(sum(e.value for e in events)), "n": len(events)}

    def py_combine(self, a: dict[str, Any], b: dict[str, Any], x: AggInput) -> dict[str, Any]:
        return {"s": none_or(operator.add, a["s"], b["s"]), "n": none_or(operator.add, a["n"], b["n"])}

    def py_finalize(self, parts: dict[str, Any], x: AggInput) -> Any:
        return parts["s"] / parts["n"] if parts["n"] else None
