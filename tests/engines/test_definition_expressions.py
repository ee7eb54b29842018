"""A feature's `filter` and `column` are resolved on the source's columns before any work, on both
engines: a misspelt column of a SQL view or a filter that does not parse is exit 2 naming file, line and field,
not the engine's error half-way through a run, and nothing is written."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from spark_jobs.errors import DefinitionError
from spark_jobs.jobs import backfill
from tests.helpers import EVENTS, load, run_job, write_defs, write_parquet

DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts}
  valued: {sql: valued.sql, timestamp: ts}
feature_sets:
  acts:
    source: valued
    key: user_id
    block_sizes: [5m, 1h]
    features:
      - {name: n, aggregation: count, windows: [1h]}
      - name: total
        aggregation: sum
        column: valeu
        windows: [1h]
      - name: clicks
        aggregation: count
        filter: kind = = 'click'
        windows: [1h]
      - {name: fine, aggregation: max, column: value, filter: "kind <> 'view'", windows: [1h]}
"""


def test_a_misspelt_column_and_a_filter_that_does_not_parse_name_their_lines(engine, warehouse, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [{"event_id": "e1", "user_id": "u1", "kind": "click", "value": 1.0, "ts": datetime(2026, 3, 2, 10)}]
    write_parquet(tmp_path / "data" / "events" / "a.parquet", rows, EVENTS)
    # A SQL view as the source: its columns are known only to the engine.
    defs_dir = write_defs(tmp_path, DEFS, {"valued.sql": "SELECT user_id, kind, value, ts FROM events WHERE value IS NOT NULL"})
    defs = load(defs_dir, tmp_path / "data")
    with pytest.raises(DefinitionError) as info:
        run_job(engine, warehouse, defs, "backfill", backfill.run, start=date(2026, 3, 2), end=date(2026, 3, 3), names=["acts"])
    assert info.value.exit_code == 2
    first, second = info.value.problems
    assert first.split(":", 1)[0].endswith("defs.yaml") and second.split(":", 1)[0].endswith("defs.yaml")
    assert ":14 feature_sets.acts.features[1] (total).column: 'valeu' does not resolve on source valued" in first
    assert "(columns: user_id, kind, value, ts)" in first
    assert ":18 feature_sets.acts.features[2] (clicks).filter: \"kind = = 'click'\" does not resolve" in second
    assert not warehouse.exists("blocks/acts")


LABEL_DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts}
  impressions: {path: "${data_root}/impressions", format: parquet, timestamp: ts}
  actions: {path: "${data_root}/labels", format: parquet, timestamp: ts}
feature_sets:
  acts:
    source: events
    key: user_id
    block_sizes: [5m, 1h]
    features:
      - {name: n, aggregation: count, windows: [1h]}
training_sets:
  ts:
    impressions: impressions
    features: [acts.*]
    labels:
      - name: clicked
        source: actions
        filter: acton = 'click'
        within: 1h
"""


def test_a_label_filter_that_does_not_resolve_names_its_line(engine, warehouse, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from spark_jobs.jobs import training
    from tests.helpers import IMPRESSIONS, LABELS

    data = tmp_path / "data"
    t = datetime(2026, 3, 2, 10)
    write_parquet(data / "events" / "a.parquet", [{"event_id": "e1", "user_id": "u1", "kind": "click", "value": 1.0, "ts": t}], EVENTS)
    write_parquet(data / "impressions" / "i.parquet",
                  [{"impression_id": "i1", "user_id": "u1", "ts": t, "feature_watermark": None}], IMPRESSIONS)
    write_parquet(data / "labels" / "l.parquet", [{"impression_id": "i1", "ts": t, "action": "click"}], LABELS)
    defs = load(write_defs(tmp_path, LABEL_DEFS), data)
    run_job(engine, warehouse, defs, "backfill", backfill.run, start=date(2026, 3, 2), end=date(2026, 3, 3), names=["acts"])
    with pytest.raises(DefinitionError) as info:
        run_job(engine, warehouse, defs, "training-set", training.run, name="ts", start=date(2026, 3, 2), end=date(2026, 3, 3))
    (problem,) = info.value.problems
    assert problem.split(":", 1)[0].endswith("defs.yaml")
    assert ":20 training_sets.ts.labels.0.filter: \"acton = 'click'\" does not resolve on source actions " in problem
    assert "(columns: impression_id, ts, action)" in problem
    assert not warehouse.exists("training/ts")
