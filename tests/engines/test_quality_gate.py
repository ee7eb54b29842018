"""Write-audit-publish end to end: every built-in check, and a user expectation, stops a real run.

Each case runs the real job with one fault injected into what it stages (a duplicated row, a
label of 2, a cutoff past the impression ...), exactly where a bug in the pipeline would put it.
The gate must refuse it: ValidationFailed (exit 1), the table keeps its version and content, and
the rejected rows plus the HTML report stay in the run folder. A clean run then publishes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.errors import ValidationFailed
from spark_jobs.jobs import backfill, snapshot, training
from spark_jobs.storage.tables import Warehouse
from tests.engines.test_point_in_time import DEFS, publish_tables
from tests.helpers import load, run_job, write_defs

Mutation = Callable[[DataFrame], DataFrame]
USER_VALIDATION = """
    validation:
      min_rows: 1000
      max_null_fraction: {mean_1d: 0.0}
      expectations:
        - {type: expect_column_values_to_be_between, kwargs: {column: n_1h, max_value: 0}}
"""


def _one_row(column: str, value: str, where: str = "impression_id = 'i1'") -> Mutation:
    """Set `column` to the SQL expression `value` in the rows matching `where` (type kept)."""

    def mutate(df: DataFrame) -> DataFrame:
        kind = df.schema[column].dataType.simpleString()
        return df.withColumn(column, F.expr(f"CASE WHEN {where} THEN CAST({value} AS {kind}) ELSE {column} END"))

    return mutate


TRAINING_FAULTS: dict[str, tuple[Mutation, str]] = {
    "impression_id null": (_one_row("impression_id", "CAST(NULL AS STRING)"), "expect_column_values_to_not_be_null"),
    "impression_id duplicated": (lambda df: df.unionByName(df.filter("impression_id = 'i1'")), "expect_column_values_to_be_unique"),
    "label outside {0, 1}": (_one_row("clicked", "2"), "expect_column_values_to_be_in_set"),
    "negative count": (_one_row("n_1h", "-1"), "expect_column_values_to_be_between"),
    "cutoff after the impression": (
        _one_row("acts_cutoff", "ts + INTERVAL 5 MINUTES"),
        "expect_column_pair_values_a_to_be_greater_than_b(column_A=ts",
    ),
    # i3's watermark is 3 days before it: a cutoff just past the watermark leaks, though not past ts.
    "cutoff after the watermark": (
        _one_row("acts_cutoff", "feature_watermark + INTERVAL 1 SECOND", "impression_id = 'i3'"),
        "expect_column_pair_values_a_to_be_greater_than_b(column_A=feature_watermark",
    ),
}
BLOCK_FAULTS: dict[str, tuple[Mutation, str]] = {
    "null key": (_one_row("user_id", "CAST(NULL AS STRING)", "user_id = 'u1'"), "expect_column_values_to_not_be_null"),
    "duplicate block": (lambda df: df.unionByName(df.limit(1)), "expect_compound_columns_to_be_unique"),
    "negative event_count": (_one_row("event_count", "-event_count", "true"), "expect_column_values_to_be_between"),
}


@pytest.fixture(scope="module")
def published(sail_engine, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Blocks, a snapshot and a training set published once (version 0 each) on Sail."""
    root = tmp_path_factory.mktemp("gate")
    wh, defs, _, _ = publish_tables(sail_engine, root)
    return sail_engine, wh, defs, root


def _inject(monkeypatch, module, mutation: Mutation) -> None:  # type: ignore[no-untyped-def]
    """Apply `mutation` to everything the job stages for publishing (not to its work files)."""
    real = module.stage

    def faulty(spark, folder: Path, df: DataFrame, *args, **kwargs):  # type: ignore[no-untyped-def]
        return real(spark, folder, mutation(df) if "staged" in folder.parts else df, *args, **kwargs)

    monkeypatch.setattr(module, "stage", faulty)


KEYS = {"training/ts": ["impression_id"], "blocks/acts": ["user_id", "block_size", "block_start"], "snapshots/acts": ["user_id"]}


def _assert_refused(engine, wh: Warehouse, defs, command: str, job, table: str, expect: str, **kw) -> str:  # type: ignore[no-untyped-def]
    """`job` fails validation naming `expect`, and `table` keeps its version, content, report and rejected rows."""
    version, before = wh.version(table), wh.read(table)
    before_rows = before.collect()
    with pytest.raises(ValidationFailed) as failure:
        run_job(engine, wh, defs, command, job, **kw)
    assert expect in str(failure.value)
    assert wh.version(table) == version, "the table keeps its version"
    order = KEYS[table]
    assert_df_equality(
        wh.read(table).orderBy(*order),
        engine.spark.createDataFrame(before_rows, schema=before.schema).orderBy(*order),
        ignore_nullable=True,
    )
    manifest = json.loads(sorted((wh.root / "_runs").glob(f"*-{command}-*.json"), key=lambda p: p.stat().st_mtime)[-1].read_text())
    assert manifest["status"] == "failed"
    assert manifest["validation"][table]["success"] is False
    run_dir = wh.root / "_runs" / manifest["run_id"]
    assert list((run_dir / "report").rglob("*.html")), "the HTML report stays in the run folder"
    assert list((run_dir / "staged").rglob("*.parquet")), "the rejected rows stay in the run folder"
    return str(failure.value)


@pytest.mark.parametrize("fault", list(TRAINING_FAULTS))
def test_training_set_gate_refuses(published, monkeypatch, fault: str) -> None:  # type: ignore[no-untyped-def]
    engine, wh, defs, _ = published
    mutation, expect = TRAINING_FAULTS[fault]
    _inject(monkeypatch, training, mutation)
    _assert_refused(
        engine, wh, defs, "training-set", training.run, "training/ts", expect,
        name="ts", start=date(2026, 3, 1), end=date(2026, 3, 5),
    )


def test_user_validation_block_refuses(published) -> None:  # type: ignore[no-untyped-def]
    engine, wh, _, root = published
    strict = load(write_defs(root / "strict", DEFS + USER_VALIDATION), root / "data")
    text = _assert_refused(
        engine, wh, strict, "training-set", training.run, "training/ts", "validation failed (3 of",
        name="ts", start=date(2026, 3, 1), end=date(2026, 3, 5),
    )
    assert "expect_table_row_count_to_be_between(min_value=1000)" in text
    assert "expect_column_values_to_not_be_null(column=mean_1d, mostly=1.0)" in text
    assert "expect_column_values_to_be_between(column=n_1h, max_value=0)" in text
    assert "validation failed (3 of" in text, "the three user checks fail, none of the built-in ones"


@pytest.mark.parametrize("fault", list(BLOCK_FAULTS))
def test_backfill_gate_refuses(published, monkeypatch, fault: str) -> None:  # type: ignore[no-untyped-def]
    engine, wh, defs, _ = published
    mutation, expect = BLOCK_FAULTS[fault]
    _inject(monkeypatch, backfill, mutation)
    _assert_refused(
        engine, wh, defs, "backfill", backfill.run, "blocks/acts", expect,
        start=date(2026, 3, 3), end=date(2026, 3, 4), names=["acts"],
    )


def test_snapshot_gate_refuses_a_duplicate_key(published, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine, wh, defs, _ = published
    _inject(monkeypatch, snapshot, lambda df: df.unionByName(df.limit(1)))
    _assert_refused(
        engine, wh, defs, "snapshot", snapshot.run, "snapshots/acts", "expect_column_values_to_be_unique",
        as_of=datetime(2026, 3, 3, 18), names=["acts"],
    )


def test_clean_rerun_publishes_a_new_version(published) -> None:  # type: ignore[no-untyped-def]
    engine, wh, defs, _ = published
    before = wh.read("training/ts").collect()
    run = run_job(engine, wh, defs, "training-set", training.run, name="ts", start=date(2026, 3, 1), end=date(2026, 3, 5))
    assert wh.version("training/ts") == 1
    assert sorted(map(repr, wh.read("training/ts").collect())) == sorted(map(repr, before))
    manifest = json.loads((wh.root / "_runs" / f"{run.run_id}.json").read_text())
    assert manifest["validation"]["training/ts"]["success"] is True
    assert 0 < manifest["validation_share"] < 1
    assert manifest["validation_seconds"] == pytest.approx(manifest["validation"]["training/ts"]["seconds"], abs=1e-3)
    assert not (wh.root / "_runs" / run.run_id / "staged").exists(), "a published run keeps no staged copy"
