"""Every function of the allow-list runs on both engines: its example call, analysed and executed.

The examples are batched, one query per category of the allow-list plus one per table function, so both engines take a few seconds; when a batch fails, each of its calls is
run alone to name the ones at fault.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from spark_jobs.defs.sql_allow_list import AGGREGATES, ALLOWED, TABLE_FUNCTIONS, WINDOW

TINY = (
    "WITH tiny AS (SELECT 3 AS i, 2.5D AS d, 'Ab c' AS s, '2026-01-31 12:00:00' AS s_ts,"
    " TIMESTAMP '2026-01-31 12:00:00' AS t, array(1, 2, 3) AS a, map('k', 1) AS m, true AS b) "
)
# One batch per category: a projection of a few dozen calls compiles much faster than one of hundreds.
BATCHES = {**ALLOWED, "aggregates": AGGREGATES, "window functions": WINDOW}


def _failures(spark, queries: Mapping[str, str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    failed = {}
    for name, query in queries.items():
        try:
            spark.sql(query).collect()
        except Exception as exc:  # the engine's own error, whatever its class
            failed[name] = str(exc).splitlines()[0][:200]
    return failed


def _run_batch(spark, examples: Mapping[str, str]) -> None:  # type: ignore[no-untyped-def]
    columns = ", ".join(f"{example} AS c{i}" for i, example in enumerate(examples.values()))
    try:
        row = spark.sql(f"{TINY}SELECT {columns} FROM tiny").collect()
    except Exception:
        failed = _failures(spark, {name: f"{TINY}SELECT {ex} AS c FROM tiny" for name, ex in examples.items()})
        pytest.fail(f"allow-listed functions the engine refuses: {failed or 'none alone: the batch only'}")
    assert len(row) >= 1 and len(row[0]) == len(examples)


@pytest.mark.parametrize("category", BATCHES)
def test_every_allowed_function_runs(engine, category: str) -> None:  # type: ignore[no-untyped-def]
    _run_batch(engine.spark, BATCHES[category])


def test_every_allowed_table_function_runs(engine) -> None:  # type: ignore[no-untyped-def]
    failed = _failures(engine.spark, {name: TINY + query for name, query in TABLE_FUNCTIONS.items()})
    assert not failed, f"allow-listed table functions the engine refuses: {failed}"
