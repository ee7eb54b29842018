"""last_n, approx_count_distinct and approx_quantile: parts that are bounded arrays.

Both sketches are chosen so that Sail and classic Spark build, merge and finalize them with the
same SQL and give the same numbers (Sail has no KLL sketch; DataSketches binaries differ):

- approx_count_distinct is a KMV ("k minimum values") sketch: the ACD_K smallest distinct
  `xxhash64(value)` values. Merging is union + keep the ACD_K smallest, which is exactly
  associative and commutative. Below ACD_K distinct values the answer is exact; above, the
  estimate (K - 1) / U_K (U_K the K-th smallest hash mapped to (0, 1)) has a relative standard
  error of about 1 / sqrt(K - 2).
- approx_quantile is a bottom-k sample: the QUANTILE_K events with the smallest hash of their
  identity, with their values. The union of two bottom-k samples, cut to k, is the bottom-k
  sample of the union, so merging in any grouping gives the same sample as the raw events. It
  is a uniform sample without replacement: exact below QUANTILE_K values, rank error about
  sqrt(q (1 - q) / K) above. Quantiles use the nearest-rank rule on the sample.
"""

from __future__ import annotations

import math
from typing import Any

from spark_jobs.aggregations.base import AggInput, Aggregation, PyEvent, decimal_to_double

# Sized for the accuracy goals (docs/yaml-reference.md) with a wide margin, not for the typical
# case: below K the answer is exact, so 10k distinct values are counted exactly (goal: <= 2%
# error), and above it the KMV error is 1/sqrt(K) = 0.8%. A bottom-k sample of 32768 has a rank
# error of at most sqrt(0.25 / K) = 0.28% (one standard deviation) at the median: the 1% goal is
# 3.6 of them. A block's sketch holds at most K elements, so blocks with fewer values cost the
# same as before.
ACD_K = 16384
QUANTILE_K = 32768
# xxhash64 is a signed 64-bit integer; (h + 2^63) / 2^64 maps it to [0, 1).
_TWO_63 = 9223372036854775808.0
_TWO_64 = 18446744073709551616.0


class LastN(Aggregation):
    """The `n` most recent values, newest first (ties on time broken by the larger value)."""

    name = "last_n"
    params = ("n",)
    empty = "empty_list"
    parts = ("a",)

    def map_sql(self, x: AggInput) -> dict[str, str]:
        item = f"named_struct('ts', {x.ts}, 'v', {x.value})"
        return {"a": f"slice(sort_array(collect_list(CASE WHEN {x.cond} THEN {item} END), false), 1, {x.n})"}

    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        return {"a": f"slice(sort_array(flatten(collect_list({part['a']})), false), 1, {x.n})"}

    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        a = part["a"]
        return f"CASE WHEN {a} IS NOT NULL AND size({a}) > 0 THEN transform({a}, e -> e.v) END"

    def py_map(self, events: list[PyEvent], x: AggInput) -> dict[str, Any]:
        assert x.n is not None
        return {"a": sorted(((e.ts, e.value) for e in events), reverse=True)[: x.n]}

    def py_combine(self, a: dict[str, Any], b: dict[str, Any], x: AggInput) -> dict[str, Any]:
        assert x.n is not None
        return {"a": sorted((a["a"] or []) + (b["a"] or []), reverse=True)[: x.n]}

    def py_finalize(self, parts: dict[str, Any], x: AggInput) -> Any:
        return [v for _, v in parts["a"]] if parts["a"] else None


class ApproxCountDistinct(Aggregation):
    """Distinct non-null values, exact below ACD_K, KMV estimate above."""

    name = "approx_count_distinct"
    empty = "zero"
    non_negative = True
    sketch_size = ACD_K
    parts = ("h",)

    def map_sql(self, x: AggInput) -> dict[str, str]:
        # array_distinct(collect_list(...)) is the same set as collect_set(...); on Sail it is ~8x
        # faster over many small groups (5-minute blocks: 0.9 s -> 0.1 s for 400k events).
        hashes = f"collect_list(CASE WHEN {x.cond} THEN xxhash64({x.value}) END)"
        return {"h": f"slice(array_sort(array_distinct({hashes})), 1, {ACD_K})"}

    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        return {"h": f"slice(array_sort(array_distinct(flatten(collect_list({part['h']})))), 1, {ACD_K})"}

    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        h = part["h"]
        return self.estimate_sql(f"size({h})", f"element_at({h}, {ACD_K})", null_if=f"{h} IS NULL")

    @staticmethod
    def estimate_sql(distinct: str, kth: str, null_if: str = "false") -> str:
        """The value from the number of distinct hashes seen (capped or not) and the K-th smallest."""
        u_k = f"((CAST({kth} AS DOUBLE) + {_TWO_63}) / {_TWO_64})"
        return (
            f"CASE WHEN {null_if} OR {distinct} = 0 THEN NULL "
            f"WHEN {distinct} < {ACD_K} THEN CAST({distinct} AS BIGINT) "
            f"ELSE CAST(round({ACD_K - 1} / {u_k}) AS BIGINT) END"
        )

    def py_map(self, events: list[PyEvent], x: AggInput) -> dict[str, Any]:
        return {"h": sorted({e.value_hash for e in events})[:ACD_K]}

    def py_combine(self, a: dict[str, Any], b: dict[str, Any], x: AggInput) -> dict[str, Any]:
        return {"h": sorted(set(a["h"] or []) | set(b["h"] or []))[:ACD_K]}

    def py_finalize(self, parts: dict[str, Any], x: AggInput) -> Any:
        h = parts["h"]
        if not h:
            return None
        if len(h) < ACD_K:
            return len(h)
        return round((ACD_K - 1) / ((float(h[ACD_K - 1]) + _TWO_63) / _TWO_64))


class ApproxQuantile(Aggregation):
    """Quantiles (one array element per requested quantile) from a bottom-k sample."""

    name = "approx_quantile"
    params = ("quantiles",)
    sketch_size = QUANTILE_K
    parts = ("q",)

    def map_sql(self, x: AggInput) -> dict[str, str]:
        decimal = x.mapped_type(self.name).startswith("decimal")
        value = decimal_to_double(x.value) if decimal else f"CAST({x.value} AS DOUBLE)"
        item = f"named_struct('h', {x.sample_hash}, 'v', {value})"
        return {"q": f"slice(array_sort(collect_list(CASE WHEN {x.cond} THEN {item} END)), 1, {QUANTILE_K})"}

    def combine_sql(self, part: dict[str, str], x: AggInput) -> dict[str, str]:
        return {"q": f"slice(array_sort(flatten(collect_list({part['q']}))), 1, {QUANTILE_K})"}

    def finalize_sql(self, part: dict[str, str], x: AggInput) -> str:
        q = part["q"]
        values = f"array_sort(transform({q}, e -> e.v))"
        picks = ", ".join(
            f"element_at({values}, greatest(1, CAST(ceil({p!r} * size({q}) - 1e-9) AS INT)))" for p in x.quantiles
        )
        return f"CASE WHEN {q} IS NOT NULL AND size({q}) > 0 THEN array({picks}) END"

    def py_map(self, events: list[PyEvent], x: AggInput) -> dict[str, Any]:
        return {"q": sorted((e.sample_hash, float(e.value)) for e in events)[:QUANTILE_K]}

    def py_combine(self, a: dict[str, Any], b: dict[str, Any], x: AggInput) -> dict[str, Any]:
        return {"q": sorted((a["q"] or []) + (b["q"] or []))[:QUANTILE_K]}

    def py_finalize(self, parts: dict[str, Any], x: AggInput) -> Any:
        sample = parts["q"]
        if not sample:
            return None
        values = sorted(v for _, v in sample)
        return [values[max(1, math.ceil(p * len(values) - 1e-9)) - 1] for p in x.quantiles]
