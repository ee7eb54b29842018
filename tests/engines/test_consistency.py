"""The consistency table against a brute-force computation, on both engines.

`test_metrics_match_brute_force` runs the metrics on rows with every case: nulls on either side
and both, integers, floats with noise under and over the tolerance (relative, and absolute
below 1), arrays of numbers (same, other length, an element off, null elements), arrays of text
and text. `test_training_set_consistency` runs the real training-set job on data whose logged
values are the point-in-time values, some of them computed with the cutoff 2 or 5 blocks
earlier (stale), some with a logic difference, some with noise, some null, and some served by
the online store for windows the backfill finds empty; then the `min_match_rate` gate refuses a
run and neither table moves.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import types as T

from spark_jobs.errors import ValidationFailed
from spark_jobs.jobs import backfill, training, validate
from spark_jobs.names import consistency_table as table_name
from spark_jobs.quality.suites import consistency_suite
from spark_jobs.transforms import consistency as tc
from tests.engines.test_point_in_time import DEFS, G, epoch, make_data
from tests.helpers import EVENTS, LABELS, load, manifests, run_job, write_defs, write_parquet

TOL = 1e-6


# -- the rules of docs/consistency.md, directly --------------------------------------------------


def _close(lv: float, bv: float, tol: float) -> bool:
    return abs(lv - bv) <= tol * max(1.0, abs(bv))


def _match(lv: Any, bv: Any, kind: str, tol: float) -> bool:
    if kind == "numeric":
        return _close(float(lv), float(bv), tol)
    if kind == "array":
        return len(lv) == len(bv) and all(
            (x is None and y is None) or (x is not None and y is not None and _close(x, y, tol)) for x, y in zip(lv, bv)
        )
    return lv == bv  # text, arrays of text


def brute_force(records: list[dict[str, Any]], kinds: dict[str, str], tol: float) -> list[dict[str, Any]]:
    """Rows of the consistency table. `records`: date, name, l, b and (numeric) `earlier`: the
    backfilled value with the cutoff 1..6 blocks earlier."""
    out = []
    for r in records:
        lv, bv, kind = r["l"], r["b"], kinds[r["name"]]
        compared = lv is not None and bv is not None
        matched = compared and _match(lv, bv, kind, tol)
        first = None
        if compared and not matched and kind == "numeric":
            first = next((k for k, e in enumerate(r["earlier"], start=1) if e is not None and _match(lv, e, kind, tol)), None)
        out.append({
            "impression_date": r["date"], "logged": r["name"], "compared": int(compared), "matched": int(matched),
            "logged_null": int(lv is None and bv is not None), "backfilled_null": int(bv is None and lv is not None),
            "both_null": int(lv is None and bv is None),
            "diff": abs(float(lv) - float(bv)) if compared and kind == "numeric" else math.nan, "first": first,
        })
    df = pd.DataFrame(out)
    rows = []
    for (day, name), g in df.groupby(["impression_date", "logged"]):
        compared, matched = int(g["compared"].sum()), int(g["matched"].sum())
        diffs = g["diff"].dropna()
        lags = Counter(int(x) for x in g["first"].dropna())
        numeric = kinds[name] == "numeric"
        rows.append({
            "impression_date": day, "logged": name, "rows": len(g), "compared": compared, "matched": matched,
            "match_rate": matched / compared if compared else None,
            "logged_null": int(g["logged_null"].sum()), "backfilled_null": int(g["backfilled_null"].sum()),
            "both_null": int(g["both_null"].sum()),
            "mean_abs_diff": float(diffs.mean()) if len(diffs) else None,
            "max_abs_diff": float(diffs.max()) if len(diffs) else None,
            "stale_matched": sum(lags.values()) if numeric else None,
            "stale_lag_blocks": min(lags, key=lambda k: (-lags[k], k)) if lags else None,
        })
    return sorted(rows, key=lambda x: (x["impression_date"], x["logged"]))


def assert_rows_equal(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(a["impression_date"], a["logged"]) for a in actual] == [(e["impression_date"], e["logged"]) for e in expected]
    for a, e in zip(actual, expected):
        for key, want in e.items():
            got = a[key]
            if isinstance(want, float) and got is not None:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-9), (a["logged"], a["impression_date"], key)
            else:
                assert got == want, (a["logged"], a["impression_date"], key, got, want)


# -- the metrics on every case ------------------------------------------------------------------


def _cases(seed: int = 5) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(240):
        day = date(2026, 3, 1) + timedelta(days=(i // 8) % 2)
        case = i % 8
        n = rng.randint(0, 50)
        x = rng.choice([rng.uniform(-0.5, 0.5), rng.uniform(-1e6, 1e6)])
        arr = [rng.uniform(-10, 10) for _ in range(rng.randint(0, 4))]
        s = rng.choice(["a", "b", "c"])
        ids = [rng.choice("pqr") for _ in range(rng.randint(0, 3))]
        row = {"impression_date": day, "n": n, "x": x, "arr": arr, "s": s, "ids": ids,
               "logged_n": n, "logged_x": x, "logged_arr": list(arr), "logged_s": s, "logged_ids": list(ids)}
        if case == 1:  # noise under the tolerance (relative above 1, absolute below)
            row["logged_x"] = x + 0.5 * TOL * max(1.0, abs(x))
            row["logged_arr"] = [v + 0.5 * TOL * max(1.0, abs(v)) for v in arr]
        elif case == 2:  # noise over it
            row["logged_x"] = x + 2 * TOL * max(1.0, abs(x))
            row["logged_arr"] = [v + (2 * TOL * max(1.0, abs(v)) if j == 0 else 0) for j, v in enumerate(arr)]
            row["logged_n"], row["logged_s"], row["logged_ids"] = n + 1, "z", [*ids, "q"]
        elif case == 3:  # logged null
            row.update(logged_n=None, logged_x=None, logged_arr=None, logged_s=None, logged_ids=None)
        elif case == 4:  # backfilled null (an empty window of an avg, say) where the log has a value
            row.update(n=None, x=None, arr=None, s=None, ids=None)
        elif case == 5:  # both null
            row.update(n=None, x=None, arr=None, s=None, ids=None,
                       logged_n=None, logged_x=None, logged_arr=None, logged_s=None, logged_ids=None)
        elif case == 6:  # arrays of another length; null elements on both sides match
            row["logged_arr"] = [*arr, 1.0]
            row["arr"], row["logged_ids"] = [*arr, None], list(reversed(ids)) + ["r"]
            row["logged_arr"] = [*arr, None] if i % 16 == 6 else [*arr, 1.0, 2.0]
        elif case == 7:  # an empty window (count 0) where the online store served a value
            row["n"], row["logged_n"] = 0, n + 1
        rows.append(row)
    return rows, {"n": "numeric", "x": "numeric", "arr": "array", "s": "other", "ids": "other"}


SCHEMA = T.StructType([
    T.StructField("impression_date", T.DateType()),
    *[T.StructField(p + "n", T.LongType()) for p in ("", "logged_")],
    *[T.StructField(p + "x", T.DoubleType()) for p in ("", "logged_")],
    *[T.StructField(p + "arr", T.ArrayType(T.DoubleType())) for p in ("", "logged_")],
    *[T.StructField(p + "s", T.StringType()) for p in ("", "logged_")],
    *[T.StructField(p + "ids", T.ArrayType(T.StringType())) for p in ("", "logged_")],
])


ARROW = pa.schema([
    ("impression_date", pa.date32()),
    *[(p + "n", pa.int64()) for p in ("", "logged_")],
    *[(p + "x", pa.float64()) for p in ("", "logged_")],
    *[(p + "arr", pa.list_(pa.float64())) for p in ("", "logged_")],
    *[(p + "s", pa.string()) for p in ("", "logged_")],
    *[(p + "ids", pa.list_(pa.string())) for p in ("", "logged_")],
])


def test_metrics_match_brute_force(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows, kinds = _cases()
    # From a file: createDataFrame from Python rows runs Python workers on classic Spark (~10 s).
    write_parquet(tmp_path / "rows" / "a.parquet", rows, ARROW)
    df = engine.spark.read.schema(SCHEMA).parquet(str(tmp_path / "rows"))
    values = {k: k for k in kinds}
    comps = tc.comparisons(df.schema, values, {k: f"logged_{k}" for k in kinds})
    # Arrays of text compare element by element with equality: as lists, the brute force's "other".
    assert {c.logged: c.kind for c in comps} == {**kinds, "ids": "array"}
    assert [c.numeric_elements for c in comps if c.kind == "array"] == [True, False]
    actual = tc.finish_rows(tc.metrics(df, comps, TOL).collect(), comps, {})
    records = [
        {"date": r["impression_date"], "name": k, "l": r[f"logged_{k}"], "b": r[k], "earlier": []}
        for r in rows for k in kinds
    ]
    expected = brute_force(records, kinds, TOL)
    assert_rows_equal(actual, expected)
    by = {(r["impression_date"], r["logged"]): r for r in actual}
    # Every case is present: the test cannot pass on data without them.
    assert all(r["logged_null"] and r["backfilled_null"] and r["both_null"] for r in actual)
    assert all(0 < r["matched"] < r["compared"] for r in actual)
    assert by[(date(2026, 3, 1), "x")]["max_abs_diff"] > 0 and by[(date(2026, 3, 1), "s")]["mean_abs_diff"] is None


# -- the job: logged values with incidents, the stale split and the gate -----------------------

LOGGED = """
    logged:
      values: {log_n: n_1h, log_total: total_2d, log_mean: mean_1d, log_recent: recent_1d}
"""
GATE = """
    validation:
      min_match_rate: {log_n: 0.99}
"""
IMPRESSIONS_LOGGED = pa.schema([
    ("impression_id", pa.string()), ("user_id", pa.string()), ("ts", pa.timestamp("us")),
    ("feature_watermark", pa.timestamp("us")), ("log_n", pa.int64()), ("log_total", pa.float64()),
    ("log_mean", pa.float64()), ("log_recent", pa.list_(pa.float64())),
])
KINDS = {"log_n": "numeric", "log_total": "numeric", "log_mean": "numeric", "log_recent": "array"}


def _values_at(events_by_user: dict[Any, list[tuple[int, Any, float | None]]], user: Any, t_floor: int, end: int) -> dict[str, Any]:
    """The backfilled values of an impression whose windows end at `end` (events: (epoch, ts, value), sorted)."""
    events = events_by_user.get(user, [])
    keys = [e[0] for e in events]

    def window(length: int) -> list[tuple[int, Any, float | None]]:
        return events[bisect_left(keys, t_floor - length) : bisect_left(keys, end)] if end > t_floor - length else []

    d1 = [e for e in window(86400) if e[2] is not None]
    return {
        "log_n": len(window(3600)),
        "log_total": float(sum(e[2] for e in window(172800) if e[2] is not None)),
        "log_mean": sum(e[2] for e in d1) / len(d1) if d1 else None,
        "log_recent": [v for _, v in sorted(((e[1], e[2]) for e in d1), reverse=True)[:3]],
    }


def _logged_data(events: list[dict], imps: list[dict]) -> tuple[list[dict], list[dict]]:
    """Impressions with logged values, and the brute-force records of the distinct ones."""
    seen, by_user = set(), {}
    for e in events:
        if e["user_id"] is not None and e["ts"] is not None and e["event_id"] not in seen:
            seen.add(e["event_id"])
            by_user.setdefault(e["user_id"], []).append((epoch(e["ts"]), e["ts"], e["value"]))
    for events_of_user in by_user.values():
        events_of_user.sort(key=lambda e: e[0])
    out, records, done = [], [], set()
    for i, imp in enumerate(imps):
        t = epoch(imp["ts"])
        tf = t - t % G
        w = imp["feature_watermark"]
        end = tf if w is None else min(epoch(w) - epoch(w) % G, tf)
        now = _values_at(by_user, imp["user_id"], tf, end)
        earlier = [_values_at(by_user, imp["user_id"], tf, end - k * G) for k in tc.LAGS]
        case = int(imp["impression_id"][1:]) % 8
        logged = dict(now)
        if case in (1, 2):  # the online store was 2 or 5 blocks behind
            logged = dict(earlier[1 if case == 1 else 4])
        elif case == 3:  # logic: the online code computes something else
            logged = {"log_n": now["log_n"] + 1000, "log_total": now["log_total"] + 7.5,
                      "log_mean": None if now["log_mean"] is None else now["log_mean"] * 2 + 1,
                      "log_recent": [*now["log_recent"], 999.0]}
        elif case == 4:
            logged = dict.fromkeys(now)
        elif case == 5:  # float noise under the default tolerance
            logged["log_total"] = now["log_total"] * (1 + 1e-12) + 1e-12
        if logged["log_mean"] is None and case == 6:  # the store served 0 for an empty window
            logged["log_mean"] = 0.0
        out.append({**imp, **logged})
        if imp["impression_id"] in done:
            continue
        done.add(imp["impression_id"])
        for name in KINDS:
            records.append({"date": imp["ts"].date(), "name": name, "l": logged[name], "b": now[name],
                            "earlier": [e[name] for e in earlier]})
    return out, records


def run_defs(root: Path, data: Path):  # type: ignore[no-untyped-def]
    return load(root / "feature_defs", data)


@pytest.fixture
def logged_pipeline(engine, warehouse, tmp_path: Path):  # type: ignore[no-untyped-def]
    events, imps, labels = make_data()
    imps_logged, records = _logged_data(events, imps)
    data = tmp_path / "data"
    write_parquet(data / "events" / "a.parquet", events, EVENTS)
    write_parquet(data / "impressions" / "i.parquet", imps_logged, IMPRESSIONS_LOGGED)
    write_parquet(data / "labels" / "l.parquet", labels, LABELS)
    defs = load(write_defs(tmp_path, DEFS + LOGGED), data)
    run_job(engine, warehouse, defs, "backfill", backfill.run, start=date(2026, 3, 2), end=date(2026, 3, 4), names=["acts"])
    run = run_job(engine, warehouse, defs, "training-set", training.run, name="ts", start=date(2026, 3, 1), end=date(2026, 3, 5))
    return records, run, data, tmp_path


def test_training_set_consistency(engine, warehouse, logged_pipeline) -> None:  # type: ignore[no-untyped-def]
    records, run, data, root = logged_pipeline
    expected = brute_force(records, KINDS, 1e-9)
    table = table_name("ts")
    actual = [r.asDict() for r in warehouse.read(table).collect()]
    actual.sort(key=lambda x: (x["impression_date"], x["logged"]))
    assert_rows_equal(actual, expected)
    # The incidents are in the data: stale rows found at both lags, logic rows left over.
    n = [r for r in actual if r["logged"] == "log_n"]
    assert sum(r["stale_matched"] for r in n) > 0 and any(r["compared"] - r["matched"] > r["stale_matched"] for r in n)
    # (A row 5 blocks stale matches first at 4 when nothing happened in the block between.)
    assert 2 in {r["stale_lag_blocks"] for r in actual if r["logged"] != "log_recent"}
    assert any(r["backfilled_null"] for r in actual if r["logged"] == "log_mean")
    # The training table carries the logged values as logged; the run reports the same numbers.
    train = warehouse.read("training/ts")
    assert {"logged_log_n", "logged_log_recent"} <= set(train.columns)
    assert dict(train.dtypes)["logged_log_recent"] == "array<double>"
    totals = run.consistency[table]
    assert totals["log_n"]["compared"] == sum(r["compared"] for r in n)
    assert totals["log_n"]["matched"] == sum(r["matched"] for r in n)
    assert run.outputs[table]["version"] == 0
    assert run.validation[table]["success"]
    checked = run_job(engine, warehouse, run_defs(root, data), "validate", validate.run, table=table)  # the published table
    assert checked.validation[table]["success"] and checked.validation[table]["expectations"] == len(consistency_suite())

    # The gate: a date below min_match_rate fails the run, and neither table is published. Its
    # code is the same on both engines and runs before any write, so once (a run costs ~1 min
    # on classic Spark on a busy machine).
    if engine.name != "sail":
        return
    defs = load(write_defs(root, DEFS + LOGGED + GATE), data)
    with pytest.raises(ValidationFailed, match="log_n on 2026-03-0.: match rate"):
        run_job(engine, warehouse, defs, "training-set", training.run, name="ts", start=date(2026, 3, 1), end=date(2026, 3, 5))
    assert warehouse.version(table) == 0 and warehouse.version("training/ts") == 0
    failed = manifests(warehouse.root, "training-set")[-1]
    assert failed["status"] == "failed" and failed["consistency"][table]["log_n"]["compared"] == totals["log_n"]["compared"]
    assert any("min_match_rate" in f for f in failed["validation"][table]["failed"])
