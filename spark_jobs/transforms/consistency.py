"""Online/offline consistency: the feature values an impression log carries (forward logging)
against the point-in-time values backfilled for the same impressions.

For a logged value `l` and its backfilled column `b`, per training row: `logged_null` (`l` null,
`b` not), `backfilled_null` (`b` null, `l` not), `both_null`, `compared` (neither null) and
`matched` (compared, and equal: numbers when `abs(l - b) <= tolerance * max(1, abs(b))`, arrays
when they have the same length and match element by element, other types when equal). Per date
these are summed; `mean_abs_diff` comes from an exact (DECIMAL) sum, so both engines give the
same number whatever order the partial sums meet in.

Explaining mismatches: a numeric value that differs is looked up again with the cutoff 1..6
finest blocks earlier (`stale_requests`): if one of those matches, the online store was behind
(stale); if none does, the online code computes something else (a logic difference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.aggregations.simple import double_to_exact_sql
from spark_jobs.names import IMPRESSION_DATE as DATE
from spark_jobs.transforms.blocks import quote

LAGS = tuple(range(1, 7))  # finest blocks the online cutoff may have been behind
LAG = "_tw_lag"
RID = "_tw_rid"
ORIGINAL_ID = "_tw_id"
CUTOFF = "_tw_cut"

_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)

# The table's columns, in order, with their types.
SCHEMA = T.StructType(
    [
        T.StructField(DATE, T.DateType(), False),
        T.StructField("logged", T.StringType(), False),
        T.StructField("feature", T.StringType(), False),
        T.StructField("rows", T.LongType(), False),
        T.StructField("compared", T.LongType(), False),
        T.StructField("matched", T.LongType(), False),
        T.StructField("match_rate", T.DoubleType(), True),
        T.StructField("logged_null", T.LongType(), False),
        T.StructField("backfilled_null", T.LongType(), False),
        T.StructField("both_null", T.LongType(), False),
        T.StructField("mean_abs_diff", T.DoubleType(), True),
        T.StructField("max_abs_diff", T.DoubleType(), True),
        T.StructField("stale_matched", T.LongType(), True),
        T.StructField("stale_lag_blocks", T.IntegerType(), True),
    ]
)
COUNTS = ("rows", "compared", "matched", "logged_null", "backfilled_null", "both_null", "stale_matched")


@dataclass(frozen=True)
class Comparison:
    """One logged value against its backfilled column, and how their type compares them."""

    logged: str  # the logged name
    column: str  # the training table's column holding it (`logged_{name}`)
    feature: str  # the backfilled output column
    kind: str  # numeric | array | other
    numeric_elements: bool = False

    @property
    def numeric(self) -> bool:
        return self.kind == "numeric"


def comparisons(schema: T.StructType, values: Mapping[str, str], column_of: Mapping[str, str]) -> list[Comparison]:
    """The comparison of each logged name (`values`: name -> feature; `column_of`: name -> column)."""
    types = {f.name: f.dataType for f in schema.fields}
    out = []
    for name, feature in values.items():
        lt, bt = types[column_of[name]], types[feature]
        if isinstance(lt, _NUMERIC) and isinstance(bt, _NUMERIC):
            out.append(Comparison(name, column_of[name], feature, "numeric"))
        elif isinstance(lt, T.ArrayType) and isinstance(bt, T.ArrayType):
            numeric = isinstance(lt.elementType, _NUMERIC) and isinstance(bt.elementType, _NUMERIC)
            out.append(Comparison(name, column_of[name], feature, "array", numeric))
        else:
            out.append(Comparison(name, column_of[name], feature, "other"))
    return out


def _close(a: str, b: str, tolerance: float) -> str:
    x, y = f"CAST({a} AS DOUBLE)", f"CAST({b} AS DOUBLE)"
    return f"(abs({x} - {y}) <= CAST({tolerance!r} AS DOUBLE) * greatest(CAST(1 AS DOUBLE), abs({y})))"


def match_sql(c: Comparison, tolerance: float, logged: str | None = None, backfilled: str | None = None) -> str:
    """True when the (not null) logged and backfilled values match."""
    lv, bv = logged or quote(c.column), backfilled or quote(c.feature)
    if c.kind == "numeric":
        return _close(lv, bv, tolerance)
    if c.kind == "array":
        # Pairs by index (Sail has no zip_with): the i-th element of b against the (i+1)-th of l.
        x, y = f"element_at({lv}, _tw_i + 1)", "_tw_y"
        element = f"coalesce({_close(x, y, tolerance)}, {x} IS NULL AND {y} IS NULL)" if c.numeric_elements else f"{x} <=> {y}"
        return f"(size({lv}) = size({bv}) AND forall(transform({bv}, (_tw_y, _tw_i) -> {element}), _tw_m -> _tw_m))"
    return f"({lv} <=> {bv})"


def mismatch_sql(c: Comparison, tolerance: float, backfilled: str | None = None) -> str:
    """Compared (neither null) and not matched."""
    bv = backfilled or quote(c.feature)
    return f"({quote(c.column)} IS NOT NULL AND {bv} IS NOT NULL AND NOT coalesce({match_sql(c, tolerance, None, bv)}, false))"


def diff_sql(c: Comparison) -> str:
    """`l - b` as DOUBLE (numbers only)."""
    return f"(CAST({quote(c.column)} AS DOUBLE) - CAST({quote(c.feature)} AS DOUBLE))"


def metrics(df: DataFrame, comps: Sequence[Comparison], tolerance: float) -> DataFrame:
    """Per (`impression_date`, logged): the counts, the exact sum of the differences and their max.

    Finish with `finish_rows` (match rate, mean difference).
    """
    parts = []
    for c in comps:
        l_null, b_null = f"{quote(c.column)} IS NULL", f"{quote(c.feature)} IS NULL"
        diff = f"abs({diff_sql(c)})" if c.numeric else "CAST(NULL AS DOUBLE)"
        parts.append(
            F.struct(
                F.lit(c.logged).alias("logged"),
                F.lit(c.feature).alias("feature"),
                F.expr(f"CAST(NOT ({l_null}) AND NOT ({b_null}) AS INT)").alias("_c"),
                F.expr(f"CAST(NOT ({l_null}) AND NOT ({b_null}) AND coalesce({match_sql(c, tolerance)}, false) AS INT)").alias("_m"),
                F.expr(f"CAST(({l_null}) AND NOT ({b_null}) AS INT)").alias("_ln"),
                F.expr(f"CAST(({b_null}) AND NOT ({l_null}) AS INT)").alias("_bn"),
                F.expr(f"CAST(({l_null}) AND ({b_null}) AS INT)").alias("_nn"),
                F.expr(f"CAST(CASE WHEN NOT ({l_null}) AND NOT ({b_null}) THEN {diff} END AS DOUBLE)").alias("_d"),
            )
        )
    # One pass over the rows: each row gives one struct per logged value.
    rows = df.select(F.col(DATE), F.explode(F.array(*parts)).alias("_x")).select(DATE, "_x.*")
    return rows.groupBy(DATE, "logged", "feature").agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum("_c").cast("long").alias("compared"),
        F.sum("_m").cast("long").alias("matched"),
        F.sum("_ln").cast("long").alias("logged_null"),
        F.sum("_bn").cast("long").alias("backfilled_null"),
        F.sum("_nn").cast("long").alias("both_null"),
        F.expr(f"sum({double_to_exact_sql('_d')})").alias("_diff_sum"),
        F.count("_d").alias("_diff_n"),
        F.max("_d").alias("max_abs_diff"),
    )


def finish_rows(collected: Sequence[Any], comps: Sequence[Comparison], stale: Mapping[tuple[Any, str], tuple[int, int | None]]) -> list[dict[str, Any]]:
    """Rows of the consistency table from collected `metrics` rows and the stale split.

    `stale`: (date, logged) -> (rows that match an earlier cutoff, the most common lag), for
    numeric values; a numeric value absent from it had no mismatch.
    """
    numeric = {c.logged for c in comps if c.numeric}
    out = []
    for r in collected:
        compared, matched = int(r["compared"]), int(r["matched"])
        n = int(r["_diff_n"])
        mean = float(Decimal(r["_diff_sum"]) / n) if n and r["_diff_sum"] is not None else None
        stale_matched, lag = stale.get((r[DATE], r["logged"]), (0, None)) if r["logged"] in numeric else (None, None)
        out.append(
            {
                DATE: r[DATE],
                "logged": r["logged"],
                "feature": r["feature"],
                "rows": int(r["rows"]),
                "compared": compared,
                "matched": matched,
                "match_rate": matched / compared if compared else None,
                "logged_null": int(r["logged_null"]),
                "backfilled_null": int(r["backfilled_null"]),
                "both_null": int(r["both_null"]),
                "mean_abs_diff": mean,
                "max_abs_diff": None if r["max_abs_diff"] is None else float(r["max_abs_diff"]),
                "stale_matched": stale_matched,
                "stale_lag_blocks": lag,
            }
        )
    return sorted(out, key=lambda x: (x[DATE], x["logged"]))


def stale_requests(
    df: DataFrame,
    comps: Sequence[Comparison],
    tolerance: float,
    *,
    id_column: str,
    ts: str,
    keys: Mapping[str, str],
    cutoff: str,
    finest_s: int,
    ts_alias: str,
    watermark_alias: str,
) -> DataFrame:
    """One request per (mismatching row, lag in LAGS): the impression with its watermark set to
    its cutoff minus `lag` finest blocks, so a point-in-time lookup ends its windows there.

    `keys`: feature-set key -> the training column holding it. Carries `_tw_miss_{logged}` (this
    value differed), each logged column, the date and the lag; `_tw_rid` names the request.
    """
    misses = {c.logged: mismatch_sql(c, tolerance) for c in comps}
    any_miss = " OR ".join(misses.values())
    lag = F.explode(F.array(*[F.lit(k) for k in LAGS]))
    base = df.filter(any_miss).select(
        F.col(quote(id_column)).alias(ORIGINAL_ID),
        F.col(quote(ts)).alias(ts_alias),
        *[F.col(quote(col)).alias(k) for k, col in keys.items()],
        F.col(quote(cutoff)).alias(CUTOFF),
        F.col(DATE),
        *[F.col(quote(c.column)) for c in comps],
        *[F.expr(sql).alias(f"_tw_miss_{name}") for name, sql in misses.items()],
    )
    return (
        base.withColumn(LAG, lag)
        .withColumn(RID, F.concat_ws("#", F.col(ORIGINAL_ID), F.col(LAG).cast("string")))
        .withColumn(watermark_alias, F.expr(f"timestamp_seconds(unix_seconds({CUTOFF}) - {LAG} * {finest_s})"))
    )


def stale_lags(requests: DataFrame, values: DataFrame, comps: Sequence[Comparison], tolerance: float) -> DataFrame:
    """Per (date, logged, lag): the mismatching rows whose value matches first at that lag.

    `values`: the lookup's result per `_tw_rid`, one column per backfilled feature.
    """
    joined = requests.join(values.withColumnRenamed(RID, "_tw_rid2"), F.col(RID) == F.col("_tw_rid2"), "left")
    parts = []
    for c in comps:
        again = f"_tw_again_{c.logged}"
        hit = f"CASE WHEN {quote(again)} IS NOT NULL AND coalesce({match_sql(c, tolerance, None, quote(again))}, false) THEN {LAG} END"
        per_row = (
            joined.filter(F.col(f"_tw_miss_{c.logged}"))
            .select(ORIGINAL_ID, DATE, LAG, quote(c.column), F.col(quote(c.feature)).alias(again))
            .groupBy(ORIGINAL_ID, DATE)
            .agg(F.min(F.expr(hit)).alias("_tw_first"))
            .filter(F.col("_tw_first").isNotNull())
        )
        parts.append(per_row.groupBy(DATE, "_tw_first").agg(F.count(F.lit(1)).alias("n")).withColumn("logged", F.lit(c.logged)))
    return reduce(DataFrame.unionByName, parts)


def stale_split(collected: Sequence[Any]) -> dict[tuple[Any, str], tuple[int, int | None]]:
    """(date, logged) -> (rows matching some earlier cutoff, the most common first lag; ties: the smaller)."""
    by: dict[tuple[Any, str], dict[int, int]] = {}
    for r in collected:
        by.setdefault((r[DATE], r["logged"]), {})[int(r["_tw_first"])] = int(r["n"])
    return {k: (sum(v.values()), most_common_lag(v)) for k, v in by.items()}


def most_common_lag(rows_by_lag: Mapping[int, int]) -> int:
    """The lag that explains the most rows; of equals, the smaller."""
    return min(rows_by_lag, key=lambda lag: (-rows_by_lag[lag], lag))


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Logged name -> its counts over all dates, for the run summary and manifest."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = out.setdefault(
            r["logged"],
            {"feature": r["feature"], **{k: 0 for k in COUNTS if k != "stale_matched"}, "stale_matched": None,
             "_lags": {}, "worst_date": None, "worst_rate": None, "dates": 0},
        )
        t["dates"] += 1
        for k in COUNTS:
            if k == "stale_matched":
                if r[k] is not None:
                    t[k] = (t[k] or 0) + r[k]
                    if r["stale_lag_blocks"] is not None:
                        t["_lags"][r["stale_lag_blocks"]] = t["_lags"].get(r["stale_lag_blocks"], 0) + r[k]
            else:
                t[k] += r[k]
        if r["match_rate"] is not None and (t["worst_rate"] is None or r["match_rate"] < t["worst_rate"]):
            t["worst_date"], t["worst_rate"] = str(r[DATE]), r["match_rate"]
    for t in out.values():
        lags = t.pop("_lags")
        t["match_rate"] = t["matched"] / t["compared"] if t["compared"] else None
        t["differ"] = t["compared"] - t["matched"]
        # The lag that explains most rows over the dates (each date's own mode weighs its rows).
        t["stale_lag_blocks"] = most_common_lag(lags) if lags else None
    return out
