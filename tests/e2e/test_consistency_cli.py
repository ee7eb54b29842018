"""`tilewise` and forward-logged values: the mistakes it refuses before any engine starts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa

from tests.helpers import tilewise, write_defs, write_parquet

DEFS = """
sources:
  events: {path: "${data_root}/events", format: parquet, timestamp: ts}
  impressions: {path: "${data_root}/impressions", format: parquet, timestamp: ts}
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
    logged:
      column: features
      values: {user_n: n_1h, user_m: n_1h}
"""
IMPRESSIONS = pa.schema([
    ("impression_id", pa.string()), ("user_id", pa.string()), ("ts", pa.timestamp("us")),
    ("features", pa.struct([("user_n", pa.int64())])),
])


def test_a_logged_value_the_impressions_lack_is_a_definition_error(tmp_path: Path) -> None:
    write_defs(tmp_path, DEFS)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "local.yaml").write_text(f"warehouse: {tmp_path / 'wh'}\ndata_root: {tmp_path / 'data'}\n")
    write_parquet(tmp_path / "data" / "impressions" / "a.parquet",
                  [{"impression_id": "i1", "user_id": "u", "ts": datetime(2026, 3, 1), "features": {"user_n": 1}}], IMPRESSIONS)
    out = tilewise("training-set", "ts", "--start", "2026-03-01", "--end", "2026-03-02", cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "feature_defs/defs.yaml:18 training_sets.ts.logged.values.user_m: user_m is not a field of the impressions' column features (user_n)" in out.stderr
    assert not (tmp_path / "wh").exists()  # refused before an engine started: nothing written, no run

    out = tilewise("validate", "consistency/nope", cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "consistency/<training set with logged values>" in out.stderr
