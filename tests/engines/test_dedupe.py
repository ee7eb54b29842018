"""`transforms.events.dedupe` on both engines against the rule it documents: one row per dedupe
key (NULL keys are one key, also in one column of a compound key), the earliest wins, then the
smallest by every plain column with NULLs last; rows of a key of their own pass untouched."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
from chispa import assert_df_equality

from spark_jobs.transforms.events import TS, dedupe

SCHEMA = pa.schema([("event_id", pa.string()), ("region", pa.string()), ("user", pa.int64()), ("value", pa.float64()),
                    (TS, pa.timestamp("us", tz="UTC")), ("tags", pa.list_(pa.string()))])
T0 = datetime(2026, 5, 1)


def _rows(rng: random.Random) -> list[dict]:
    rows = [{"event_id": f"e{i}", "region": rng.choice(["eu", "us", None]), "user": rng.randrange(5),
             "value": rng.choice([None, 1.0, 2.5, -3.0]), TS: T0 + timedelta(seconds=rng.randrange(3600)), "tags": ["a"]}
            for i in range(400)]
    for i in range(0, 400, 7):  # a second row for every 7th id: later, earlier or at the same instant
        r = dict(rows[i], value=rng.choice([None, 0.5, 9.0]), region=rng.choice(["eu", None]))
        r[TS] = rows[i][TS] + timedelta(seconds=rng.choice([-60, 0, 0, 60]))
        rows.append(r)
    rows += [dict(rows[3]), dict(rows[3], tags=None)]  # exact copies (tags is no plain column)
    rows += [dict(rows[5], event_id=None, value=v) for v in (None, 4.0, 1.0)]  # NULL ids: one key
    rows.append(dict(rows[10], value=None))  # a NULL value sorts after any value at the same instant
    return rows


def _reference(rows: list[dict], by: tuple[str, ...]) -> list[dict]:
    def rank(r: dict) -> tuple:
        plain = [c for c in (TS, "region", "user", "value") if c not in by]
        return tuple((r[c] is None, r[c] if r[c] is not None else 0) for c in plain)
    best: dict[object, dict] = {}
    for r in rows:
        key = tuple(r[c] for c in by)
        if key not in best or rank(r) < rank(best[key]):
            best[key] = r
    return list(best.values())


@pytest.mark.parametrize("by", [("event_id",), ("event_id", "region")])
def test_dedupe_keeps_the_rule_s_winner(engine, by) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(random.Random(3))
    df = engine.spark.createDataFrame(pa.Table.from_pylist(rows, schema=SCHEMA).to_pandas())
    got = dedupe(df, by).drop("tags")
    want = _reference(rows, by)
    expected = engine.spark.createDataFrame(pa.Table.from_pylist(want, schema=SCHEMA).to_pandas()).drop("tags")
    assert got.count() == len(want) > 400  # 400 ids, the NULL id, and ids whose copies changed region
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
